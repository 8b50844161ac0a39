"""Grants of the same role to the same member with the same window share one binding.

Through the real Resource Manager client against the emulator: the shared binding counts
the member once, names every request in its description, and each request is still its
own grant (observed, revoked and audited on its own).
"""

from __future__ import annotations

from datetime import timedelta

from reconciler.providers.gcp import (
    DESCRIPTION_MAX,
    Deployment,
    GcpProvider,
    Limits,
    fit,
    grants_of,
)
from reconciler.sandbox.gcp_emulator import GcpEmulator

from .conftest import NOW, add, grant, revoke

P = "projects/payments-prod"
TAG = "37a8eec1"  # sha256("default")[:8]
FIRST = "requests/alice/inc-4821.yaml"
SECOND = "requests/alice/inc-4821-again.yaml"
EXPR = 'request.time < timestamp("2026-12-01T12:00:00Z")'


def ours(policy: dict) -> list[dict]:
    return [
        b
        for b in policy.get("bindings", [])
        if b.get("condition", {}).get("title", "").startswith("accessctl:")
    ]


def test_two_requests_same_role_member_window_share_one_binding(
    emulator: GcpEmulator, provider: GcpProvider
):
    emulator.add_resource(P)
    provider.observe([P], NOW)

    results = provider.apply(P, [add(grant()), add(grant(request=SECOND, pr=13))], NOW)

    assert all(r.ok and r.verified for r in results), [r.message for r in results]
    assert ours(emulator.get_policy(P)) == [
        {
            "role": "roles/cloudsql.viewer",
            "members": ["user:alice@example.com"],
            "condition": {
                "title": f"accessctl:{TAG}:{FIRST}",
                "description": (
                    f"accessctl grant for {FIRST} via PR #12; for {SECOND} via PR #13; "
                    "deployment default"
                ),
                "expression": EXPR,
            },
        }
    ]
    # Each request is still its own grant, with its own pull request.
    observed = provider.observe([P], NOW).grants[P]
    assert {(g.request, g.pr) for g in observed} == {(FIRST, 12), (SECOND, 13)}


def test_a_later_grant_joins_the_existing_binding_and_a_second_run_writes_nothing(
    emulator: GcpEmulator, make_provider
):
    emulator.add_resource(P)
    first = make_provider()
    first.observe([P], NOW)
    first.apply(P, [add(grant())], NOW)

    second = make_provider()
    second.observe([P], NOW)
    [result] = second.apply(P, [add(grant(request=SECOND, pr=13))], NOW)

    assert result.ok and result.verified
    [binding] = ours(emulator.get_policy(P))
    assert binding["members"] == ["user:alice@example.com"]
    assert SECOND in binding["condition"]["description"]
    writes = emulator.writes(P)
    third = make_provider()
    held = third.observe([P], NOW).grants[P]
    assert third.apply(P, [], NOW) == [] and emulator.writes(P) == writes
    assert len(held) == 2


def test_revoking_one_request_keeps_the_other_with_its_own_title(
    emulator: GcpEmulator, provider: GcpProvider
):
    emulator.add_resource(P)
    provider.observe([P], NOW)
    provider.apply(P, [add(grant()), add(grant(request=SECOND, pr=13))], NOW)

    provider.observe([P], NOW)
    [result] = provider.apply(P, [revoke(grant())], NOW + timedelta(minutes=5))

    assert result.ok and result.verified, result.message
    assert ours(emulator.get_policy(P)) == [
        {
            "role": "roles/cloudsql.viewer",
            "members": ["user:alice@example.com"],
            "condition": {
                "title": f"accessctl:{TAG}:{SECOND}",
                "description": f"accessctl grant for {SECOND} via PR #13; deployment default",
                "expression": EXPR,
            },
        }
    ]
    provider.observe([P], NOW)
    [result] = provider.apply(P, [revoke(grant(request=SECOND, pr=13))], NOW)
    assert result.ok and ours(emulator.get_policy(P)) == []


def test_different_windows_roles_or_members_do_not_share(
    emulator: GcpEmulator, provider: GcpProvider
):
    emulator.add_resource(P)
    provider.observe([P], NOW)
    later = grant(request=SECOND, end=NOW + timedelta(hours=3))
    other_role = grant(request="requests/alice/b.yaml", role="roles/cloudsql.client")
    other_member = grant(request="requests/bob/c.yaml", principal="user:bob@example.com")

    results = provider.apply(P, [add(grant()), add(later), add(other_role), add(other_member)], NOW)

    assert all(r.ok for r in results)
    assert len(ours(emulator.get_policy(P))) == 4


def test_sharing_keeps_a_full_policy_within_the_principal_limit(
    emulator: GcpEmulator, provider: GcpProvider
):
    # With alice the policy holds 1,500 principals: a second binding for her would be the 1,501st
    # appearance, joining her binding adds none.
    users = [f"user:u{n}@example.com" for n in range(1499)]
    emulator.add_resource(P, {"bindings": [{"role": "roles/browser", "members": users}]})
    provider.observe([P], NOW)
    [first] = provider.apply(P, [add(grant())], NOW)
    assert first.ok

    provider.observe([P], NOW)
    [joined] = provider.apply(P, [add(grant(request=SECOND, pr=13))], NOW)
    [separate] = provider.apply(
        P, [add(grant(request="requests/alice/other.yaml", end=NOW + timedelta(hours=1)))], NOW
    )

    assert joined.ok and joined.verified, joined.message
    assert not separate.ok and "1,500 principals" in separate.message


def test_a_description_that_would_grow_too_long_starts_a_new_binding():
    from google.iam.v1 import policy_pb2

    long_slug = "x" * 60
    grants = [grant(request=f"requests/alice/{long_slug}-{n}.yaml", pr=n) for n in range(6)]
    fitted = fit(
        P, policy_pb2.Policy(), grants, [], now=NOW, deployment=Deployment(), limits=Limits()
    )

    assert not fitted.refused
    assert len(fitted.policy.bindings) > 1
    assert all(len(b.condition.description) <= DESCRIPTION_MAX for b in fitted.policy.bindings)
    assert {g.request for g in grants_of(P, fitted.policy)} == {g.request for g in grants}


def test_a_foreign_description_listing_our_paths_is_not_believed():
    """Only the first path of a description that matches the title is the binding's own
    request; a description naming another request first lists nothing."""
    from google.iam.v1 import policy_pb2

    policy = policy_pb2.Policy()
    binding = policy.bindings.add()
    binding.role = "roles/cloudsql.viewer"
    binding.members.append("user:alice@example.com")
    binding.condition.title = f"accessctl:{TAG}:{FIRST}"
    binding.condition.description = (
        f"accessctl grant for requests/bob/x.yaml; for {SECOND}; deployment default"
    )
    binding.condition.expression = EXPR

    assert {g.request for g in grants_of(P, policy)} == {FIRST}


def test_requests_without_pull_requests_share_and_read_back_each():
    """Paths with no ``via PR #n`` after them: each still reads back as itself."""
    from google.iam.v1 import policy_pb2

    paths = [f"requests/alice/r{n}.yaml" for n in range(4)]
    grants = [grant(request=p, pr=None) for p in paths]
    fitted = fit(
        P,
        policy_pb2.Policy(),
        grants,
        [],
        now=NOW,
        deployment=Deployment("acme/x"),
        limits=Limits(),
    )

    [binding] = fitted.policy.bindings
    assert binding.condition.description == (
        "accessctl grant for requests/alice/r0.yaml; for requests/alice/r1.yaml; "
        "for requests/alice/r2.yaml; for requests/alice/r3.yaml; deployment acme/x"
    )
    held = grants_of(P, fitted.policy, Deployment("acme/x"))
    assert sorted(g.request for g in held) == paths
