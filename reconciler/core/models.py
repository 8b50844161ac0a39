"""The domain values of accessctl: requests, policies, windows, decisions, grants, plans.

All frozen; sets of them are state, and the diff between states is set arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from reconciler.core.timeutil import format_rfc3339

ProviderName = Literal["gcp", "aws"]
PROVIDERS: tuple[ProviderName, ...] = ("gcp", "aws")
GCP_BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
MANAGED_TITLE_PREFIX = "accessctl:"


@dataclass(frozen=True)
class AccessRequest:
    """One file under ``requests/<login>/<slug>.yaml``.

    ```yaml
    requester: alice
    provider: gcp
    scope: projects/payments-prod
    role: roles/cloudsql.viewer
    reason: Investigate INC-4821, slow checkout queries
    ticket: INC-4821
    duration: 2h
    ```
    """

    path: str  # repo-relative POSIX path: requests/alice/inc-4821.yaml
    requester: str
    provider: ProviderName
    scope: str
    role: str
    reason: str
    ticket: str | None = None
    duration: timedelta | None = None
    start: datetime | None = None
    expires: datetime | None = None
    # key -> 1-based line of its value, so findings point at the offending line
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def line_of(self, key: str) -> int:
        return self.lines.get(key, 1)


@dataclass(frozen=True)
class Policy:
    """One entry of ``policies:`` in a policy file.

    ```yaml
    - name: payments-db-read
      provider: gcp
      scopes: [projects/payments-prod]
      roles: [roles/cloudsql.viewer]
      requesters: [team:payments-oncall, bob]
      approvers: [team:payments-leads]
      approvals: 1
      max_duration: 4h
      ticket: '^(INC|CHG)-[0-9]+$'
    ```
    """

    name: str
    provider: ProviderName
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    requesters: tuple[str, ...]  # logins or team:NAME, as written
    approvers: tuple[str, ...]
    approvals: int
    max_duration: timedelta
    description: str = ""
    ticket: re.Pattern[str] | None = None
    file: str = ""
    line: int = 1


@dataclass(frozen=True)
class Config:
    """Everything under ``policies/``, merged across files."""

    policies: tuple[Policy, ...] = ()
    teams: Mapping[str, frozenset[str]] = field(default_factory=dict)  # name -> lowercased logins
    identities: Mapping[str, Mapping[str, str]] = field(
        default_factory=dict
    )  # lowercased login -> {provider: principal}
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def expand(self, principals: tuple[str, ...]) -> frozenset[str]:
        """Logins (lowercased) named by ``[alice, team:leads]``; unknown teams expand to nothing."""
        out: set[str] = set()
        for p in principals:
            if p.startswith("team:"):
                out |= self.teams.get(p[len("team:") :], frozenset())
            else:
                out.add(p.lower())
        return frozenset(out)

    def principal(self, login: str, provider: str) -> str | None:
        """The cloud principal of a GitHub login, from ``identities``."""
        return self.identities.get(login.lower(), {}).get(provider)


@dataclass(frozen=True)
class Window:
    """When access holds: ``begin <= t < end``."""

    begin: datetime
    end: datetime

    def contains(self, now: datetime) -> bool:
        return self.begin <= now < self.end

    @property
    def length(self) -> timedelta:
        return self.end - self.begin


class Reason(StrEnum):
    """Why a request was allowed or refused; each refusal names the policy it concerns."""

    ALLOWED = "allowed"
    NO_POLICY = "no-policy"  # no policy covers provider + scope + role
    NOT_REQUESTER = "not-requester"  # covering policy does not list the requester
    TOO_LONG = "too-long"  # window longer than max_duration
    EMPTY_WINDOW = "empty-window"  # end <= begin (e.g. expires before approval)
    TICKET_MISSING = "ticket-missing"
    TICKET_MISMATCH = "ticket-mismatch"
    NO_IDENTITY = "no-identity"  # requester has no principal for the provider
    BASIC_ROLE = "basic-role"  # GCP basic roles cannot carry conditions
    APPROVALS_MISSING = "approvals-missing"
    WRONG_DIRECTORY = "wrong-directory"  # requests/<dir>/ differs from requester


@dataclass(frozen=True)
class Refusal:
    reason: Reason
    message: str
    policy: str | None = None
    key: str | None = None  # the request key the refusal points at (for the line)


@dataclass(frozen=True)
class Approvals:
    """Who approved the request's pull request (already: latest review, APPROVED, head SHA).

    ``reviewers`` are GitHub logins (any case); ``pr_author`` is excluded from counting,
    as is the requester. Eligibility against the policy is evaluate()'s job.
    """

    reviewers: frozenset[str]
    pr_author: str | None = None
    pr_number: int | None = None


@dataclass(frozen=True)
class Decision:
    """The verdict on one request: allowed by ``policy``, or refused for ``refusals``."""

    request: AccessRequest
    allowed: bool
    policy: str | None = None
    window: Window | None = None
    principal: str | None = None
    refusals: tuple[Refusal, ...] = ()
    approvals_needed: int = 0  # of the allowing (or best candidate) policy
    approvers_counted: tuple[str, ...] = ()  # eligible approvals that counted, lowercased
    approvers_eligible: tuple[str, ...] = ()  # who could still approve, lowercased

    @property
    def reason(self) -> Reason:
        return Reason.ALLOWED if self.allowed else self.refusals[0].reason


_GCP_CASELESS = frozenset({"user", "group", "serviceAccount", "domain", "deleted"})


def gcp_member_id(member: str) -> str:
    """A GCP member as IAM compares it: e-mail and domain values ignore case (IAM may hand
    back ``user:jane.doe@example.com`` for ``user:Jane.Doe@example.com``), so a mixed-case
    identity must not plan a revoke and a grant on every run; types and ``principal://``
    identifiers keep their case."""
    kind, sep, value = member.partition(":")
    if sep and kind in _GCP_CASELESS and not value.startswith("//"):
        return f"{kind}:{value.lower()}"
    return member


@dataclass(frozen=True)
class Grant:
    """A managed grant as desired by a request or as observed in a cloud.

    GCP: one binding (scope, role, member, condition ``accessctl:<request>``).
    AWS: one account assignment (account, permission set, user); ``request``/``begin``/
    ``end`` are unknown (None) when observed, since AWS holds no such metadata.
    """

    provider: ProviderName
    scope: str
    role: str
    principal: str
    request: str | None = None
    begin: datetime | None = None
    end: datetime | None = None
    pr: int | None = None  # pull request number, for the description/summary

    def key(self) -> tuple[object, ...]:
        """What makes two grants the same thing in the cloud."""
        if self.provider == "aws":
            return ("aws", self.scope, self.role, self.principal.lower())
        return ("gcp", self.scope, self.role, gcp_member_id(self.principal), self.request, self.end)

    def to_json(self) -> dict[str, object]:
        return {
            "request": self.request,
            "principal": self.principal,
            "provider": self.provider,
            "scope": self.scope,
            "role": self.role,
            "begin": format_rfc3339(self.begin) if self.begin else None,
            "end": format_rfc3339(self.end) if self.end else None,
        }


class ChangeKind(StrEnum):
    GRANT = "grant"
    REVOKE = "revoke"
    KEEP = "keep"


@dataclass(frozen=True)
class Change:
    """One planned change, with the reason a person reads in the plan."""

    kind: ChangeKind
    grant: Grant
    reason: str


@dataclass(frozen=True)
class Plan:
    grant: tuple[Change, ...] = ()
    revoke: tuple[Change, ...] = ()
    keep: tuple[Change, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.grant and not self.revoke

    def scopes_changed(self) -> frozenset[tuple[str, str]]:
        return frozenset((c.grant.provider, c.grant.scope) for c in (*self.grant, *self.revoke))


@dataclass(frozen=True)
class ChangeResult:
    """What happened to one planned change when applied."""

    change: Change
    ok: bool
    message: str = ""
    cloud_request_id: str | None = None
    verified: bool = False
