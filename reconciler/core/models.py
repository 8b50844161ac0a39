"""The domain values of accessctl: requests, policies, windows, decisions, grants, plans.

All frozen; sets of them are state, and the diff between states is set arithmetic.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from reconciler.core import providers
from reconciler.core.timeutil import format_rfc3339

# A registered provider's name (reconciler.core.providers): "gcp", "aws", or a plug-in's.
ProviderName = str
# An ``approvers`` entry naming a GitHub team to ask for reviews (``github_team:org/slug``).
GITHUB_TEAM = "github_team:"


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
    # Emergency access: passes without approvals under a policy with ``break_glass``, for at
    # most its break-glass max_duration, with a ticket; reviewed after the merge.
    break_glass: bool = False
    # key -> 1-based line of its value, so findings point at the offending line
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def line_of(self, key: str) -> int:
        return self.lines.get(key, 1)


class TicketMatcher(Protocol):
    """A policy's compiled ``ticket`` pattern (reconciler.core.policy.TicketPattern: RE2)."""

    @property
    def pattern(self) -> str: ...

    def fullmatch(self, ticket: str, /) -> object: ...


@dataclass(frozen=True)
class BreakGlass:
    """A policy's emergency access: a request with ``break_glass: true`` passes without
    approvals for at most ``max_duration``; an eligible approver must approve its merged
    pull request within ``review_within`` of the merge.

    ```yaml
    break_glass: {max_duration: 1h, review_within: 24h}
    ```
    """

    max_duration: timedelta
    review_within: timedelta


@dataclass(frozen=True)
class Policy:
    """One entry of ``policies:`` in a policy file.

    ```yaml
    - name: payments-db-read
      provider: gcp
      scopes: [projects/payments-prod]
      roles: [roles/cloudsql.viewer]
      requesters: [team:payments-oncall, bob]
      approvers: [team:payments-leads, github_team:acme/payments-leads]
      approvals: 1
      max_duration: 4h
      ticket: '^(INC|CHG)-[0-9]+$'
      require_signed_commits: true   # every commit of the PR that touches the request file
      break_glass: {max_duration: 1h, review_within: 24h}   # emergency access, reviewed after
    ```

    A ``github_team:ORG/SLUG`` entry of ``approvers`` is kept apart, in ``review_teams``:
    it says which GitHub team pr-check asks for a review, never who may approve.
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
    ticket: TicketMatcher | None = None
    # The request's commits must carry a signature GitHub verified, by the requester.
    require_signed_commits: bool = False
    # Emergency access without approvals (None: break-glass requests are refused).
    break_glass: BreakGlass | None = None
    review_teams: tuple[str, ...] = ()  # "org/slug": whom to ask for a review, not eligible
    file: str = ""
    line: int = 1


# A scheduled reconciler runs every 10 minutes; a grant or revoke recorded within two runs
# of when it was due is on time.
DEFAULT_LATE_TOLERANCE = timedelta(minutes=20)
DEFAULT_RECONCILER_IDENTITY = "github-actions[bot]"


@dataclass(frozen=True)
class Settings:
    """The deployment's own settings (``settings:`` in a policy file), each optional.

    ```yaml
    settings:
      late_tolerance: 20m                        # a grant/revoke recorded later is flagged
      reconciler_identity: github-actions[bot]   # who writes the ledger branch
    ```
    """

    late_tolerance: timedelta = DEFAULT_LATE_TOLERANCE
    reconciler_identity: str = DEFAULT_RECONCILER_IDENTITY


@dataclass(frozen=True)
class Suspension:
    """An emergency stop: ``who`` (a login or ``team:NAME``) loses every managed grant at
    the next apply and may not ask for more until the entry is removed.

    ```yaml
    suspended:
      - who: mallory
        reason: laptop stolen, SEC-123
    ```
    """

    who: str
    reason: str
    file: str = ""
    line: int = 1


NOTIFICATION_EVENTS = (
    "request-waiting",
    "granted",
    "revoked",
    "failed",
    "break-glass",
    "late-revoke",
    "reconciler-stale",
    # accessctl activity --notify: the anomalies of the clouds' audit logs
    "used-after-end",
    "denied-attempts",
    "unauthorized-attempt",
)


@dataclass(frozen=True)
class Notification:
    """Where accessctl tells people what happened: one sink. URLs and secrets are never in
    the repository, only the names of the environment variables that hold them.

    ```yaml
    notifications:
      - type: slack
        url_env: ACCESSCTL_SLACK_URL
        events: [granted, failed, late-revoke]   # omitted: every event
      - type: webhook
        url_env: ACCESSCTL_WEBHOOK_URL
        secret_env: ACCESSCTL_WEBHOOK_SECRET
      - type: github-issue
    ```
    """

    type: str  # slack | webhook | github-issue
    url_env: str | None = None
    secret_env: str | None = None
    events: frozenset[str] | None = None  # None: every event
    file: str = ""
    line: int = 1

    def wants(self, event: str) -> bool:
        return self.events is None or event in self.events


@dataclass(frozen=True)
class Config:
    """Everything under ``policies/``, merged across files."""

    policies: tuple[Policy, ...] = ()
    teams: Mapping[str, frozenset[str]] = field(default_factory=dict)  # name -> lowercased logins
    identities: Mapping[str, Mapping[str, str]] = field(
        default_factory=dict
    )  # lowercased login -> {provider: principal}
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)
    suspended: tuple[Suspension, ...] = ()
    notifications: tuple[Notification, ...] = ()

    def suspension(self, login: str) -> Suspension | None:
        """The emergency stop that applies to ``login`` (directly or through a team)."""
        for s in self.suspended:
            if login.lower() in self.expand((s.who,)):
                return s
        return None

    def expand(self, principals: tuple[str, ...]) -> frozenset[str]:
        """Logins (lowercased) named by ``[alice, team:leads]``; unknown teams expand to nothing."""
        out: set[str] = set()
        for p in principals:
            if p.startswith(GITHUB_TEAM):  # whom to ask for a review: never eligible
                continue
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
    NO_BREAK_GLASS = "no-break-glass"  # a break-glass request under a policy without break_glass
    BREAK_GLASS_START = "break-glass-start"  # a break-glass request that sets its own start


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


@dataclass(frozen=True)
class Grant:
    """A managed grant as desired by a request or as observed in a cloud.

    GCP: one binding (scope, role, member, condition naming the request and its window).
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
    # The cloud's own id of the principal when the provider resolved it (AWS: the identity
    # store user id), so grants compare by who they are, never by a case-folded name.
    principal_id: str | None = None
    # Why a desired grant is kept without a verified approval (held during an outage).
    held: bool = field(default=False, compare=False)

    def key(self, now: datetime) -> Hashable:
        """What makes two grants the same thing in the cloud at ``now``: the provider's
        identity, which covers every field that changes what the cloud allows."""
        return providers.identity(self, now)

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
    # AWS: sessions issued before this time are denied (the revocation's deny statement,
    # provisioned); None where the provider has nothing like it.
    sessions_ended_at: datetime | None = None
