"""A GCP Resource Manager IAM emulator: getIamPolicy/setIamPolicy over real HTTP.

It speaks the REST shape that google-cloud-resource-manager's ``transport="rest"``
sends (``POST /v3/{projects|folders|organizations}/<id>:getIamPolicy`` and
``:setIamPolicy``; ``/v1`` and ``/v2`` paths are accepted too) with the semantics of
IAM that matter to a reconciler:

- every policy carries an ``etag``; ``setIamPolicy`` with a stale etag fails with
  409 ABORTED, without an etag it overwrites (GCP's documented behaviour);
- conditions need policy version 3; basic roles (owner/editor/viewer) take none;
- ``getIamPolicy`` honours ``options.requestedPolicyVersion``: below 3, conditional
  bindings come back as ``<role>_withcond_<hash>`` without their condition, version 1;
- ``updateMask`` defaults to ``bindings,etag``, so ``auditConfigs`` survive a write
  that does not name them;
- a condition title longer than 100 characters is refused (GCP documents no limit;
  the emulator assumes the strictest, so nothing accessctl writes can trip a real one);
- the policy a write would leave is held to IAM's limits, answered with 400
  INVALID_ARGUMENT like GCP: 1,500 principals (every appearance in a binding or an
  audit-log exemption; GCP's own error text), 250 Google groups (each counted once) and
  domains (every appearance), and a size bound, ``max_policy_bytes`` (64 KiB unless
  given): the UTF-8 length of ``{"bindings":[...],"auditConfigs":[...]}`` as compact JSON
  with empty fields left out. GCP documents its size limit only as "a few 10s of KB", so
  the bound is whatever the reconciler is configured with; the group and size error
  texts are modelled on the members one;
- member and role syntax is checked; an unknown resource answers 403
  PERMISSION_DENIED, like GCP for a project the caller cannot see;
- errors use Google's JSON error body, so the client raises google.api_core exceptions.

Calls made with a principal's identity (``Authorization: Bearer
sandbox-principal:user:alice@example.com``, see ``reconciler.sandbox.gcp_principals``) are
checked and audited as GCP would: the caller's permission is looked up in the resource's
IAM policy (conditions evaluated at ``request.time``), a refusal answers 403
PERMISSION_DENIED, and each call is recorded as a Cloud Audit Logs entry that
``entries.list`` returns (Admin Activity for writes; Data Access for reads, only where the
policy's ``auditConfigs`` turn that log type on). Principals may call ``getIamPolicy``,
``setIamPolicy``, ``testIamPermissions`` and the Cloud SQL Admin API's instances
(``reconciler.sandbox.gcp_sql``). Anonymous calls are the sandbox's own: never checked,
never recorded.

For tests and the demo it offers direct access (``get_policy``/``set_policy``), fault
injection (``fail_next``, ``conflict_next``, ``latency``), call counters, the HTTP
statuses it answered (``answered``, ``errors``) and the most API calls it ever had in
flight at once (``max_in_flight``).

    python -m reconciler.sandbox.gcp_emulator --port 8085 --seed seed.json \
        --sql-instance payments-prod:checkout-db
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from reconciler.sandbox import gcp_fields, gcp_principals, gcp_sql
from reconciler.sandbox.gcp_logging import FilterError, LoggingStore
from reconciler.sandbox.gcp_principals import Caller

BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
EMPTY_ETAG = "ACAB"  # what IAM returns for a resource whose policy was never set
MAX_MEMBERS = 1500  # principals per allow policy, every appearance counted
MAX_GROUPS = 250  # Google groups (each once) and domains (every appearance) per policy
MAX_POLICY_BYTES = 64 * 1024  # the reconciler's default max_policy_bytes
MAX_EXPRESSION = 12800  # characters of a condition expression (CEL)
MAX_TITLE = 100  # characters of a condition title: undocumented, so the strictest assumed

_RESOURCE = re.compile(r"^(projects|folders|organizations)/[^/:\s]+$")
_PATH = re.compile(
    r"^/v[123]/(?P<resource>(?:projects|folders|organizations)/[^/:]+)"
    r":(?P<method>getIamPolicy|setIamPolicy|testIamPermissions)$"
)
_EMAIL = r"[^@\s:/]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_MEMBER = re.compile(
    "^(?:"
    rf"(?:user|group|serviceAccount):{_EMAIL}"
    rf"|deleted:(?:user|group|serviceAccount):{_EMAIL}\?uid=[0-9]+"
    r"|domain:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
    r"|principal(?:Set)?://\S+"
    r"|allUsers|allAuthenticatedUsers"
    r"|project(?:Owner|Editor|Viewer):[a-z][a-z0-9-]{4,28}[a-z0-9]"
    ")$"
)
_ROLE = re.compile(
    r"^(?:roles/[A-Za-z0-9_.]+|(?:projects|organizations)/[^/\s]+/roles/[A-Za-z0-9_.]+)$"
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MASKABLE = frozenset({"bindings", "etag", "auditConfigs", "version"})
_WORKSPACE_ACCOUNT = "principalSet://goog/cloudIdentityCustomerId/"
IAM_SERVICE = "cloudresourcemanager.googleapis.com"  # its audit logs' serviceName
NO_PERMISSION = "The caller does not have permission"

PolicyDict = dict[str, Any]
Mutation = Callable[[PolicyDict], PolicyDict | None]


class ApiError(Exception):
    """An API error, rendered as Google's JSON error body (with the legacy ``errors`` list
    when a ``reason`` is given, as Cloud SQL Admin answers)."""

    def __init__(self, status: int, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason

    def body(self) -> dict[str, Any]:
        if self.reason:
            return gcp_sql.error_body(self.status, self.message, self.reason)
        name = _STATUS_NAMES.get(self.status, "UNKNOWN")
        return {"error": {"code": self.status, "message": self.message, "status": name}}


def _has_conditions(policy: Mapping[str, Any]) -> bool:
    return any(b.get("condition") for b in policy.get("bindings", ()))


def _etag_for(resource: str, generation: int) -> str:
    digest = hashlib.sha256(f"{resource}#{generation}".encode()).digest()[:8]
    return base64.b64encode(b"\x07" + digest[1:]).decode()


def validate_policy(policy: Any) -> PolicyDict:
    """Check a policy as setIamPolicy would; return its normalised bindings/auditConfigs."""
    if not isinstance(policy, Mapping):
        raise ApiError(400, "Invalid JSON payload: 'policy' must be an object.")
    try:
        version = int(policy.get("version", 0) or 0)  # proto3 JSON also allows "3"
    except (TypeError, ValueError):
        version = -1
    if version not in (0, 1, 3):
        raise ApiError(400, f"Invalid policy version {version}: valid values are 0, 1 and 3.")
    raw_bindings = policy.get("bindings", []) or []
    if not isinstance(raw_bindings, list):
        raise ApiError(400, "Invalid JSON payload: 'bindings' must be a list.")
    bindings = [_validate_binding(b, version) for b in raw_bindings]
    audit = policy.get("auditConfigs", []) or []
    if not isinstance(audit, list):
        raise ApiError(400, "Invalid JSON payload: 'auditConfigs' must be a list.")
    return {"version": version, "bindings": bindings, "auditConfigs": copy.deepcopy(audit)}


@dataclass(frozen=True)
class Limits:
    """What IAM lets one allow policy hold (see the module docstring)."""

    principals: int = MAX_MEMBERS
    groups: int = MAX_GROUPS
    policy_bytes: int = MAX_POLICY_BYTES


def _compact(value: Any) -> Any:
    """A JSON value without empty fields, as proto3 JSON leaves them out."""
    if isinstance(value, Mapping):
        pairs = ((k, _compact(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def policy_bytes(policy: Mapping[str, Any]) -> int:
    """The size a policy is held to: its bindings and audit configs as compact JSON."""
    body = {
        "bindings": _compact(list(policy.get("bindings") or [])),
        "auditConfigs": _compact(list(policy.get("auditConfigs") or [])),
    }
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())


def _principals(policy: Mapping[str, Any]) -> list[str]:
    """Every appearance of a principal: in bindings and in audit-log exemptions."""
    members = [m for b in policy.get("bindings") or () for m in b.get("members") or ()]
    for config in policy.get("auditConfigs") or ():
        for log in (config.get("auditLogConfigs") or ()) if isinstance(config, Mapping) else ():
            if isinstance(log, Mapping):
                members += [m for m in log.get("exemptedMembers") or () if isinstance(m, str)]
    return members


def check_limits(policy: Mapping[str, Any], limits: Limits) -> None:
    """Refuse a policy IAM would not store, with a 400 like GCP's."""
    members = _principals(policy)
    if len(members) > limits.principals:
        raise ApiError(
            400,
            f"The number of members in the policy ({len(members):,}) is larger than the "
            f"maximum allowed size {limits.principals:,}.",
        )
    groups = {m.lower() for m in members if m.startswith("group:")}
    domains = sum(1 for m in members if m.startswith(("domain:", _WORKSPACE_ACCOUNT)))
    if len(groups) + domains > limits.groups:
        raise ApiError(
            400,
            f"The number of groups and domains in the policy ({len(groups) + domains:,}) is "
            f"larger than the maximum allowed size {limits.groups:,}.",
        )
    size = policy_bytes(policy)
    if size > limits.policy_bytes:
        raise ApiError(
            400,
            f"The size of the policy ({size:,} bytes) is larger than the maximum allowed "
            f"size {limits.policy_bytes:,} bytes.",
        )


def _validate_binding(binding: Any, version: int) -> PolicyDict:
    if not isinstance(binding, Mapping):
        raise ApiError(400, "Invalid JSON payload: each binding must be an object.")
    role = binding.get("role")
    if not isinstance(role, str) or not _ROLE.match(role):
        raise ApiError(400, f"Role ({role}) does not exist in the resource's hierarchy.")
    members = binding.get("members") or []
    if not isinstance(members, list) or not members:
        raise ApiError(400, f"Binding for role {role} must contain at least one member.")
    for member in members:
        if not isinstance(member, str) or not _MEMBER.match(member):
            raise ApiError(
                400,
                f"Invalid member type for {member!r}. Member must be one of user:, group:, "
                "serviceAccount:, domain:, principal://, principalSet://, deleted:, "
                "allUsers or allAuthenticatedUsers.",
            )
    out: PolicyDict = {"role": role, "members": list(members)}
    condition = binding.get("condition")
    if condition:
        out["condition"] = _validate_condition(condition, role, version)
    return out


def _validate_condition(condition: Any, role: str, version: int) -> PolicyDict:
    if version != 3:
        raise ApiError(
            400,
            "Invalid argument: policies with conditional role bindings must specify version 3.",
        )
    if role in BASIC_ROLES:
        raise ApiError(
            400,
            f"Conditions are not supported for basic role {role}. "
            "Use a predefined or custom role instead.",
        )
    if not isinstance(condition, Mapping):
        raise ApiError(400, "Invalid JSON payload: 'condition' must be an object.")
    expression = condition.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise ApiError(400, "Condition expression must not be empty.")
    if len(expression) > MAX_EXPRESSION:
        raise ApiError(400, "Condition expression is too long.")
    title = condition.get("title", "")
    if not isinstance(title, str) or not title:
        raise ApiError(400, "Condition title must not be empty.")
    if len(title) > MAX_TITLE:
        raise ApiError(400, f"Condition title is longer than {MAX_TITLE} characters.")
    keep = ("title", "description", "expression", "location")
    return {k: condition[k] for k in keep if condition.get(k) not in (None, "")}


def render_policy(stored: Mapping[str, Any], requested_version: int) -> PolicyDict:
    """The JSON a getIamPolicy/setIamPolicy response carries, for a requested version."""
    if requested_version not in (0, 1, 3):
        raise ApiError(
            400, f"Invalid requestedPolicyVersion {requested_version}: valid are 0, 1 and 3."
        )
    conditional = _has_conditions(stored)
    out: PolicyDict = {"version": 3 if conditional and requested_version == 3 else 1}
    bindings = copy.deepcopy(stored.get("bindings", []))
    if conditional and requested_version < 3:
        # GCP's v1 view of a conditional binding: role suffixed, condition dropped.
        for b in bindings:
            if "condition" in b:
                digest = hashlib.sha256(json.dumps(b["condition"], sort_keys=True).encode())
                b["role"] = f"{b['role']}_withcond_{digest.hexdigest()[:20]}"
                del b["condition"]
    if bindings:
        out["bindings"] = bindings
    if stored.get("auditConfigs"):
        out["auditConfigs"] = copy.deepcopy(stored["auditConfigs"])
    out["etag"] = stored["etag"]
    return out


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: until heal()
    method: str | None  # "get", "set" or None for both


@dataclass
class _Resource:
    policy: PolicyDict
    generation: int = 0
    faults: list[_Fault] = field(default_factory=list)
    conflicts: list[tuple[int, Mutation | None]] = field(default_factory=list)


class GcpEmulator:
    """An in-process IAM server for projects, folders and organizations.

    >>> emu = GcpEmulator().start()
    >>> emu.add_resource("projects/demo-prod")
    >>> emu.url  # doctest: +SKIP
    'http://127.0.0.1:40123'
    >>> emu.stop()
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        latency: float = 0.0,
        auto_create: bool = False,
        max_policy_bytes: int = MAX_POLICY_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency  # seconds added to every API call (benchmarks)
        self.auto_create = auto_create  # unknown well-formed resources spring into being
        self.limits = Limits(policy_bytes=max_policy_bytes)  # replace it to test others
        self.calls: Counter[tuple[str, str]] = Counter()  # (get|set, resource) -> count
        self.answered: Counter[int] = Counter()  # HTTP status -> responses sent
        self.errors: list[tuple[int, str]] = []  # (status, message) of each error answered
        self.in_flight = 0  # API calls being answered right now
        self.max_in_flight = 0  # the most at once since start or reset_counters()
        self._resources: dict[str, _Resource] = {}
        self.logging = LoggingStore()  # Cloud Logging entries.list (reconciler.sandbox.gcp_logging)
        self.sql = gcp_sql.SqlInstances()  # Cloud SQL instances principals may list
        # request.time of a principal's call that names none (X-Accessctl-Sandbox-Time)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._lock = threading.RLock()
        self._flight = threading.Lock()  # in-flight counting, apart from the state lock
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> GcpEmulator:
        server = ThreadingHTTPServer((self.host, self.port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GcpEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- direct access (no HTTP) -------------------------------------------------------

    def add_resource(self, name: str, policy: Mapping[str, Any] | None = None) -> None:
        """Create a project/folder/organization, optionally with a starting policy."""
        if not _RESOURCE.match(name):
            raise ValueError(f"{name!r} is not projects/<id>, folders/<n> or organizations/<n>")
        with self._lock:
            self._resources[name] = _Resource(policy={"version": 1, "etag": EMPTY_ETAG})
            if policy:
                self.set_policy(name, policy)

    def resources(self) -> list[str]:
        with self._lock:
            return sorted(self._resources)

    def get_policy(self, name: str) -> PolicyDict:
        """The stored policy in its full (version 3) form, etag included."""
        with self._lock:
            return render_policy(self._get(name).policy, 3)

    def set_policy(self, name: str, policy: Mapping[str, Any]) -> PolicyDict:
        """Overwrite a policy directly (validated like setIamPolicy, no etag check)."""
        with self._lock:
            resource = self._get(name)
            wanted = dict(policy)
            if _has_conditions(wanted) and not wanted.get("version"):
                wanted["version"] = 3
            self._store(name, resource, validate_policy(wanted), {"bindings", "auditConfigs"})
            return render_policy(resource.policy, 3)

    # -- fault injection ---------------------------------------------------------------

    def fail_next(
        self, resource: str, status: int = 503, count: int | None = 1, method: str | None = None
    ) -> None:
        """Answer the next ``count`` calls (None: all until heal) with an HTTP error."""
        with self._lock:
            self._get(resource).faults.append(_Fault(status, count, method))

    def heal(self, resource: str) -> None:
        with self._lock:
            self._get(resource).faults.clear()

    def conflict_next(self, resource: str, count: int = 1, mutate: Mutation | None = None) -> None:
        """Before each of the next ``count`` setIamPolicy calls, a concurrent writer changes
        the policy (``mutate`` edits the full policy dict in place or returns a new one), so
        the caller's etag is stale and it gets 409 ABORTED."""
        with self._lock:
            self._get(resource).conflicts.append((count, mutate))

    def reads(self, resource: str | None = None) -> int:
        return self._count("get", resource)

    def writes(self, resource: str | None = None) -> int:
        return self._count("set", resource)

    def reset_counters(self) -> None:
        with self._lock:
            self.calls.clear()
            self.answered.clear()
            self.errors.clear()
        with self._flight:
            self.max_in_flight = self.in_flight

    def _call_started(self) -> None:
        with self._flight:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _answered(self, status: int) -> None:
        with self._lock:
            self.answered[status] += 1

    def _answered_error(self, exc: ApiError) -> None:
        with self._lock:
            self.errors.append((exc.status, exc.message))

    def _call_ended(self) -> None:
        with self._flight:
            self.in_flight -= 1

    # -- the API ----------------------------------------------------------------------

    def list_entries(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Logging ``entries.list``: a parent neither known to IAM nor holding entries
        answers 403 like GCP; faults injected with ``method="list"`` apply."""
        with self._lock:
            for name in body.get("resourceNames") or []:
                self.calls["list", str(name)] += 1
                resource = self._resources.get(str(name))
                if resource is not None:
                    self._maybe_fail(resource, "list")
                elif not self.logging.known(str(name)) and not self.auto_create:
                    raise ApiError(403, f"The caller does not have permission to read {name}")
        try:
            return self.logging.list_entries(body, lambda _name: True)
        except FilterError as exc:
            raise ApiError(400, f"Invalid filter: {exc}") from None

    def get_iam_policy(
        self, name: str, body: Mapping[str, Any], caller: Caller | None = None
    ) -> PolicyDict:
        options = body.get("options") or {}
        try:
            requested = int(options.get("requestedPolicyVersion", 0) or 0)
        except (AttributeError, TypeError, ValueError):
            raise ApiError(400, "Invalid JSON payload: bad 'options'.") from None
        with self._lock:
            self.calls["get", name] += 1
            resource = self._visible(name)
            self._maybe_fail(resource, "get")
            if caller is not None:
                self._authorize(name, caller, _iam_call(name, "GetIamPolicy", "ADMIN_READ"))
            return render_policy(resource.policy, requested)

    def set_iam_policy(
        self, name: str, body: Mapping[str, Any], caller: Caller | None = None
    ) -> PolicyDict:
        with self._lock:
            self.calls["set", name] += 1
            resource = self._visible(name)
            self._maybe_fail(resource, "set")
            if caller is not None:
                self._authorize(name, caller, _iam_call(name, "SetIamPolicy", "ADMIN_WRITE"))
            self._maybe_conflict(name, resource)
            raw = body.get("policy")
            policy = validate_policy(raw)
            etag = raw.get("etag") if isinstance(raw, Mapping) else None
            if etag and etag != resource.policy["etag"]:
                raise ApiError(
                    409,
                    "There were concurrent policy changes. Please retry the whole "
                    "read-modify-write with exponential backoff.",
                )
            if etag and _has_conditions(resource.policy) and policy["version"] != 3:
                raise ApiError(
                    400,
                    "The policy contains conditional role bindings: any change to it must "
                    "specify version 3.",
                )
            self._store(name, resource, policy, _mask(body.get("updateMask")))
            return render_policy(resource.policy, 3)

    def test_iam_permissions(
        self, name: str, body: Mapping[str, Any], caller: Caller | None = None
    ) -> dict[str, Any]:
        """The asked permissions the caller holds (an anonymous caller: all of them).
        Anyone may ask, so nothing is refused and, as in GCP, nothing is audited."""
        wanted = body.get("permissions") or []
        if not isinstance(wanted, list) or not all(isinstance(p, str) for p in wanted):
            raise ApiError(400, "Invalid JSON payload: 'permissions' must be a list of strings.")
        with self._lock:
            self.calls["test", name] += 1
            resource = self._visible(name)
            held = list(dict.fromkeys(wanted))
            if caller is not None:
                held = gcp_principals.granted(resource.policy, caller, wanted)
        return {"permissions": held} if held else {}

    def sql_call(self, call: gcp_sql.SqlCall, caller: Caller | None) -> dict[str, Any]:
        """A Cloud SQL Admin request: the caller's permission on the project, then the
        instance (an instance a permitted caller names that does not exist: 404)."""
        parent = f"projects/{call.project}"
        with self._lock:
            self.calls["sql", parent] += 1
            if caller is not None:
                if parent not in self._resources and not self.auto_create:
                    raise ApiError(403, gcp_sql.NOT_AUTHORIZED, "notAuthorized")
                self._visible(parent)
                audited = _Audited(
                    gcp_sql.SERVICE, call.permission, call.permission, call.log_type, call.resource
                )
                self._authorize(parent, caller, audited, gcp_sql.NOT_AUTHORIZED, "notAuthorized")
        if call.instance is None:
            return self.sql.list(call.project)
        found = self.sql.get(call.project, call.instance)
        if found is None:
            raise ApiError(404, "The Cloud SQL instance does not exist.", "instanceDoesNotExist")
        if call.permission == "cloudsql.instances.restart":
            who = caller.email if caller else ""
            at = caller.at if caller else self.clock()
            return self.sql.restart(call.project, call.instance, who, at)
        return found

    def caller(self, authorization: str | None, time_header: str | None) -> Caller | None:
        """Who a request's headers say is calling (None: the sandbox itself)."""
        try:
            return gcp_principals.caller_of(authorization, time_header, self.clock())
        except gcp_principals.Unauthenticated as exc:
            raise ApiError(401, str(exc)) from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None

    def answer(
        self, verb: str, path: str, body: Mapping[str, Any], caller: Caller | None
    ) -> Mapping[str, Any]:
        """The JSON answer of one API request (raises ApiError)."""
        if verb == "POST" and path == "/v2/entries:list":
            return self.list_entries(body)
        sql = gcp_sql.parse(verb, path)
        if sql is not None:
            return self.sql_call(sql, caller)
        match = _PATH.match(path) if verb == "POST" else None
        if not match:
            raise ApiError(404, f"No such method: {verb} {path}")
        resource, method = match["resource"], match["method"]
        if method == "getIamPolicy":
            return self.get_iam_policy(resource, body, caller)
        if method == "setIamPolicy":
            return self.set_iam_policy(resource, body, caller)
        return self.test_iam_permissions(resource, body, caller)

    # -- internals --------------------------------------------------------------------

    def _authorize(
        self,
        name: str,
        caller: Caller,
        call: _Audited,
        refusal: str = NO_PERMISSION,
        reason: str | None = None,
    ) -> None:
        """IAM's decision on ``name``'s policy, recorded as an audit-log entry where GCP
        would write one; a refusal raises 403 PERMISSION_DENIED."""
        policy = self._resources[name].policy
        allowed = gcp_principals.allows(policy, caller, call.permission)
        log = "activity" if call.log_type == "ADMIN_WRITE" else "data_access"
        if log == "activity" or gcp_principals.data_access_logged(
            policy, call.service, call.log_type, caller
        ):
            self.logging.record(
                name,
                caller.email,
                at=caller.at,
                service=call.service,
                method=call.method,
                resource=call.resource,
                denied=not allowed,
                log=log,
                permission=call.permission,
            )
        if not allowed:
            raise ApiError(403, refusal, reason)

    def _get(self, name: str) -> _Resource:
        if name not in self._resources:
            raise KeyError(f"unknown resource {name}; add it with add_resource()")
        return self._resources[name]

    def _visible(self, name: str) -> _Resource:
        if name not in self._resources and self.auto_create and _RESOURCE.match(name):
            self.add_resource(name)
        if name not in self._resources:
            # GCP does not reveal whether a resource you cannot read exists.
            raise ApiError(
                403,
                f"The caller does not have permission (or {name} does not exist).",
            )
        return self._resources[name]

    def _maybe_fail(self, resource: _Resource, method: str) -> None:
        for fault in resource.faults:
            if fault.method not in (None, method):
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    resource.faults.remove(fault)
            raise ApiError(fault.status, f"Injected fault: HTTP {fault.status}.")

    def _maybe_conflict(self, name: str, resource: _Resource) -> None:
        if not resource.conflicts:
            return
        count, mutate = resource.conflicts[0]
        if count <= 1:
            resource.conflicts.pop(0)
        else:
            resource.conflicts[0] = (count - 1, mutate)
        current = render_policy(resource.policy, 3)
        changed = current
        if mutate is not None:
            result = mutate(current)
            changed = result if result is not None else current
        changed = dict(changed)
        changed["version"] = 3 if _has_conditions(changed) else changed.get("version", 1)
        self._store(name, resource, validate_policy(changed), {"bindings", "auditConfigs"})

    def _store(
        self, name: str, resource: _Resource, policy: PolicyDict, mask: Iterable[str]
    ) -> None:
        paths = set(mask)
        stored = dict(resource.policy)
        if "bindings" in paths:
            stored["bindings"] = policy["bindings"]
        if "auditConfigs" in paths:
            stored["auditConfigs"] = policy["auditConfigs"]
        stored["version"] = 3 if _has_conditions(stored) else 1
        check_limits(stored, self.limits)
        resource.generation += 1
        stored["etag"] = _etag_for(name, resource.generation)
        resource.policy = stored

    def _count(self, method: str, resource: str | None) -> int:
        with self._lock:
            return sum(
                n for (m, r), n in self.calls.items() if m == method and resource in (None, r)
            )


@dataclass(frozen=True)
class _Audited:
    """One call as IAM checks it and Cloud Audit Logs records it."""

    service: str
    method: str
    permission: str
    log_type: str  # ADMIN_READ, ADMIN_WRITE, DATA_READ or DATA_WRITE
    resource: str


def _iam_call(name: str, method: str, log_type: str) -> _Audited:
    """getIamPolicy/setIamPolicy on a project, folder or organization."""
    kind = name.partition("/")[0]
    verb = "getIamPolicy" if method == "GetIamPolicy" else "setIamPolicy"
    return _Audited(IAM_SERVICE, method, f"resourcemanager.{kind}.{verb}", log_type, name)


def _mask(update_mask: Any) -> set[str]:
    """setIamPolicy's updateMask; GCP's default is ``bindings, etag``."""
    if not update_mask:
        return {"bindings", "etag"}
    paths = update_mask.get("paths", []) if isinstance(update_mask, Mapping) else update_mask
    if isinstance(paths, str):
        paths = [p.strip() for p in paths.split(",") if p.strip()]
    unknown = [p for p in paths if p not in _MASKABLE]
    if unknown:
        raise ApiError(400, f"Invalid updateMask path(s): {', '.join(unknown)}.")
    return set(paths)


def _handler_for(emulator: GcpEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's session expects

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes; without this, Nagle plus delayed
            # ACKs add ~40 ms to every keep-alive call.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            self._serve("POST")

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/_emulator/state":
                # A debugging view of the whole state, handy next to a running demo.
                state = {name: emulator.get_policy(name) for name in emulator.resources()}
                self._send(200, state)
                return
            self._serve("GET")

        def _serve(self, verb: str) -> None:
            emulator._call_started()
            try:
                self._answer(verb)
            finally:
                emulator._call_ended()

        def _answer(self, verb: str) -> None:
            path = unquote(urlsplit(self.path).path)
            try:
                body = self._body()
                caller = emulator.caller(
                    self.headers.get("Authorization"),
                    self.headers.get(gcp_principals.TIME_HEADER),
                )
                fields = parse_qs(urlsplit(self.path).query).get("fields")
                try:
                    selection = gcp_fields.parse(fields[-1]) if fields else None
                except gcp_fields.FieldsError as exc:
                    raise ApiError(400, str(exc)) from None
                if emulator.latency:
                    time.sleep(emulator.latency)
                answer = emulator.answer(verb, path, body, caller)
                self._send(200, gcp_fields.select(answer, selection))
            except ApiError as exc:
                emulator._answered_error(exc)
                self._send(exc.status, exc.body())
            except Exception as exc:  # a bug here must still answer like a server
                self._send(500, ApiError(500, f"Emulator error: {exc!r}").body())

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if not raw:
                return {}
            try:
                data = json.loads(raw)
            except ValueError:
                raise ApiError(400, "Invalid JSON payload received.") from None
            if not isinstance(data, dict):
                raise ApiError(400, "Invalid JSON payload received: expected an object.")
            return data

        def _send(self, status: int, payload: Mapping[str, Any]) -> None:
            emulator._answered(status)
            data = json.dumps(payload).encode()
            self.send_response(status, HTTPStatus(status).phrase)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests and the demo print what matters themselves

    return Handler


def load_seed(emulator: GcpEmulator, seed: Any) -> None:
    """Seed resources from ``{"projects/x": {policy} | null, ...}`` or ``["projects/x"]``."""
    items = seed.items() if isinstance(seed, Mapping) else ((name, None) for name in seed)
    for name, policy in items:
        emulator.add_resource(name, policy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="GCP IAM (Resource Manager) emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8085)
    parser.add_argument("--seed", help="JSON file: {resource: policy-or-null} or [resource]")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per call")
    parser.add_argument(
        "--auto-create", action="store_true", help="any well-formed resource name exists"
    )
    parser.add_argument(
        "--sql-instance",
        action="append",
        default=[],
        metavar="PROJECT:NAME",
        help="a Cloud SQL instance principals may list (repeatable)",
    )
    parser.add_argument(
        "--max-policy-bytes",
        type=int,
        default=MAX_POLICY_BYTES,
        help="size bound of one allow policy (match the reconciler's max_policy_bytes)",
    )
    args = parser.parse_args(argv)
    emulator = GcpEmulator(
        port=args.port,
        host=args.host,
        latency=args.latency,
        auto_create=args.auto_create,
        max_policy_bytes=args.max_policy_bytes,
    )
    if args.seed:
        try:
            with open(args.seed, encoding="utf-8") as fh:
                load_seed(emulator, json.load(fh))
        except (OSError, ValueError, ApiError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc)
            print(f"gcp-emulator: cannot load seed {args.seed}: {message}", file=sys.stderr)
            return 2
    for spec in args.sql_instance:
        project, sep, name = spec.partition(":")
        if not (project and sep and name):
            print(f"gcp-emulator: --sql-instance {spec!r} is not PROJECT:NAME", file=sys.stderr)
            return 2
        emulator.sql.add(project, name)
    emulator.start()
    print(f"GCP emulator listening on {emulator.url}", flush=True)
    print(f"export ACCESSCTL_GCP_ENDPOINT={emulator.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
