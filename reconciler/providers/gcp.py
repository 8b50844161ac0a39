"""The GCP provider: managed conditional IAM bindings on projects, folders and organizations.

A managed binding is one whose condition title starts with ``accessctl:``; everything
else in a policy (other bindings, their member order and conditions, ``auditConfigs``)
is carried through every write untouched.

Calls per run: one ``getIamPolicy`` per observed scope (concurrently, bounded pool), then
per changed scope one ``setIamPolicy`` sent with the etag of that read. The
``setIamPolicy`` response is the policy IAM stored, so it is the read-back that verifies
the change; ``verify_read: true`` adds a separate ``getIamPolicy`` for the paranoid. A
409 (someone wrote between our read and write) re-reads and redoes the change on the
fresh policy; 429/5xx/transport errors are retried the same way with bounded
exponential backoff and jitter. A scope that still fails is reported, never raised.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.core.models import (
    Change,
    ChangeKind,
    ChangeResult,
    Config,
    Grant,
)
from reconciler.core.providers import ProviderSpec, register
from reconciler.core.timeutil import format_rfc3339, parse_rfc3339
from reconciler.providers.base import Observation

if TYPE_CHECKING:
    from google.iam.v1 import policy_pb2

ENDPOINT_ENV = "ACCESSCTL_GCP_ENDPOINT"
_SCOPE = re.compile(r"^(projects|folders|organizations)/[^/\s]+$")
_MEMBER_TYPE = re.compile(r"^[A-Za-z]+:\S+$")
_TERM = re.compile(
    r"""^request\.time\s*(?P<op><|>=)\s*timestamp\(\s*(["'])(?P<ts>[^"']+)\2\s*\)$"""
)
_CASELESS = frozenset({"user", "group", "serviceAccount", "domain", "deleted"})
_PR = re.compile(r"\bvia PR #(\d+)\b")
_PERMISSIONS = {
    "projects": "resourcemanager.projects.getIamPolicy/setIamPolicy",
    "folders": "resourcemanager.folders.getIamPolicy/setIamPolicy",
    "organizations": "resourcemanager.organizations.getIamPolicy/setIamPolicy",
}
T = TypeVar("T")
MANAGED_TITLE_PREFIX = "accessctl:"
BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
_PROJECT_ID = "[a-z][a-z0-9-]{4,28}[a-z0-9]"


@register
class Gcp(ProviderSpec):
    """Google Cloud: conditional IAM bindings on projects, folders and organizations."""

    name = "gcp"
    title = "Google Cloud"
    scope_pattern = (
        rf"^(?:projects/{_PROJECT_ID}|folders/[0-9]{{1,20}}|organizations/[0-9]{{1,20}})$"
    )
    scope_help = "projects/<project-id>, folders/<number> or organizations/<number>"
    principal_pattern = r"^(?:[A-Za-z]+:\S+|principal(?:Set)?://\S+)$"
    principal_help = "a member such as user:alice@example.com"
    role_pattern = (
        rf"^(?:roles/[A-Za-z0-9_.]{{1,128}}|projects/{_PROJECT_ID}/roles/[A-Za-z0-9_.]{{1,64}}"
        r"|organizations/[0-9]{1,20}/roles/[A-Za-z0-9_.]{1,64})$"
    )
    role_help = "roles/<name>, projects/<id>/roles/<name> or organizations/<number>/roles/<name>"
    future_start = True  # the IAM condition carries the begin bound
    settings_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "concurrency": {
                "type": "integer",
                "minimum": 1,
                "maximum": 64,
                "x-message": "must be an integer from 1 to 64",
            },
            "attempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "x-message": "must be an integer from 1 to 10",
            },
            "timeout": {
                "type": "integer",
                "minimum": 1,
                "maximum": 600,
                "x-message": "must be seconds, 1 to 600",
            },
            "verify_read": {"type": "boolean", "x-message": "must be true or false"},
        },
    }

    def principal_id(self, principal: str) -> str:
        return member_id(principal)

    def role_refusal(self, role: str) -> str | None:
        if role in BASIC_ROLES:
            return (
                f"{role} is a basic role; GCP cannot put a time condition on it, so it "
                "cannot be granted temporarily (ask for a predefined role instead)"
            )
        return None

    def identity(self, grant: Grant, now: datetime) -> tuple[object, ...]:
        # A begin still ahead is part of what the binding allows; one already passed
        # allows the same as none. The end always is.
        begin = grant.begin if grant.begin is not None and grant.begin > now else None
        end = format_rfc3339(grant.end) if grant.end else None
        begin_text = format_rfc3339(begin) if begin else None
        return (
            "gcp",
            grant.scope,
            grant.role,
            member_id(grant.principal),
            grant.request,
            begin_text,
            end,
        )

    def adapter(self, config: Config, options: Mapping[str, Any]) -> GcpProvider:
        return make_provider(config, options)


# -- bindings <-> grants (pure) -------------------------------------------------------


def is_managed(binding: Any) -> bool:
    return bool(binding.condition.title.startswith(MANAGED_TITLE_PREFIX))


def parse_expression(expression: str) -> tuple[datetime | None, datetime | None]:
    """``(begin, end)`` of an accessctl condition; ``(None, None)`` if not ours to read."""
    terms = [t.strip() for t in expression.split("&&")]
    bounds: dict[str, datetime] = {}
    for term in terms:
        match = _TERM.match(term)
        if not match or match["op"] in bounds:
            return None, None
        try:
            bounds[match["op"]] = parse_rfc3339(match["ts"])
        except ValueError:
            return None, None
    if "<" not in bounds:
        return None, None
    return bounds.get(">="), bounds["<"]


def expression_for(grant: Grant, now: datetime) -> str:
    assert grant.end is not None
    expr = f'request.time < timestamp("{format_rfc3339(grant.end)}")'
    if grant.begin is not None and grant.begin > now:
        expr = f'request.time >= timestamp("{format_rfc3339(grant.begin)}") && {expr}'
    return expr


def description_for(grant: Grant) -> str:
    text = f"accessctl grant for {grant.request}"
    return f"{text} via PR #{grant.pr}" if grant.pr else text


def grants_of(scope: str, policy: policy_pb2.Policy) -> frozenset[Grant]:
    """The managed grants a policy holds: one per (managed binding, member)."""
    out: set[Grant] = set()
    for binding in policy.bindings:
        if not is_managed(binding):
            continue
        begin, end = parse_expression(binding.condition.expression)
        pr = _PR.search(binding.condition.description)
        for member in binding.members:
            out.add(
                Grant(
                    provider="gcp",
                    scope=scope,
                    role=binding.role,
                    principal=member,
                    request=binding.condition.title[len(MANAGED_TITLE_PREFIX) :],
                    begin=begin,
                    end=end,
                    pr=int(pr.group(1)) if pr else None,
                )
            )
    return frozenset(out)


def member_id(member: str) -> str:
    """A member as IAM compares it: e-mail and domain values ignore case (IAM may answer
    ``user:Jane.Doe@example.com`` for ``user:jane.doe@example.com``); types and
    ``principal://`` identifiers do not."""
    kind, sep, value = member.partition(":")
    if sep and kind in _CASELESS and not value.startswith("//"):
        return f"{kind}:{value.lower()}"
    return member


def _identity(grant: Grant) -> tuple[str, str, str | None, str | None]:
    """What matches a grant to a binding member: role, member, request, end (to the second)."""
    end = format_rfc3339(grant.end) if grant.end else None
    return (grant.role, member_id(grant.principal), grant.request, end)


def modify(
    policy: policy_pb2.Policy, grants: Sequence[Grant], revokes: Sequence[Grant], now: datetime
) -> policy_pb2.Policy:
    """A copy of ``policy`` with ``revokes`` removed and ``grants`` added; nothing else moves."""
    from google.iam.v1 import policy_pb2

    # A revoke and a grant of the same binding (same member but for case) cancel out.
    gone = {_identity(g) for g in revokes} - {_identity(g) for g in grants}
    present: set[tuple[str, str, str | None, str | None]] = set()
    new = policy_pb2.Policy()
    new.CopyFrom(policy)
    del new.bindings[:]
    for binding in policy.bindings:
        if not is_managed(binding):
            new.bindings.append(binding)
            continue
        title = binding.condition.title[len(MANAGED_TITLE_PREFIX) :]
        end = parse_expression(binding.condition.expression)[1]
        end_text = format_rfc3339(end) if end else None
        keep = [
            m for m in binding.members if (binding.role, member_id(m), title, end_text) not in gone
        ]
        present |= {(binding.role, member_id(m), title, end_text) for m in keep}
        if keep:
            copy = new.bindings.add()
            copy.CopyFrom(binding)
            if len(keep) != len(binding.members):
                del copy.members[:]
                copy.members.extend(keep)
    for grant in grants:
        if _identity(grant) in present:
            continue  # already there (a concurrent run, or a retry after a lost response)
        present.add(_identity(grant))
        binding = new.bindings.add()
        binding.role = grant.role
        binding.members.append(grant.principal)
        binding.condition.title = f"{MANAGED_TITLE_PREFIX}{grant.request}"
        binding.condition.description = description_for(grant)
        binding.condition.expression = expression_for(grant, now)
    new.version = 3  # conditions need it, and removing bindings from a v3 policy too
    return new


def grant_problem(grant: Grant) -> str | None:
    """Why a grant cannot become a binding, or None."""
    if not _MEMBER_TYPE.match(grant.principal):
        return (
            f"principal {grant.principal!r} has no type prefix; "
            "write it as user:, group:, serviceAccount: or principal://"
        )
    if grant.end is None:
        return "grant has no end time; accessctl never grants GCP access without expiry"
    if not grant.request:
        return "grant names no request file"
    return None


# -- clients --------------------------------------------------------------------------


class GcpClients:
    """The three Resource Manager clients, built on first use (importing is cheap)."""

    def __init__(
        self,
        endpoint: str | None = None,
        clients: Mapping[str, Any] | None = None,
        pool_size: int = 10,
    ):
        self.endpoint = endpoint
        self.pool_size = pool_size
        self._clients: dict[str, Any] = dict(clients or {})
        self._failure: Exception | None = None
        self._lock = threading.Lock()

    def for_scope(self, scope: str) -> Any:
        kind = scope.split("/", 1)[0]
        with self._lock:
            if self._failure is not None:
                # Missing credentials fail the same way for every scope: find out once,
                # not once per scope (ADC may probe the metadata server each time).
                raise self._failure
            if kind not in self._clients:
                try:
                    self._clients[kind] = self._build(kind)
                except Exception as exc:
                    self._failure = exc
                    raise
            return self._clients[kind]

    def _build(self, kind: str) -> Any:
        from google.cloud import resourcemanager_v3

        cls = {
            "projects": resourcemanager_v3.ProjectsClient,
            "folders": resourcemanager_v3.FoldersClient,
            "organizations": resourcemanager_v3.OrganizationsClient,
        }[kind]
        if self.endpoint:
            from google.api_core.client_options import ClientOptions
            from google.auth import credentials

            anonymous: Any = credentials.AnonymousCredentials  # untyped in google-auth
            client = cls(
                credentials=anonymous(),
                transport="rest",
                client_options=ClientOptions(api_endpoint=self.endpoint),
            )
        else:
            # Application Default Credentials: what google-github-actions/auth provides.
            client = cls(transport="rest")
        self._widen_pool(client)
        return client

    def _widen_pool(self, client: Any) -> None:
        """requests keeps 10 connections per host; a wider worker pool would churn them."""
        session = getattr(getattr(client, "_transport", None), "_session", None)
        if self.pool_size <= 10 or session is None:
            return
        from requests.adapters import HTTPAdapter

        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)


# -- errors and retries ---------------------------------------------------------------


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(retryable, message for a person)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.Conflict):
        return True, "409 ABORTED: the policy kept changing between our read and our write"
    if isinstance(exc, gexc.TooManyRequests | gexc.ServerError | gexc.DeadlineExceeded):
        return True, f"{exc.code} {getattr(exc, 'message', exc)}".strip()
    if isinstance(exc, gexc.GoogleAPICallError):
        return False, f"{exc.code} {exc.message}".strip()
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return False, (
            "no Google credentials: run `gcloud auth application-default login`, use "
            f"google-github-actions/auth, or set {ENDPOINT_ENV} for a sandbox ({exc})"
        )
    import requests

    if isinstance(exc, requests.RequestException | auth_exc.TransportError | OSError):
        return True, f"cannot reach the IAM API: {exc}"
    return False, f"{type(exc).__name__}: {exc}"


def _is_rejection(exc: BaseException) -> bool:
    """IAM refused the policy itself (400), as opposed to refusing us or being down."""
    from google.api_core import exceptions as gexc

    return isinstance(exc, gexc.BadRequest)


def _failure(scope: str, exc: BaseException, attempts: int) -> str:
    """What a person reads about a scope that failed: the cause, and what to do."""
    retryable, message = _classify(exc)
    if retryable:
        message = f"{message} (gave up after {attempts} attempts)"
    if message.startswith("403"):
        kind = scope.split("/", 1)[0]
        return (
            f"{message} (the reconciler needs {_PERMISSIONS.get(kind, 'getIamPolicy/setIamPolicy')}"
            f" on {scope}; see docs/gcp.md)"
        )
    return message


@dataclass
class _Outcome:
    policy: policy_pb2.Policy | None
    error: str | None = None


# -- the provider ---------------------------------------------------------------------


class GcpProvider:
    """Observe and change managed bindings; thread-safe, so the caller may apply scopes
    concurrently."""

    name = "gcp"

    def __init__(
        self,
        clients: GcpClients,
        *,
        concurrency: int = 8,
        attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        timeout: float = 30.0,
        verify_read: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        self.concurrency = max(1, concurrency)
        self.attempts = max(1, attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.verify_read = verify_read
        self._sleep = sleep
        self._cache: dict[str, policy_pb2.Policy] = {}
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {"reads": 0, "writes": 0}  # over the provider's life

    # observe ----------------------------------------------------------------------

    def observe(self, scopes: Sequence[str], now: datetime) -> Observation:
        unique = list(dict.fromkeys(scopes))
        before = dict(self.calls)
        observation = Observation()
        if not unique:
            observation.calls = {"reads": 0, "writes": 0}
            return observation
        workers = min(self.concurrency, len(unique))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gcp-observe") as pool:
            outcomes = list(pool.map(self._read_scope, unique))
        for scope, outcome in zip(unique, outcomes, strict=True):
            if outcome.policy is None:
                observation.failures[scope] = outcome.error or "unknown error"
                continue
            with self._lock:
                self._cache[scope] = outcome.policy
            observation.grants[scope] = grants_of(scope, outcome.policy)
        observation.calls = {k: self.calls[k] - before.get(k, 0) for k in self.calls}
        return observation

    def _read_scope(self, scope: str) -> _Outcome:
        if not _SCOPE.match(scope):
            return _Outcome(
                None, f"{scope!r} is not projects/<id>, folders/<n> or organizations/<n>"
            )
        try:
            return _Outcome(self._retrying(lambda: self._get(scope)))
        except Exception as exc:
            return _Outcome(None, _failure(scope, exc, self.attempts))

    # apply ------------------------------------------------------------------------

    def apply(self, scope: str, changes: Sequence[Change], now: datetime) -> list[ChangeResult]:
        results: dict[int, ChangeResult] = {}
        grants: list[tuple[int, Change]] = []
        revokes: list[tuple[int, Change]] = []
        for i, change in enumerate(changes):
            problem = grant_problem(change.grant) if change.kind is ChangeKind.GRANT else None
            if change.grant.scope != scope:
                problem = f"change for {change.grant.scope} passed to scope {scope}"
            if problem:
                results[i] = ChangeResult(change, ok=False, message=problem)
            elif change.kind is ChangeKind.GRANT:
                grants.append((i, change))
            elif change.kind is ChangeKind.REVOKE:
                revokes.append((i, change))
            else:
                results[i] = ChangeResult(change, ok=True, message="kept", verified=False)
        if grants or revokes:
            results.update(self._apply_scope(scope, grants, revokes, now))
        return [results[i] for i in range(len(changes))]

    def _apply_scope(
        self,
        scope: str,
        grants: list[tuple[int, Change]],
        revokes: list[tuple[int, Change]],
        now: datetime,
    ) -> dict[int, ChangeResult]:
        if not _SCOPE.match(scope):
            message = f"{scope!r} is not projects/<id>, folders/<n> or organizations/<n>"
            return {i: ChangeResult(c, ok=False, message=message) for i, c in (*grants, *revokes)}
        try:
            return self._write_and_verify(scope, grants, revokes, now)
        except Exception as exc:
            if not _is_rejection(exc) or len(grants) + len(revokes) < 2:
                message = _failure(scope, exc, self.attempts)
                return {
                    i: ChangeResult(c, ok=False, message=message) for i, c in (*grants, *revokes)
                }
        # IAM refused the combined write (e.g. a role it does not know): one bad grant
        # must not keep the others, least of all the revokes, from happening.
        results: dict[int, ChangeResult] = {}
        Batch = tuple[list[tuple[int, Change]], list[tuple[int, Change]]]
        batches: list[Batch] = [([], revokes)] if revokes else []
        batches += [([g], []) for g in grants]
        for batch_grants, batch_revokes in batches:
            try:
                results.update(self._write_and_verify(scope, batch_grants, batch_revokes, now))
            except Exception as exc:
                message = _failure(scope, exc, self.attempts)
                for i, c in (*batch_grants, *batch_revokes):
                    results[i] = ChangeResult(c, ok=False, message=message)
        return results

    def _write_and_verify(
        self,
        scope: str,
        grants: list[tuple[int, Change]],
        revokes: list[tuple[int, Change]],
        now: datetime,
    ) -> dict[int, ChangeResult]:
        stored = self._retrying(
            lambda: self._write(
                scope, [c.grant for _, c in grants], [c.grant for _, c in revokes], now
            )
        )
        results = self._verify(scope, stored, grants, revokes)
        if all(r.ok for r in results.values()):
            return results
        # GCP answers setIamPolicy with the stored policy; should an endpoint answer
        # with less, a fresh read is the judge before we call the change failed.
        try:
            return self._verify(scope, self._retrying(lambda: self._get(scope)), grants, revokes)
        except Exception:
            return results

    def _write(
        self, scope: str, grants: list[Grant], revokes: list[Grant], now: datetime
    ) -> policy_pb2.Policy:
        """One read-modify-write; the first attempt uses observe()'s read."""
        with self._lock:
            current = self._cache.pop(scope, None)
        if current is None:
            current = self._get(scope)
        wanted = modify(current, grants, revokes, now)
        if _same_bindings(wanted, current):
            return current  # nothing to do: already converged (e.g. by a concurrent run)
        stored = self._set(scope, wanted)
        return self._get(scope) if self.verify_read else stored

    def _verify(
        self,
        scope: str,
        stored: policy_pb2.Policy,
        grants: list[tuple[int, Change]],
        revokes: list[tuple[int, Change]],
    ) -> dict[int, ChangeResult]:
        held = {_identity(g) for g in grants_of(scope, stored)}
        out: dict[int, ChangeResult] = {}
        for i, change in grants:
            ok = _identity(change.grant) in held
            message = "granted" if ok else "binding missing from the policy after the write"
            out[i] = ChangeResult(change, ok=ok, message=message, verified=ok)
        granted = {_identity(c.grant) for _, c in grants}
        for i, change in revokes:
            ok = _identity(change.grant) not in held
            message = "revoked" if ok else "binding still in the policy after the write"
            if _identity(change.grant) in granted:
                ok, message = _identity(change.grant) in held, "superseded by the same grant"
            out[i] = ChangeResult(change, ok=ok, message=message, verified=ok)
        return out

    # calls and retries --------------------------------------------------------------

    def _get(self, scope: str) -> policy_pb2.Policy:
        self._count("reads")
        client = self.clients.for_scope(scope)
        request = {"resource": scope, "options": {"requested_policy_version": 3}}
        return client.get_iam_policy(request=request, retry=None, timeout=self.timeout)

    def _set(self, scope: str, policy: policy_pb2.Policy) -> policy_pb2.Policy:
        self._count("writes")
        client = self.clients.for_scope(scope)
        # No update_mask: IAM's default (bindings, etag) leaves auditConfigs as stored.
        request = {"resource": scope, "policy": policy}
        return client.set_iam_policy(request=request, retry=None, timeout=self.timeout)

    def _retrying(self, call: Callable[[], T]) -> T:
        for attempt in range(self.attempts):
            try:
                return call()
            except Exception as exc:
                retryable, _ = _classify(exc)
                if not retryable or attempt == self.attempts - 1:
                    raise
                self._sleep(self._backoff(attempt))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2.0**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.calls[kind] += 1


def _same_bindings(a: policy_pb2.Policy, b: policy_pb2.Policy) -> bool:
    return list(a.bindings) == list(b.bindings)


def _options(config: Config, options: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(config.providers.get("gcp", {}) or {})
    merged.update(options or {})
    return merged


def make_provider(config: Config, options: Mapping[str, Any]) -> GcpProvider:
    """Options (from ``providers.gcp`` in policies, overridden by the caller): ``endpoint``
    (default ``$ACCESSCTL_GCP_ENDPOINT``), ``clients`` (a GcpClients, for tests),
    ``concurrency`` (8), ``attempts`` (5), ``backoff_base`` (0.5 s), ``backoff_max`` (8 s),
    ``timeout`` (30 s), ``verify_read`` (false)."""
    merged = _options(config, options)
    clients = merged.get("clients")
    if not isinstance(clients, GcpClients):
        endpoint = merged.get("endpoint") or os.environ.get(ENDPOINT_ENV) or None
        clients = GcpClients(endpoint=endpoint, pool_size=int(merged.get("concurrency", 8)))
    return GcpProvider(
        clients,
        concurrency=int(merged.get("concurrency", 8)),
        attempts=int(merged.get("attempts", 5)),
        backoff_base=float(merged.get("backoff_base", 0.5)),
        backoff_max=float(merged.get("backoff_max", 8.0)),
        timeout=float(merged.get("timeout", 30.0)),
        verify_read=bool(merged.get("verify_read", False)),
    )
