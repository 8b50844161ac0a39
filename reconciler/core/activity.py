"""What each grant was used for: cloud audit-log events joined to approved windows.

Pure: the log sources (``reconciler.activity``) read the clouds and hand over ``LogEvent``
values already in the identities' own spelling; this module plans the reads (one query per
scope covering every grant there, never several scopes in one), attributes each event to
the grant whose window covers it, flags use after the end and lists denied attempts by
known principals who held no grant there.

```python
queries = plan_queries(grants, extra_scopes, known, at=now)
report = join(grants, events, known, at=now, errors=errors)
```
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.core import providers
from reconciler.core.timeutil import format_rfc3339

DEFAULT_ALLOWANCE = timedelta(minutes=5)  # revocation propagation, clock skew
DEFAULT_SESSION = timedelta(hours=12)  # longest session a revoked grant may leave behind


@dataclass(frozen=True)
class ActivityGrant:
    """One approved window of one principal, and how long after its end to keep reading.

    ``horizon``: how long a session may outlive the grant in the cloud (AWS: the
    permission set's session duration; GCP: the allowance, IAM ends it at once);
    ``allowance``: how long after ``end`` a call still counts as inside the window
    (revocation propagation).
    """

    request: str
    requester: str
    principal: str
    provider: str
    scope: str
    role: str
    begin: datetime
    end: datetime
    horizon: timedelta = DEFAULT_SESSION
    version: str = ""  # the commit of the request version (audit --activity joins on it)
    allowance: timedelta = DEFAULT_ALLOWANCE  # propagation after `end` still in the window

    def stop(self, at: datetime) -> datetime:
        """The end of the range read for this grant."""
        return min(at, self.end + self.horizon)

    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.scope, _pid(self.provider, self.principal))


@dataclass(frozen=True)
class LogEvent:
    """One call the cloud logged. ``role``: the permission set the session ran under,
    when the log says (None: the log does not name one)."""

    time: datetime
    principal: str
    provider: str
    scope: str
    service: str
    action: str
    resource: str
    denied: bool
    role: str | None = None

    def key(self) -> tuple[str, str, str]:
        return (self.provider, self.scope, _pid(self.provider, self.principal))

    def to_json(self, outside_window: bool) -> dict[str, object]:
        return {
            "time": format_rfc3339(self.time),
            "service": self.service,
            "action": self.action,
            "resource": self.resource,
            "denied": self.denied,
            "outside_window": outside_window,
        }


@dataclass(frozen=True)
class ScopeQuery:
    """One read of one scope's log: these principals, this time range (inclusive)."""

    provider: str
    scope: str
    principals: tuple[str, ...]
    start: datetime
    stop: datetime
    roles: tuple[str, ...] = ()  # the grants' roles there (AWS: permission sets)


@dataclass(frozen=True)
class ScopeError:
    provider: str
    scope: str
    message: str

    def to_json(self) -> dict[str, object]:
        return {"provider": self.provider, "scope": self.scope, "message": self.message}


@dataclass(frozen=True)
class Seen:
    """An event as attributed: inside the window or not."""

    event: LogEvent
    outside_window: bool
    after_end: bool


@dataclass(frozen=True)
class GrantActivity:
    grant: ActivityGrant
    events: tuple[Seen, ...] = ()
    unread: bool = False  # its scope's log could not be read

    @property
    def calls(self) -> int:
        return sum(1 for s in self.events if not s.outside_window)

    @property
    def denied(self) -> int:
        return sum(1 for s in self.events if not s.outside_window and s.event.denied)

    @property
    def after_end(self) -> int:
        return sum(1 for s in self.events if s.after_end)

    @property
    def first(self) -> datetime | None:
        return self.events[0].event.time if self.events else None

    @property
    def last(self) -> datetime | None:
        return self.events[-1].event.time if self.events else None

    def summary(self) -> dict[str, object]:
        """What ``audit --activity`` shows per entry."""
        return {
            "calls": self.calls,
            "denied": self.denied,
            "after_end": self.after_end,
            "first": format_rfc3339(self.first) if self.first else None,
            "last": format_rfc3339(self.last) if self.last else None,
        }

    def to_json(self) -> dict[str, object]:
        g = self.grant
        return {
            "request": g.request,
            "principal": g.principal,
            "provider": g.provider,
            "scope": g.scope,
            "role": g.role,
            "begin": format_rfc3339(g.begin),
            "end": format_rfc3339(g.end),
            "calls": self.calls,
            "denied": self.denied,
            "after_end": self.after_end,
            "events": [s.event.to_json(s.outside_window) for s in self.events],
        }


@dataclass(frozen=True)
class ActivityReport:
    grants: tuple[GrantActivity, ...] = ()
    unauthorized: tuple[LogEvent, ...] = ()
    errors: tuple[ScopeError, ...] = ()

    @property
    def anomalies(self) -> list[tuple[GrantActivity, str, str]]:
        """(grant, code, sentence) for each used-after-end and denied-attempts."""
        out: list[tuple[GrantActivity, str, str]] = []
        for a in self.grants:
            out += [(a, code, text) for code, text in anomalies_of(a)]
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "grants": [a.to_json() for a in self.grants],
            "unauthorized": [
                e.to_json(True)
                | {"principal": e.principal, "provider": e.provider, "scope": e.scope}
                for e in self.unauthorized
            ],
            "errors": [e.to_json() for e in self.errors],
        }


def anomalies_of(activity: GrantActivity) -> list[tuple[str, str]]:
    """The audit codes this activity raises: ``used-after-end``, ``denied-attempts``."""
    out = []
    g = activity.grant
    if activity.after_end:
        out.append(
            (
                "used-after-end",
                f"{g.principal} made {activity.after_end} call(s) in {g.scope} after the "
                f"grant ended at {format_rfc3339(g.end)}",
            )
        )
    if activity.denied:
        out.append(
            (
                "denied-attempts",
                f"{g.principal} was denied {activity.denied} call(s) in {g.scope} during the window",
            )
        )
    return out


def _pid(provider: str, principal: str) -> str:
    try:
        return providers.spec(provider).principal_id(principal)
    except KeyError:
        return principal


# -- planning ------------------------------------------------------------------------------


def plan_queries(
    grants: Sequence[ActivityGrant],
    extra_scopes: Iterable[tuple[str, str]],
    known: Mapping[str, frozenset[str]],
    *,
    at: datetime,
    fallback: tuple[datetime, datetime] | None = None,
    watch: tuple[datetime, datetime] | None = None,
) -> list[ScopeQuery]:
    """One query per (provider, scope): every grant's principal there plus every known
    principal of that provider, from the earliest begin to the latest stop. Scopes only a
    policy names (``extra_scopes``) are read over the whole selection's range (or
    ``fallback`` when no grant is selected). ``watch``: a span every scope's read also
    covers (a scheduled run's own span, so no unauthorized attempt falls between runs)."""
    by_scope: dict[tuple[str, str], list[ActivityGrant]] = {}
    for g in grants:
        by_scope.setdefault((g.provider, g.scope), []).append(g)
    overall = _span(grants, at) or fallback
    queries = []
    scopes = list(by_scope) + [s for s in dict.fromkeys(extra_scopes) if s not in by_scope]
    for provider, scope in scopes:
        held = by_scope.get((provider, scope), [])
        span = _span(held, at) or overall
        if watch is not None:
            span = (min(span[0], watch[0]), max(span[1], watch[1])) if span else watch
        if span is None:
            continue
        principals = {g.principal for g in held} | set(known.get(provider, frozenset()))
        roles = sorted({g.role for g in held})
        queries.append(
            ScopeQuery(provider, scope, tuple(sorted(principals)), span[0], span[1], tuple(roles))
        )
    return queries


def _span(grants: Sequence[ActivityGrant], at: datetime) -> tuple[datetime, datetime] | None:
    if not grants:
        return None
    start = min(g.begin for g in grants)
    stop = max(g.stop(at) for g in grants)
    return (start, max(start, stop))


# -- the join ------------------------------------------------------------------------------


def join(
    grants: Sequence[ActivityGrant],
    events: Iterable[LogEvent],
    known: Mapping[str, frozenset[str]],
    *,
    at: datetime,
    errors: Sequence[ScopeError] = (),
) -> ActivityReport:
    """Attribute each event to the grants of its principal and scope (and role, when the
    event names one) whose window ``[begin, end + allowance)`` covers it; an event no
    window covers goes to the grant whose read range holds it, as after its end; a denied
    event by a known principal that no grant in that scope covers is ``unauthorized``."""
    # (grant, begin, end of the window with its allowance, end of the range read), per
    # key: the bounds are computed once per grant, not once per event.
    index: dict[tuple[str, str, str], list[tuple[ActivityGrant, datetime, datetime, datetime]]]
    index = {}
    for g in grants:
        index.setdefault(g.key(), []).append((g, g.begin, g.end + g.allowance, g.stop(at)))
    seen: dict[int, list[Seen]] = {id(g): [] for g in grants}
    known_ids = {(p, _pid(p, who)) for p, names in known.items() for who in names}
    ids: dict[tuple[str, str], str] = {}  # a run has few principals and many events

    def pid_of(event: LogEvent) -> str:
        spelled = (event.provider, event.principal)
        pid = ids.get(spelled)
        if pid is None:
            pid = ids[spelled] = _pid(*spelled)
        return pid

    unauthorized: list[LogEvent] = []
    for event in sorted(events, key=lambda e: e.time):
        pid = pid_of(event)
        mine = index.get((event.provider, event.scope, pid), ())
        when, role = event.time, event.role
        covering = [g for g, begin, until, _ in mine if begin <= when < until]
        if covering:
            inside = Seen(event, False, False)
            for g in covering:
                if role is None or role == g.role:
                    seen[id(g)].append(inside)
            continue
        later = [
            g for g, _, until, stop in mine if until <= when <= stop and role in (None, g.role)
        ]
        if later:
            g = max(later, key=lambda x: x.end)
            seen[id(g)].append(Seen(event, True, True))
        elif event.denied and (event.provider, pid) in known_ids:
            unauthorized.append(event)
    unread = {(e.provider, e.scope) for e in errors}
    return ActivityReport(
        grants=tuple(
            GrantActivity(g, tuple(seen[id(g)]), (g.provider, g.scope) in unread) for g in grants
        ),
        unauthorized=tuple(unauthorized),
        errors=tuple(errors),
    )
