"""Who may do what in the GCP emulator: callers with a principal's identity, IAM's decision.

GCP authenticates every call with an OAuth access token; the emulator has no identity
provider, so a sandbox convention stands in for one. A caller presents a principal's
identity as a bearer token naming the member:

    Authorization: Bearer sandbox-principal:user:alice@example.com

and may say when the call happens (IAM conditions compare ``request.time``), which the
demo and the tests need to act inside a fixed story:

    X-Accessctl-Sandbox-Time: 2026-12-01T09:20:00Z

A call without ``Authorization`` is the sandbox's own (the reconciler's anonymous
credentials): never checked, never recorded. Any other bearer token is refused with 401
UNAUTHENTICATED, as GCP refuses a token it did not issue.

The decision follows IAM's allow policy of the one resource named (no hierarchy, no deny
policies): a binding grants its role's permissions to its members while its condition
holds. Roles are expanded through ``ROLE_PERMISSIONS``, a small table of the predefined
roles the demo and the tests use (a role not listed grants nothing). Conditions are
evaluated for the subset of CEL that time windows are written in: ``request.time``
compared with ``timestamp("...")``, ``&&``, ``||``, ``!``, parentheses, ``true``,
``false``; anything else makes the condition false, as an expression IAM cannot
evaluate grants nothing.

```python
headers = principal_headers("user:alice@example.com", at=parse_rfc3339("2026-12-01T09:20:00Z"))
```
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TOKEN_PREFIX = "sandbox-principal:"  # noqa: S105 (a sandbox convention, not a secret)
TIME_HEADER = "X-Accessctl-Sandbox-Time"
UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)

# Predefined roles -> permissions (fnmatch patterns), for the roles the demo and the tests
# use. Trimmed from IAM's role reference to the services the emulator serves.
_CLOUDSQL_READ = (
    "cloudsql.backupRuns.get",
    "cloudsql.backupRuns.list",
    "cloudsql.databases.get",
    "cloudsql.databases.list",
    "cloudsql.instances.get",
    "cloudsql.instances.list",
    "cloudsql.sslCerts.get",
    "cloudsql.sslCerts.list",
    "cloudsql.users.list",
)
_PROJECT_READ = ("resourcemanager.projects.get", "resourcemanager.projects.list")
_GET_IAM = (
    "resourcemanager.projects.getIamPolicy",
    "resourcemanager.folders.getIamPolicy",
    "resourcemanager.organizations.getIamPolicy",
)
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "roles/owner": frozenset({"*"}),
    "roles/editor": frozenset(
        {"cloudsql.*", "logging.*", "monitoring.*", *_PROJECT_READ, *_GET_IAM}
    ),
    "roles/viewer": frozenset(
        {*_CLOUDSQL_READ, *_PROJECT_READ, *_GET_IAM, "logging.logEntries.list"}
    ),
    "roles/cloudsql.admin": frozenset({"cloudsql.*", *_PROJECT_READ}),
    "roles/cloudsql.viewer": frozenset({*_CLOUDSQL_READ, *_PROJECT_READ}),
    "roles/cloudsql.client": frozenset(
        {"cloudsql.instances.connect", "cloudsql.instances.get", *_PROJECT_READ}
    ),
    "roles/logging.viewer": frozenset(
        {"logging.logEntries.list", "logging.logs.list", "logging.views.list", *_PROJECT_READ}
    ),
    "roles/monitoring.viewer": frozenset({"monitoring.timeSeries.list", *_PROJECT_READ}),
    "roles/iam.securityReviewer": frozenset({*_GET_IAM, *_PROJECT_READ}),
    "roles/resourcemanager.projectIamAdmin": frozenset(
        {"resourcemanager.projects.getIamPolicy", "resourcemanager.projects.setIamPolicy"}
    ),
}


class Unauthenticated(ValueError):
    """A bearer token the emulator did not issue (answered 401 UNAUTHENTICATED)."""


@dataclass(frozen=True)
class Caller:
    """A call made with a principal's identity, at ``at`` (IAM's ``request.time``)."""

    member: str  # user:alice@example.com
    at: datetime

    @property
    def email(self) -> str:
        """What audit logs name as ``authenticationInfo.principalEmail``."""
        return self.member.partition(":")[2]


def principal_headers(member: str, at: datetime | None = None) -> dict[str, str]:
    """The headers of a call made as ``member`` (``user:a@x``, ``serviceAccount:b@y``)."""
    headers = {"Authorization": f"Bearer {TOKEN_PREFIX}{member}"}
    if at is not None:
        headers[TIME_HEADER] = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return headers


_CALLER_MEMBER = re.compile(r"^(user|serviceAccount):[^@\s:/]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


def caller_of(authorization: str | None, time: str | None, now: datetime) -> Caller | None:
    """The principal a request's ``Authorization`` and time headers present, or None for an
    anonymous call. Raises Unauthenticated for another token, ValueError for a bad time."""
    authorization = (authorization or "").strip()
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated(UNAUTHENTICATED)
    member = token[len(TOKEN_PREFIX) :]
    if not _CALLER_MEMBER.match(member):
        raise Unauthenticated(UNAUTHENTICATED)
    raw = (time or "").strip()
    at = _parse_time(raw) if raw else now
    if at is None:
        raise ValueError(f"{TIME_HEADER}: {raw!r} is not an RFC 3339 time with an offset")
    return Caller(member, at)


def _parse_time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.astimezone(UTC) if value.tzinfo else None


def permissions_of(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def role_grants(role: str, permission: str) -> bool:
    return any(fnmatch.fnmatchcase(permission, p) for p in permissions_of(role))


def _is_member(member: str, caller: str) -> bool:
    """Whether a binding's ``member`` takes in ``caller``: the same principal (e-mails
    compare case-insensitively), allUsers, allAuthenticatedUsers, or the caller's domain.
    Groups have no members here (the emulator holds no directory)."""
    if member in ("allUsers", "allAuthenticatedUsers"):
        return True
    if member.lower() == caller.lower():
        return True
    domain = caller.rpartition("@")[2].lower()
    return member.lower() == f"domain:{domain}"


def allows(policy: Mapping[str, Any], caller: Caller, permission: str) -> bool:
    """IAM's answer for one permission on the resource holding ``policy``."""
    for binding in policy.get("bindings") or ():
        if not role_grants(str(binding.get("role", "")), permission):
            continue
        if not any(_is_member(str(m), caller.member) for m in binding.get("members") or ()):
            continue
        condition = binding.get("condition")
        if not condition or condition_holds(str(condition.get("expression", "")), caller.at):
            return True
    return False


def granted(policy: Mapping[str, Any], caller: Caller, wanted: Iterable[str]) -> list[str]:
    """``testIamPermissions``: the permissions of ``wanted`` the caller holds."""
    return [p for p in dict.fromkeys(wanted) if allows(policy, caller, p)]


def data_access_logged(
    policy: Mapping[str, Any], service: str, log_type: str, caller: Caller
) -> bool:
    """Whether the resource's audit configs turn this Data Access log type on for the
    service (or ``allServices``) without exempting the caller. Off by default, as in GCP."""
    for config in policy.get("auditConfigs") or ():
        if not isinstance(config, Mapping) or config.get("service") not in (service, "allServices"):
            continue
        for log in config.get("auditLogConfigs") or ():
            if not isinstance(log, Mapping) or log.get("logType") != log_type:
                continue
            exempt = {str(m).lower() for m in log.get("exemptedMembers") or ()}
            if caller.member.lower() not in exempt:
                return True
    return False


# -- the CEL subset of time windows ----------------------------------------------------

_CEL = re.compile(
    r"""\s*(?:
      (?P<time>request\.time\b) |
      (?P<stamp>timestamp\(\s*"(?P<value>[^"\\]*)"\s*\)) |
      (?P<op><=|>=|==|!=|<|>) |
      (?P<and>&&) | (?P<or>\|\|) | (?P<not>!) |
      (?P<lparen>\() | (?P<rparen>\)) |
      (?P<bool>true|false)\b
    )""",
    re.X,
)


class _Unsupported(ValueError):
    pass


def _cel_tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _CEL.match(text, pos)
        if not m or m.end() == pos:
            raise _Unsupported(text[pos:])
        pos = m.end()
        kind = m.lastgroup or ""  # the outer group: "stamp", not its "value"
        if kind == "stamp":
            value = _parse_time(m["value"])
            if value is None:
                raise _Unsupported(m["value"])
            out.append(("operand", value))
        elif kind == "time":
            out.append(("operand", None))  # request.time, filled in at evaluation
        else:
            out.append((kind, m.group(kind)))
    return out


class _Cel:
    """or := and {"||" and}; and := unary {"&&" unary}; unary := "!" unary | primary;
    primary := "(" or ")" | true | false | operand op operand."""

    def __init__(self, tokens: list[tuple[str, Any]], at: datetime) -> None:
        self.toks, self.i, self.at = tokens, 0, at

    def take(self, kind: str) -> Any:
        if self.i >= len(self.toks) or self.toks[self.i][0] != kind:
            raise _Unsupported(kind)
        self.i += 1
        return self.toks[self.i - 1][1]

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def whole(self) -> bool:
        value = self.disjunction()
        if self.peek() is not None:
            raise _Unsupported("trailing input")
        return value

    def disjunction(self) -> bool:
        values = [self.conjunction()]
        while self.peek() == "or":
            self.take("or")
            values.append(self.conjunction())
        return any(values)

    def conjunction(self) -> bool:
        values = [self.unary()]
        while self.peek() == "and":
            self.take("and")
            values.append(self.unary())
        return all(values)

    def unary(self) -> bool:
        if self.peek() == "not":
            self.take("not")
            return not self.unary()
        if self.peek() == "lparen":
            self.take("lparen")
            value = self.disjunction()
            self.take("rparen")
            return value
        if self.peek() == "bool":
            return bool(self.take("bool") == "true")
        left = self.take("operand") or self.at
        op = self.take("op")
        right = self.take("operand") or self.at
        return bool(
            {
                "<": left < right,
                "<=": left <= right,
                ">": left > right,
                ">=": left >= right,
                "==": left == right,
                "!=": left != right,
            }[op]
        )


def condition_holds(expression: str, at: datetime) -> bool:
    """A condition's CEL expression at ``request.time = at``; False when outside the
    subset (see the module docstring)."""
    try:
        return _Cel(_cel_tokens(expression), at).whole()
    except _Unsupported:
        return False
