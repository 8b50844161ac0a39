"""The provider contract: what every registered provider must do against its emulator.

The planner compares desired and observed grants by ``spec.identity``; it keeps what both
sides hold, grants what only the desired side holds and revokes what only the observed side
holds. So every provider must: observe exactly its managed grants and nothing else; give
back, for a grant it wrote, an observed grant of the same identity (else every run would
churn it); write and revoke idempotently and verified; leave what it does not own alone;
and report every cloud failure in the result, never raise it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from reconciler.core import providers
from reconciler.core.models import Change, ChangeKind, Grant
from reconciler.providers.base import Provider

from .harness import HARNESSES, Harness, Held

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
REQUEST = "requests/alice/contract.yaml"


def desired(
    h: Harness,
    scope: str,
    principal: str | None = None,
    begin: datetime | None = NOW - timedelta(minutes=5),
    end: datetime | None = NOW + timedelta(hours=2),
    request: str = REQUEST,
) -> Grant:
    """A grant as the planner derives it from an approved request."""
    return Grant(h.name, scope, h.role, principal or h.principal, request, begin, end, pr=7)


def grant(g: Grant) -> Change:
    return Change(ChangeKind.GRANT, g, "approved and in window")


def revoke(g: Grant) -> Change:
    return Change(ChangeKind.REVOKE, g, "expired")


def managed(provider: Provider, scope: str, now: datetime = NOW) -> frozenset[Grant]:
    obs = provider.observe([scope], now)
    assert scope not in obs.failures, obs.failures[scope]
    return obs.grants[scope]


def identities(
    h: Harness, grants: frozenset[Grant] | list[Grant], now: datetime = NOW
) -> set[Hashable]:
    spec = providers.spec(h.name)
    return {spec.identity(g, now) for g in grants}


def granted(h: Harness, provider: Provider, g: Grant, now: datetime = NOW) -> Grant:
    """Resolve ``g``, apply it, check the result; the resolved grant."""
    [resolved] = provider.resolve([g])
    [result] = provider.apply(g.scope, [grant(resolved)], now)
    assert result.ok, result.message
    assert result.verified, result.message
    return resolved


def added(before: list[Held], after: list[Held]) -> Counter[Held]:
    return Counter(after) - Counter(before)


# -- the registry -------------------------------------------------------------------------


def test_every_registered_provider_has_a_harness() -> None:
    missing = [name for name in providers.names() if name not in HARNESSES]
    assert not missing, (
        f"providers {missing} have no harness in tests/providers/harness.py: every provider "
        "must run the shared contract suite against its emulator"
    )


def test_harness_values_fit_the_spec(harness: Harness) -> None:
    spec = providers.spec(harness.name)
    assert spec.scope_matches(harness.fresh_scope())
    assert spec.role_refusal(harness.role) is None
    for principal in (harness.principal, harness.second_principal, harness.unknown_principal):
        assert re.fullmatch(spec.principal_pattern, principal), principal
    assert re.fullmatch(spec.role_pattern, harness.role)
    for scope in harness.near_miss_scopes:
        assert not spec.scope_matches(scope), scope
    assert harness.adapter().name == harness.name


# -- observe and resolve --------------------------------------------------------------------


def test_observe_of_a_fresh_scope_finds_nothing_and_fails_nothing(harness: Harness) -> None:
    scope = harness.fresh_scope()
    obs = harness.adapter().observe([scope], NOW)
    assert scope not in obs.failures
    assert obs.grants[scope] == frozenset()


def test_resolve_fills_in_cloud_ids_and_never_raises_for_an_unknown_principal(
    harness: Harness,
) -> None:
    scope = harness.fresh_scope()
    provider = harness.adapter()
    asked = [
        desired(harness, scope),
        desired(harness, scope, harness.second_principal),
        desired(harness, scope, harness.unknown_principal),
    ]
    resolved = provider.resolve(asked)
    assert len(resolved) == len(asked)
    for before, after in zip(asked, resolved, strict=True):
        # only principal_id may change, and only to the cloud's own id
        assert replace(after, principal_id=None) == before
        assert after.principal_id == harness.principal_id(before.principal)
    assert resolved[2].principal_id is None
    assert provider.resolve([]) == []


# -- grant, idempotency, revoke -------------------------------------------------------------


def test_a_granted_grant_is_observed_with_the_desired_identity(harness: Harness) -> None:
    scope = harness.fresh_scope()
    provider = harness.adapter()
    before = harness.held(scope)
    resolved = granted(harness, provider, desired(harness, scope))

    observed = managed(harness.adapter(), scope)  # a new run: nothing cached
    assert len(observed) == 1
    [seen] = observed
    spec = providers.spec(harness.name)
    # the planner would keep it, now and all through the window
    for now in (NOW, NOW + timedelta(minutes=30), NOW + timedelta(hours=1, minutes=59)):
        assert spec.identity(seen, now) == spec.identity(resolved, now), now
    assert seen.scope == scope and seen.role == harness.role
    assert sum(added(before, harness.held(scope)).values()) == 1


def test_a_second_apply_of_the_same_grant_is_idempotent(harness: Harness) -> None:
    scope = harness.fresh_scope()
    before = harness.held(scope)
    g = desired(harness, scope)
    granted(harness, harness.adapter(), g)
    once = harness.held(scope)
    granted(harness, harness.adapter(), g)  # a rerun after a lost answer
    assert harness.held(scope) == once, "the second apply changed what the cloud holds"
    assert sum(added(before, harness.held(scope)).values()) == 1
    assert len(managed(harness.adapter(), scope)) == 1


def test_revoking_the_observed_grant_removes_it(harness: Harness) -> None:
    scope = harness.fresh_scope()
    before = harness.held(scope)
    granted(harness, harness.adapter(), desired(harness, scope))
    provider = harness.adapter()
    [seen] = managed(provider, scope)
    [result] = provider.apply(scope, [revoke(seen)], NOW)
    assert result.ok, result.message
    assert result.verified, result.message
    assert managed(harness.adapter(), scope) == frozenset()
    assert harness.held(scope) == before


# -- what accessctl does not own ------------------------------------------------------------


def test_unmanaged_grants_are_never_managed_and_survive_grant_and_revoke(
    harness: Harness,
) -> None:
    scope = harness.fresh_scope()
    planted = harness.add_unmanaged(scope)
    assert planted
    held_unmanaged = harness.held(scope)
    assert not Counter(planted) - Counter(held_unmanaged), "the harness failed to plant"

    assert managed(harness.adapter(), scope) == frozenset()

    wanted = [desired(harness, scope), desired(harness, scope, harness.second_principal)]
    provider = harness.adapter()
    resolved = provider.resolve(wanted)
    results = provider.apply(scope, [grant(g) for g in resolved], NOW)
    assert all(r.ok and r.verified for r in results), [r.message for r in results]
    assert not Counter(planted) - Counter(harness.held(scope)), "a grant touched them"

    provider = harness.adapter()
    observed = managed(provider, scope)
    assert identities(harness, observed) == identities(harness, resolved)

    results = provider.apply(scope, [revoke(g) for g in observed], NOW)
    assert all(r.ok and r.verified for r in results), [r.message for r in results]
    assert harness.held(scope) == held_unmanaged, "a revoke touched what is not ours"
    assert managed(harness.adapter(), scope) == frozenset()


# -- scopes a provider does not serve -------------------------------------------------------


def test_a_malformed_scope_fails_in_observe_and_apply_without_raising(harness: Harness) -> None:
    good = harness.fresh_scope()
    provider = harness.adapter()
    for bad in ("not a scope", "", "projects/a/b", "12345"):
        obs = provider.observe([good, bad], NOW)
        assert bad in obs.failures, bad
        assert bad not in obs.grants, bad
        assert good not in obs.failures and obs.grants[good] == frozenset()
        [result] = provider.apply(bad, [grant(desired(harness, bad))], NOW)
        assert not result.ok and not result.verified, bad


def test_a_scope_outside_the_scope_pattern_fails_in_observe(harness: Harness) -> None:
    provider = harness.adapter()
    wrong = []
    for bad in harness.near_miss_scopes:
        obs = provider.observe([bad], NOW)
        if bad not in obs.failures or bad in obs.grants:
            wrong.append(bad)
    assert not wrong, (
        f"{harness.name} observed scopes that do not match its scope_pattern "
        f"{providers.spec(harness.name).scope_pattern!r}: {wrong}"
    )


def test_a_scope_outside_the_scope_pattern_is_never_written(harness: Harness) -> None:
    provider = harness.adapter()
    wrong = []
    for bad in harness.near_miss_scopes:
        [resolved] = provider.resolve([desired(harness, bad)])
        [result] = provider.apply(bad, [grant(resolved)], NOW)
        if result.ok:
            wrong.append(bad)
    assert not wrong, (
        f"{harness.name} wrote grants in scopes that do not match its scope_pattern "
        f"{providers.spec(harness.name).scope_pattern!r}: {wrong}"
    )


# -- windows and identities -----------------------------------------------------------------


def test_writable_now_follows_the_window(harness: Harness) -> None:
    spec = providers.spec(harness.name)
    scope = harness.fresh_scope()
    assert spec.writable_now(desired(harness, scope), NOW)
    ended = desired(harness, scope, begin=NOW - timedelta(hours=2), end=NOW)
    assert not spec.writable_now(ended, NOW)
    assert not spec.writable_now(replace(ended, end=NOW - timedelta(seconds=1)), NOW)
    ahead = desired(harness, scope, begin=NOW + timedelta(hours=1), end=NOW + timedelta(hours=3))
    assert spec.writable_now(ahead, NOW) is spec.future_start


def test_identity_covers_the_window_exactly_when_the_cloud_holds_it(harness: Harness) -> None:
    spec = providers.spec(harness.name)
    scope = harness.fresh_scope()
    g = desired(harness, scope)
    assert g.end is not None
    longer = replace(g, end=g.end + timedelta(hours=1))
    differ = spec.identity(g, NOW) != spec.identity(longer, NOW)
    assert differ is harness.window_in_identity

    resolved = granted(harness, harness.adapter(), g)
    [seen] = managed(harness.adapter(), scope)
    assert spec.identity(seen, NOW) == spec.identity(resolved, NOW)
    # an identity may only compare the end when the observed grant carries one
    assert (seen.end is not None) is harness.window_in_identity
    if harness.window_in_identity:
        assert seen.end == g.end


def test_a_begin_ahead_round_trips_for_providers_that_write_ahead(harness: Harness) -> None:
    spec = providers.spec(harness.name)
    scope = harness.fresh_scope()
    ahead = desired(harness, scope, begin=NOW + timedelta(hours=1), end=NOW + timedelta(hours=3))
    if not spec.future_start:
        assert not spec.writable_now(ahead, NOW)
        return
    # the begin, while ahead, is part of what the grant allows
    assert spec.identity(ahead, NOW) != spec.identity(replace(ahead, begin=None), NOW)
    resolved = granted(harness, harness.adapter(), ahead)
    [seen] = managed(harness.adapter(), scope)
    for now in (NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2)):
        assert spec.identity(seen, now) == spec.identity(resolved, now), now


# -- failures are reported, never raised ----------------------------------------------------


def test_a_refused_scope_fails_alone_in_observe_and_apply(harness: Harness) -> None:
    ok_scope, refused = harness.fresh_scope(), harness.fresh_scope()
    provider = harness.adapter()
    granted(harness, provider, desired(harness, refused))
    harness.break_scope(refused)

    provider = harness.adapter()
    obs = provider.observe([ok_scope, refused], NOW)
    assert obs.failures.get(refused)
    assert refused not in obs.grants
    assert ok_scope not in obs.failures and obs.grants[ok_scope] == frozenset()

    [resolved] = provider.resolve([desired(harness, refused, harness.second_principal)])
    [result] = provider.apply(refused, [grant(resolved)], NOW)
    assert not result.ok and not result.verified and result.message
    observed_earlier = replace(
        desired(harness, refused), principal_id=harness.principal_id(harness.principal)
    )
    if not harness.window_in_identity:
        observed_earlier = replace(observed_earlier, request=None, begin=None, end=None, pr=None)
    [result] = provider.apply(refused, [revoke(observed_earlier)], NOW)
    assert not result.ok and not result.verified and result.message


def test_an_unreachable_cloud_fails_every_scope_without_raising(harness: Harness) -> None:
    scope = harness.fresh_scope()
    provider = harness.unreachable_adapter()
    obs = provider.observe([scope], NOW)
    assert obs.failures.get(scope)
    assert scope not in obs.grants

    [resolved] = provider.resolve([desired(harness, scope)])
    assert resolved == desired(harness, scope)  # no id found, and no exception
    [result] = provider.apply(scope, [grant(resolved)], NOW)
    assert not result.ok and not result.verified and result.message
