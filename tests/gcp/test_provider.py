"""The GCP provider through the real google-cloud-resource-manager client, over HTTP,
against the embedded emulator: what the cloud holds afterwards is what we assert."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest

from reconciler.core.models import Change, ChangeKind
from reconciler.providers.gcp import ENDPOINT_ENV, GcpProvider
from reconciler.sandbox.gcp_emulator import GcpEmulator

from .conftest import NOW, add, grant, revoke

P = "projects/payments-prod"
END = "2026-12-01T12:00:00Z"
TAG = "37a8eec1"  # sha256("default")[:8]: the deployment when none is configured
EXPR = f'request.time < timestamp("{END}")'

UNMANAGED = {
    "bindings": [
        {"role": "roles/owner", "members": ["group:admins@example.com", "user:zed@example.com"]},
        {
            # another tool's conditional binding
            "role": "roles/cloudsql.viewer",
            "members": ["user:alice@example.com"],
            "condition": {
                "title": "breakglass",
                "description": "other tool",
                "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")',
            },
        },
        # same role and member as our grant, but not ours
        {
            "role": "roles/cloudsql.viewer",
            "members": ["user:bob@example.com", "user:alice@example.com"],
        },
    ],
    "auditConfigs": [
        {"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]},
    ],
}


def managed(policy: dict) -> list[dict]:
    return [
        b
        for b in policy.get("bindings", [])
        if b.get("condition", {}).get("title", "").startswith("accessctl:")
    ]


def unmanaged(policy: dict) -> list[dict]:
    return [b for b in policy.get("bindings", []) if b not in managed(policy)]


def test_grant_writes_one_conditional_binding(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    obs = provider.observe([P], NOW)
    assert obs.grants == {P: frozenset()} and not obs.failures

    [result] = provider.apply(P, [add(grant())], NOW)

    assert result.ok and result.verified, result.message
    assert managed(emulator.get_policy(P)) == [
        {
            "role": "roles/cloudsql.viewer",
            "members": ["user:alice@example.com"],
            "condition": {
                "title": f"accessctl:{TAG}:requests/alice/inc-4821.yaml",
                "description": (
                    "accessctl grant for requests/alice/inc-4821.yaml via PR #12; "
                    "deployment default"
                ),
                "expression": EXPR,
            },
        }
    ]
    assert emulator.get_policy(P)["version"] == 3
    assert (emulator.reads(P), emulator.writes(P)) == (1, 1)


def test_second_run_observes_the_grant_and_writes_nothing(
    emulator: GcpEmulator, provider: GcpProvider
):
    emulator.add_resource(P)
    provider.observe([P], NOW)
    provider.apply(P, [add(grant())], NOW)
    emulator.reset_counters()

    obs = provider.observe([P], NOW)

    [seen] = obs.grants[P]
    assert seen.key(NOW) == grant().key(NOW)
    assert seen.pr == 12 and seen.begin is None
    assert obs.calls == {"reads": 1, "writes": 0}
    # Applying the same grant again (e.g. a racing run) is a no-op, not a duplicate.
    [result] = provider.apply(P, [add(grant())], NOW)
    assert result.ok and result.verified
    assert emulator.writes(P) == 0 and len(managed(emulator.get_policy(P))) == 1


def test_revoke_removes_only_that_binding(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P, UNMANAGED)
    other = grant(principal="user:carol@example.com", request="requests/carol/x.yaml")
    provider.apply(P, [add(grant()), add(other)], NOW)
    before = emulator.get_policy(P)

    obs = provider.observe([P], NOW)
    [results] = [provider.apply(P, [revoke(grant())], NOW)]

    assert results[0].ok and results[0].verified
    after = emulator.get_policy(P)
    assert [b["members"] for b in managed(after)] == [["user:carol@example.com"]]
    assert unmanaged(after) == unmanaged(before)
    assert len(obs.grants[P]) == 2


def test_future_begin_gets_a_start_bound(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    later = grant(begin=NOW + timedelta(days=1), end=NOW + timedelta(days=1, hours=2))

    [result] = provider.apply(P, [add(later)], NOW)

    assert result.ok
    [binding] = managed(emulator.get_policy(P))
    assert binding["condition"]["expression"] == (
        'request.time >= timestamp("2026-12-02T10:00:00Z") && '
        'request.time < timestamp("2026-12-02T12:00:00Z")'
    )
    [seen] = provider.observe([P], NOW).grants[P]
    assert (seen.begin, seen.end) == (later.begin, later.end)


def test_everything_unmanaged_survives_byte_for_byte(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P, UNMANAGED)
    original = emulator.get_policy(P)

    provider.observe([P], NOW)
    provider.apply(P, [add(grant()), add(grant(request="requests/alice/second.yaml"))], NOW)
    provider.observe([P], NOW)
    provider.apply(P, [revoke(grant()), revoke(grant(request="requests/alice/second.yaml"))], NOW)

    final = emulator.get_policy(P)
    assert final["bindings"] == original["bindings"]
    assert final["auditConfigs"] == original["auditConfigs"]
    assert emulator.writes(P) == 2


def test_conflict_is_retried_and_keeps_the_concurrent_change(
    emulator: GcpEmulator, provider: GcpProvider
):
    emulator.add_resource(P, UNMANAGED)
    provider.observe([P], NOW)
    concurrent = {"role": "roles/logging.viewer", "members": ["user:ops@example.com"]}

    def other_writer(policy: dict) -> None:
        policy["bindings"].append(concurrent)

    emulator.conflict_next(P, mutate=other_writer)
    [result] = provider.apply(P, [add(grant())], NOW)

    assert result.ok and result.verified
    final = emulator.get_policy(P)
    assert concurrent in final["bindings"]
    assert len(managed(final)) == 1
    assert emulator.writes(P) == 2  # the stale write, then the redone one
    assert emulator.reads(P) == 2  # observe, then the fresh read for the redo


def test_persistent_conflict_gives_up_with_a_clear_message(emulator: GcpEmulator, make_provider):
    emulator.add_resource(P)
    provider = make_provider(attempts=3)
    emulator.conflict_next(P, count=10)

    [result] = provider.apply(P, [add(grant())], NOW)

    assert not result.ok and "409" in result.message
    assert emulator.writes(P) == 3


@pytest.mark.parametrize("status", [503, 429, 500])
def test_transient_errors_are_retried(emulator: GcpEmulator, provider: GcpProvider, status):
    emulator.add_resource(P)
    emulator.fail_next(P, status=status, count=2, method="get")
    obs = provider.observe([P], NOW)
    assert not obs.failures and obs.calls["reads"] == 3

    emulator.fail_next(P, status=status, count=1, method="set")
    [result] = provider.apply(P, [add(grant())], NOW)

    assert result.ok and result.verified
    assert len(managed(emulator.get_policy(P))) == 1


def test_one_scope_down_while_another_converges(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    emulator.add_resource("projects/down-prod")
    emulator.fail_next("projects/down-prod", status=503, count=None)
    down = grant(scope="projects/down-prod")

    obs = provider.observe([P, "projects/down-prod"], NOW)
    ok = provider.apply(P, [add(grant())], NOW)
    failed = provider.apply("projects/down-prod", [add(down)], NOW)

    assert "projects/down-prod" in obs.failures and "503" in obs.failures["projects/down-prod"]
    assert obs.grants[P] == frozenset()
    assert ok[0].ok and ok[0].verified
    assert not failed[0].ok and "503" in failed[0].message
    assert len(managed(emulator.get_policy(P))) == 1
    assert managed(emulator.get_policy("projects/down-prod")) == []


def test_unknown_project_is_a_failure_naming_the_permission(
    emulator: GcpEmulator, provider: GcpProvider
):
    obs = provider.observe(["projects/nope-nope"], NOW)
    message = obs.failures["projects/nope-nope"]
    assert message.startswith("403") and "resourcemanager.projects.getIamPolicy" in message
    assert emulator.reads() == 1  # 403 is not retried


def test_basic_role_is_refused_by_the_cloud(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P, UNMANAGED)
    before = emulator.get_policy(P)

    [result] = provider.apply(P, [add(grant(role="roles/editor"))], NOW)

    assert not result.ok and "basic role" in result.message
    assert emulator.get_policy(P) == before


def test_principal_without_type_prefix_fails_alone(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    bad = grant(principal="alice@example.com", request="requests/alice/bad.yaml")

    results = provider.apply(P, [add(bad), add(grant())], NOW)

    assert [r.ok for r in results] == [False, True]
    assert "type prefix" in results[0].message
    assert [b["members"] for b in managed(emulator.get_policy(P))] == [["user:alice@example.com"]]


@pytest.mark.parametrize("scope", ["folders/123456789", "organizations/987654321"])
def test_folders_and_organizations(emulator: GcpEmulator, provider: GcpProvider, scope):
    emulator.add_resource(scope, UNMANAGED)
    g = grant(scope=scope, role="roles/resourcemanager.folderViewer")

    obs = provider.observe([scope], NOW)
    [granted] = provider.apply(scope, [add(g)], NOW)
    [seen] = provider.observe([scope], NOW).grants[scope]
    [revoked] = provider.apply(scope, [revoke(seen)], NOW)

    assert obs.grants[scope] == frozenset()
    assert granted.ok and revoked.ok and seen.key(NOW) == g.key(NOW)
    assert emulator.get_policy(scope)["bindings"] == UNMANAGED["bindings"]


def test_unparseable_managed_binding_is_observed_without_end_and_revocable(
    emulator: GcpEmulator, provider: GcpProvider
):
    odd = {
        "role": "roles/cloudsql.viewer",
        "members": ["user:mallory@example.com", "user:eve@example.com"],
        "condition": {"title": f"accessctl:{TAG}:requests/mallory/x.yaml", "expression": "true"},
    }
    policy = copy.deepcopy(UNMANAGED)
    policy["bindings"].append(odd)
    emulator.add_resource(P, policy)

    seen = provider.observe([P], NOW).grants[P]
    assert {(g.principal, g.end) for g in seen} == {
        ("user:mallory@example.com", None),
        ("user:eve@example.com", None),
    }
    mallory = next(g for g in seen if g.principal == "user:mallory@example.com")
    [result] = provider.apply(P, [revoke(mallory)], NOW)

    assert result.ok and result.verified
    [left] = managed(emulator.get_policy(P))
    assert left["members"] == ["user:eve@example.com"]  # one member of two revoked
    assert unmanaged(emulator.get_policy(P)) == UNMANAGED["bindings"]


def test_endpoint_from_the_environment(emulator: GcpEmulator, monkeypatch):
    from reconciler.core.models import Config
    from reconciler.providers.base import make

    monkeypatch.setenv(ENDPOINT_ENV, emulator.url)
    emulator.add_resource(P)
    provider = make("gcp", Config(), {"backoff_base": 0.001})

    [result] = provider.apply(P, [add(grant())], NOW)

    assert result.ok and emulator.writes(P) == 1


def test_verify_read_option_adds_one_read(emulator: GcpEmulator, make_provider):
    emulator.add_resource(P)
    provider = make_provider(verify_read=True)
    provider.observe([P], NOW)

    [result] = provider.apply(P, [add(grant())], NOW)

    assert result.ok and result.verified
    assert (emulator.reads(P), emulator.writes(P)) == (2, 1)


def test_keep_changes_are_not_written(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    [result] = provider.apply(P, [Change(ChangeKind.KEEP, grant(), "still valid")], NOW)
    assert result.ok and emulator.calls == {}


def test_observe_reads_scopes_concurrently(emulator: GcpEmulator, make_provider):
    scopes = [f"projects/p-{i:03d}-prod" for i in range(16)]
    for s in scopes:
        emulator.add_resource(s)
    emulator.latency = 0.1
    provider = make_provider(concurrency=8)

    import time

    started = time.monotonic()
    obs = provider.observe(scopes, NOW)
    elapsed = time.monotonic() - started

    assert not obs.failures and obs.calls == {"reads": 16, "writes": 0}
    assert elapsed < 0.1 * 16 / 2  # well under serial time (1.6 s)


def test_missing_credentials_fail_every_scope_with_one_clear_message(monkeypatch, tmp_path):
    from reconciler.core.models import Config
    from reconciler.providers.base import make

    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    provider = make("gcp", Config(), {"backoff_base": 0.001})

    obs = provider.observe([P, "projects/other-prod"], NOW)
    [result] = provider.apply(P, [add(grant())], NOW)

    assert set(obs.failures) == {P, "projects/other-prod"}
    assert all("no Google credentials" in m for m in obs.failures.values())
    assert not result.ok and "no Google credentials" in result.message


def test_wide_pool_keeps_connections(emulator: GcpEmulator, make_provider):
    scopes = [f"projects/wide-{i:03d}-prod" for i in range(24)]
    for s in scopes:
        emulator.add_resource(s)
    provider = make_provider(concurrency=24)

    obs = provider.observe(scopes, NOW)

    assert not obs.failures and obs.calls["reads"] == 24


def test_a_grant_the_cloud_refuses_does_not_hold_back_the_others(
    emulator: GcpEmulator, provider: GcpProvider
):
    expired = grant(request="requests/alice/old.yaml", end=NOW - timedelta(hours=1))
    emulator.add_resource(P)
    provider.apply(P, [add(expired)], NOW - timedelta(hours=2))
    provider.observe([P], NOW)
    good = grant(principal="user:carol@example.com", request="requests/carol/x.yaml")
    bad = grant(role="roles/owner", request="requests/alice/owner.yaml")

    results = provider.apply(P, [add(bad), revoke(expired), add(good)], NOW)

    assert [r.ok for r in results] == [False, True, True]
    assert "basic role" in results[0].message
    assert [b["condition"]["title"] for b in managed(emulator.get_policy(P))] == [
        f"accessctl:{TAG}:requests/carol/x.yaml"
    ]


def test_member_case_as_iam_answers_it_is_the_same_member(
    emulator: GcpEmulator, provider: GcpProvider
):
    # IAM may answer with the account's own spelling of an e-mail address.
    emulator.add_resource(P)
    provider.apply(P, [add(grant(principal="user:Alice@Example.com"))], NOW)
    [seen] = provider.observe([P], NOW).grants[P]
    emulator.reset_counters()

    # A plan that lowercases sees a revoke of the spelling and a grant of itself.
    results = provider.apply(P, [revoke(seen), add(grant())], NOW)
    assert all(r.ok for r in results) and emulator.writes(P) == 0
    [result] = provider.apply(P, [add(grant())], NOW)
    assert result.ok and emulator.writes(P) == 0

    provider.observe([P], NOW)
    [gone] = provider.apply(P, [revoke(grant())], NOW)
    assert gone.ok and managed(emulator.get_policy(P)) == []
