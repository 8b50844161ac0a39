"""The activity use case: grants from the audit trail, one log read per scope, the join.

```python
report = collect_activity(repo, entries, now=now)  # entries: reconciler.trail.collect()
```
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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
    that has begun (an early deletion ends the window where the file went)."""
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
        horizon = (sessions or {}).get((e.provider, e.role))
        if horizon is None:
            horizon = slack if e.provider == "gcp" else DEFAULT_SESSION
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
                horizon=max(horizon, slack),
                version=e.commit,
                allowance=slack,
            )
        )
    return out


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
) -> Reading:
    """The whole run: grants, one query per scope, the reads, the join.

    ``options``: per-provider options for the sources (``{"gcp": {...}}``); ``sources``
    replaces the configured ones (tests, the benchmark)."""
    options = options or {}
    grants = grants_of(entries, config, now=now, allowance=allowance)
    known = known_principals(config)
    extra = policy_scopes(config, scope_filter)
    fallback = (since or now - timedelta(days=1), now)
    queries = plan_queries(grants, extra, known, at=now, fallback=fallback)
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
    return Reading(report, {p: getattr(s, "calls", 0) for p, s in built.items()})
