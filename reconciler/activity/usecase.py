"""The activity use case: grants from the audit trail, one log read per scope, the join.

```python
report = collect_activity(repo, entries, now=now)  # entries: reconciler.trail.collect()
```
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler import git
from reconciler.activity.sources import LogReadError, LogSource
from reconciler.core import providers
from reconciler.core.activity import (
    DEFAULT_ALLOWANCE,
    DEFAULT_SESSION,
    ActivityGrant,
    ActivityReport,
    LogEvent,
    ScopeError,
    ScopeQuery,
    join,
    plan_queries,
)
from reconciler.core.audit import AuditEntry
from reconciler.core.models import Config
from reconciler.core.timeutil import parse_duration
from reconciler.errors import ConfigError

HELD = frozenset({"active", "expired", "revoked", "suspended", "unverified"})
DEFAULT_CONCURRENCY = 8
SourceFactory = Callable[[Config, Mapping[str, Any]], LogSource]


@dataclass
class Reading:
    """What one run read: the report, and the API calls each source made."""

    report: ActivityReport
    calls: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for people: what was assumed


def tip_config(repo: Path, ref: str = "HEAD") -> Config:
    """The policies at ``ref`` (identities, exact scopes, provider settings)."""
    from reconciler.repo import load_config

    tip = git.resolve(repo, ref)
    if tip is None:
        return Config()
    with git.Tree(repo, tip) as tree:
        config, _ = load_config(tree)
    return config


def setting(config: Config, provider: str, key: str, default: Any = None) -> Any:
    return (config.providers.get(provider) or {}).get(key, default)


def allowance_of(config: Config, provider: str, override: timedelta | None) -> timedelta:
    if override is not None:
        return override
    raw = setting(config, provider, "activity_allowance")
    if raw is None:
        return DEFAULT_ALLOWANCE
    try:
        return parse_duration(str(raw))
    except ValueError as exc:
        raise ConfigError(f"providers.{provider}.activity_allowance: {exc}") from None


def grants_of(
    entries: Iterable[AuditEntry],
    config: Config,
    *,
    now: datetime,
    allowance: timedelta | None = None,
    sessions: Mapping[tuple[str, str], timedelta] | None = None,
) -> list[ActivityGrant]:
    """The grants the selected audit entries stand for: versions that held a window
    that has begun (an early deletion ends the window where the file went).

    ``sessions``: (provider, role) -> the longest session the role allows (AWS: the
    permission set's SessionDuration); 12 hours where unknown."""
    out = []
    for e in entries:
        if e.state not in HELD or not (e.provider and e.scope and e.role and e.principal):
            continue
        if e.begin is None or e.end is None or e.begin > now:
            continue
        end = e.end
        if e.removal is not None and e.begin < e.removal.at < end:
            end = e.removal.at
        slack = allowance_of(config, e.provider, allowance)
        session = (sessions or {}).get((e.provider, e.role)) or DEFAULT_SESSION
        out.append(
            ActivityGrant(
                request=e.file,
                requester=e.requester or "",
                principal=e.principal,
                provider=e.provider,
                scope=e.scope,
                role=e.role,
                begin=e.begin,
                end=end,
                horizon=max(_horizon(e, end, now, slack, session), slack),
                version=e.commit,
                allowance=slack,
            )
        )
    return out


def _horizon(
    e: AuditEntry, end: datetime, now: datetime, slack: timedelta, session: timedelta
) -> timedelta:
    """How long after ``end`` the principal could still make calls with this grant.

    Where the cloud ends access itself at the window's end (GCP's conditional binding),
    until then plus the allowance: after an early deletion the binding lives on until the
    reconciler removes it (the ledger's revoke), at most until the window's end. Elsewhere
    (AWS) a session opened before the revocation lasts its session length, so the range
    runs the session length past the revocation the ledger records, past ``end`` when it
    records none, and until now when it shows the grant but no revoke yet."""
    assert e.end is not None and e.provider is not None
    revoked = e.revoked_at
    if providers.known(e.provider) and providers.spec(e.provider).future_start:
        until = min(e.end, revoked) if revoked is not None else e.end
        return max(until, end) - end + slack
    if revoked is None and e.granted_at is not None:
        revoked = now
    return max(end, revoked or end) - end + session


def known_principals(config: Config) -> dict[str, frozenset[str]]:
    """provider -> every principal the identities name for it."""
    out: dict[str, set[str]] = {}
    for mapping in config.identities.values():
        for provider, principal in mapping.items():
            out.setdefault(provider, set()).add(principal)
    return {p: frozenset(v) for p, v in out.items()}


def policy_scopes(config: Config, scope_filter: str | None = None) -> list[tuple[str, str]]:
    """Every exact (non-glob) scope a policy names, as (provider, scope)."""
    out = []
    for policy in config.policies:
        if not providers.known(policy.provider):
            continue
        spec = providers.spec(policy.provider)
        for scope in policy.scopes:
            if not spec.scope_matches(scope):
                continue
            if scope_filter and not (
                scope == scope_filter or fnmatch.fnmatchcase(scope, scope_filter)
            ):
                continue
            out.append((policy.provider, scope))
    return list(dict.fromkeys(out))


def _sources() -> dict[str, SourceFactory]:
    from reconciler.activity.engines import SOURCES

    return SOURCES


def read_sessions(
    entries: Iterable[AuditEntry], config: Config, options: Mapping[str, Any], reading: Reading
) -> dict[tuple[str, str], timedelta]:
    """(provider, role) -> the longest session the role allows, for the roles of the
    selected grants, from each provider that knows (one read per provider and run); what
    cannot be read is a note, and 12 hours is assumed."""
    from reconciler.activity.engines import SESSIONS

    wanted: dict[str, set[str]] = {}
    for e in entries:
        if e.state in HELD and e.provider in SESSIONS and e.role:
            wanted.setdefault(e.provider, set()).add(e.role)
    out: dict[tuple[str, str], timedelta] = {}
    for provider, roles in sorted(wanted.items()):
        try:
            lengths, calls = SESSIONS[provider](config, options.get(provider) or {})
        except Exception as exc:  # best effort: the longest possible session stands in
            reading.notes.append(
                f"{provider}: could not read how long sessions last ({exc}); 12 hours assumed"
            )
            continue
        reading.calls[f"{provider}.sessions"] = calls
        unknown = sorted(r for r in roles if lengths.get(r) is None)
        out |= {(provider, r): d for r in roles if (d := lengths.get(r)) is not None}
        if unknown:
            reading.notes.append(
                f"{provider}: no session length for {', '.join(unknown)} (not in the "
                "instance, or none set); 12 hours assumed"
            )
    return out


def read_all(
    queries: Sequence[ScopeQuery],
    sources: Mapping[str, LogSource],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> tuple[list[LogEvent], list[ScopeError]]:
    """Every query, ``concurrency`` at a time; a scope that cannot be read is an error,
    never a reason to stop reading the others."""

    def one(query: ScopeQuery) -> tuple[list[LogEvent], ScopeError | None]:
        source = sources.get(query.provider)
        if source is None:
            return [], ScopeError(query.provider, query.scope, "no activity source for it")
        try:
            return source.read(query), None
        except LogReadError as exc:
            return [], ScopeError(query.provider, query.scope, str(exc))

    events: list[LogEvent] = []
    errors: list[ScopeError] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for found, error in pool.map(one, queries):
            events += found
            if error is not None:
                errors.append(error)
    return events, errors


def collect_activity(
    entries: Sequence[AuditEntry],
    config: Config,
    *,
    now: datetime,
    scope_filter: str | None = None,
    since: datetime | None = None,
    allowance: timedelta | None = None,
    options: Mapping[str, Any] | None = None,
    sources: Mapping[str, LogSource] | None = None,
    ended_after: datetime | None = None,
) -> Reading:
    """The whole run: grants, one query per scope, the reads, the join.

    ``options``: per-provider options for the sources (``{"gcp": {...}}``); ``sources``
    replaces the configured ones (tests, the benchmark). ``ended_after``: a scheduled
    run's report of its own span, ``(ended_after, now]``: only the grants whose window
    ended in it, and only the unauthorized attempts made in it (every scope is read over
    it), so consecutive runs report each once."""
    options = options or {}
    reading = Reading(ActivityReport())
    sessions = read_sessions(entries, config, options, reading)
    grants = grants_of(entries, config, now=now, allowance=allowance, sessions=sessions)
    watch = (ended_after, now) if ended_after is not None else None
    if watch is not None:
        grants = [g for g in grants if watch[0] < g.end <= now]
    known = known_principals(config)
    extra = policy_scopes(config, scope_filter)
    fallback = watch or (since or now - timedelta(days=1), now)
    queries = plan_queries(grants, extra, known, at=now, fallback=fallback, watch=watch)
    wanted = {q.provider for q in queries}
    built: dict[str, LogSource] = dict(sources or {})
    for provider in sorted(wanted - set(built)):
        factory = _sources().get(provider)
        if factory is not None:
            built[provider] = factory(config, options.get(provider) or {})
    concurrency = int(
        (options.get("concurrency") if options else None)
        or max(
            (int(setting(config, p, "activity_concurrency") or 0) for p in wanted),
            default=0,
        )
        or DEFAULT_CONCURRENCY
    )
    events, errors = read_all(queries, built, concurrency=concurrency)
    report = join(grants, events, known, at=now, errors=errors)
    if watch is not None:
        inside = tuple(u for u in report.unauthorized if watch[0] < u.time <= watch[1])
        report = replace(report, unauthorized=inside)
    reading.report = report
    reading.calls |= {p: getattr(s, "calls", 0) for p, s in built.items()}
    return reading
