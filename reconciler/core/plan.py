"""The planner: desired grants against observed managed grants -> grant / revoke / keep.

Pure set arithmetic over frozen ``Grant`` values keyed by ``Grant.key()``: no I/O, no clock
(``now`` is passed in). Anything a provider did not report as managed is invisible here, so
the plan can never touch it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from reconciler.core import providers
from reconciler.core.models import Change, ChangeKind, Grant, Plan
from reconciler.core.timeutil import format_rfc3339

GrantKey = Hashable


def plan(
    desired: Iterable[Grant],
    actual: Iterable[Grant],
    now: datetime,
    *,
    notes: Mapping[str, str] | None = None,
    former: Iterable[Grant] = (),
) -> Plan:
    """Compare by key: desired and absent -> grant; present and not desired -> revoke.

    ``notes`` maps a request path to a sentence about it ("allowed by policy x", "refused:
    ...", "file is invalid"), used as the reason of the changes that concern that request.
    Desired grants already over (``end <= now``), or AWS grants not yet begun (AWS cannot
    schedule a start), are not desired: the planner never grants what would not hold now.
    ``former`` are grants that requests still on the branch would hold but no longer do
    (expired, refused): an AWS assignment carries no request of its own, so a revoke is
    traced to the request it matches.
    """
    notes = notes or {}
    traced = _by_key((g for g in former if not providers.spec(g.provider).future_start), now)
    wanted = _by_key((g for g in desired if _wanted_now(g, now)), now)
    present = {g.key(now): g for g in actual}
    ordered = sorted(wanted.items(), key=_sort_key)
    grants = tuple(
        Change(ChangeKind.GRANT, _representative(gs), _grant_reason(gs, notes))
        for key, gs in ordered
        if key not in present
    )
    keeps = tuple(
        Change(ChangeKind.KEEP, _representative(gs), _keep_reason(gs, present[key], notes))
        for key, gs in ordered
        if key in present
    )
    desired_requests = {g.request for gs in wanted.values() for g in gs}
    revokes = tuple(
        Change(ChangeKind.REVOKE, g, _revoke_reason(g, now, notes, desired_requests))
        for g in (
            _traced(g, traced.get(key))
            for key, g in sorted(present.items(), key=lambda kv: _grant_order(kv[1]))
            if key not in wanted
        )
    )
    return Plan(grant=grants, revoke=revokes, keep=keeps)


def _traced(observed: Grant, former: list[Grant] | None) -> Grant:
    """An observed AWS assignment named after the request that last held it."""
    if observed.request is not None or not former:
        return observed
    last = _representative(former)
    return replace(observed, request=last.request, begin=last.begin, end=last.end, pr=last.pr)


def _wanted_now(grant: Grant, now: datetime) -> bool:
    # A cloud that enforces the begin itself (a GCP condition) may be written early; any
    # other grant that begins later is not granted yet. Nothing past its end is wanted.
    return providers.spec(grant.provider).writable_now(grant, now)


def _by_key(grants: Iterable[Grant], now: datetime) -> dict[GrantKey, list[Grant]]:
    """Desired grants grouped by what they are in the cloud: on AWS several overlapping
    requests map to one assignment, which stays while any of them holds."""
    out: dict[GrantKey, list[Grant]] = defaultdict(list)
    for g in grants:
        out[g.key(now)].append(g)
    for gs in out.values():
        if len(gs) > 1:
            gs.sort(key=_grant_order)
    return dict(out)


def _representative(grants: list[Grant]) -> Grant:
    """The request that holds the assignment longest stands for the group."""
    return max(grants, key=lambda g: (g.end is None, g.end or datetime.min, g.request or ""))


def _grant_order(g: Grant) -> tuple[str, str, str, str, str, str]:
    end = g.end.isoformat() if g.end else ""
    return (g.provider, g.scope, g.role, g.principal, g.request or "", end)


def _sort_key(item: tuple[GrantKey, list[Grant]]) -> tuple[str, str, str, str, str, str]:
    grants = item[1]
    return _grant_order(grants[0] if len(grants) == 1 else _representative(grants))


def _requests(grants: list[Grant]) -> str:
    return ", ".join(sorted({g.request for g in grants if g.request}))


def _grant_reason(grants: list[Grant], notes: Mapping[str, str]) -> str:
    g = _representative(grants)
    parts = [notes.get(g.request or "", "approved request in its window")]
    if g.begin is not None and g.end is not None:
        parts.append(f"window {format_rfc3339(g.begin)} to {format_rfc3339(g.end)}")
    if len(grants) > 1:
        parts.append(f"held by {_requests(grants)}")
    return "; ".join(parts)


def _keep_reason(grants: list[Grant], observed: Grant, notes: Mapping[str, str]) -> str:
    g = _representative(grants)
    base = notes.get(g.request or "", "approved request in its window")
    if len(grants) > 1:
        return f"{base}; held by {_requests(grants)} until {_until(g)}"
    return f"{base}; already in place until {_until(g)}"


def _until(g: Grant) -> str:
    return format_rfc3339(g.end) if g.end else "no end"


def _revoke_reason(
    g: Grant, now: datetime, notes: Mapping[str, str], desired_requests: set[str | None]
) -> str:
    traced = not providers.spec(g.provider).future_start  # a grant that names no request
    if not traced and g.end is None:
        return "managed binding with an unreadable end time: replaced or removed"
    if g.end is not None and g.end <= now:
        return f"expired at {format_rfc3339(g.end)}"
    if traced and g.request is not None and g.request in notes:
        return notes[g.request]
    if g.request is None:
        return "no active approved request: standing assignment of an owned permission set"
    if g.request in desired_requests:
        return f"superseded by the current version of {g.request}"
    if g.request in notes:
        return notes[g.request]
    return f"request file deleted: {g.request} is no longer on the branch"
