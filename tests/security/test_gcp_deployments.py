"""Two accessctl deployments in one organisation, and bindings from before deployments had
a name: each deployment sees and changes only its own bindings, whatever the other one,
a hand-written binding or a forged title does. Real client over HTTP, GCP emulator."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from reconciler.core.models import Change, ChangeKind, Config, Grant
from reconciler.core.plan import plan
from reconciler.providers.base import make
from reconciler.providers.gcp import Deployment, GcpProvider
from reconciler.sandbox.gcp_emulator import GcpEmulator
from tests.support.emulators import running_gcp

P = "projects/payments-prod"
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
END = NOW + timedelta(hours=2)
REQ = "requests/alice/inc-4821.yaml"
A, B = "acme/access", "acme/infra-access"
LEGACY = {
    "role": "roles/cloudsql.viewer",
    "members": ["user:alice@example.com", "user:bob@example.com"],
    "condition": {
        "title": f"accessctl:{REQ}",
        "description": f"accessctl grant for {REQ} via PR #7",
        "expression": 'request.time < timestamp("2026-12-01T12:00:00Z")',
    },
}


def grant(
    principal: str = "user:alice@example.com",
    request: str = REQ,
    end: datetime = END,
    pr: int | None = 12,
) -> Grant:
    return Grant("gcp", P, "roles/cloudsql.viewer", principal, request, NOW, end, pr)


def add(g: Grant) -> Change:
    return Change(ChangeKind.GRANT, g, "approved")


def revoke(g: Grant) -> Change:
    return Change(ChangeKind.REVOKE, g, "expired")


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(P) as emu:
        yield emu


def deployment(gcp: GcpEmulator, name: str, known: frozenset[str] = frozenset()) -> GcpProvider:
    options = {
        "endpoint": gcp.url,
        "deployment": name,
        "known_requests": known,
        "backoff_base": 0.001,
        "backoff_max": 0.005,
    }
    provider = make("gcp", Config(), options)
    assert isinstance(provider, GcpProvider)
    return provider


def bindings_titled(gcp: GcpEmulator, prefix: str) -> list[dict]:
    return [
        b
        for b in gcp.get_policy(P).get("bindings", [])
        if b.get("condition", {}).get("title", "").startswith(prefix)
    ]


def reconcile(provider: GcpProvider, desired: list[Grant]) -> list[bool]:
    """What a run of that deployment does: observe, plan, apply."""
    observed = provider.observe([P], NOW).grants[P]
    the_plan = plan(desired, observed, NOW)
    return [r.ok for r in provider.apply(P, [*the_plan.revoke, *the_plan.grant], NOW)]


# -- two deployments, one project -----------------------------------------------------


def test_two_deployments_never_remove_each_others_bindings(gcp: GcpEmulator):
    a, b = deployment(gcp, A), deployment(gcp, B)
    # The same request path, member, role and window in both repositories.
    assert all(reconcile(a, [grant()]))
    assert all(reconcile(b, [grant()]))
    theirs = bindings_titled(gcp, f"accessctl:{Deployment(B).tag}:")
    assert len(theirs) == 1 and len(bindings_titled(gcp, "accessctl:")) == 2

    # A's request is deleted: A revokes its own binding and nothing of B's.
    assert all(reconcile(a, []))
    assert bindings_titled(gcp, "accessctl:") == theirs
    # A's next run neither sees B's binding nor writes anything.
    gcp.reset_counters()
    assert a.observe([P], NOW).grants[P] == frozenset() and not reconcile(a, [])
    assert gcp.writes(P) == 0


def test_a_run_of_one_deployment_keeps_the_other_byte_for_byte(gcp: GcpEmulator):
    a, b = deployment(gcp, A), deployment(gcp, B)
    reconcile(b, [grant(), grant("user:carol@example.com", "requests/carol/logs.yaml")])
    before = bindings_titled(gcp, f"accessctl:{Deployment(B).tag}:")

    for desired in ([grant()], [grant(end=END + timedelta(hours=1))], []):
        assert all(reconcile(a, desired))
        assert bindings_titled(gcp, f"accessctl:{Deployment(B).tag}:") == before


def test_a_binding_naming_us_only_in_its_description_is_invisible(gcp: GcpEmulator):
    forged = {
        "role": "roles/cloudsql.viewer",
        "members": ["user:mallory@example.com"],
        "condition": {
            "title": f"accessctl:{Deployment(B).tag}:{REQ}",
            "description": f"accessctl grant for {REQ} via PR #12; deployment {A}",
            "expression": 'request.time < timestamp("2026-12-01T12:00:00Z")',
        },
    }
    gcp.set_policy(P, {"bindings": [forged]})
    a = deployment(gcp, A)

    assert a.observe([P], NOW).grants[P] == frozenset()
    assert all(reconcile(a, [grant()]))
    assert forged in gcp.get_policy(P)["bindings"]


def test_our_tag_with_another_deployments_name_is_left_alone_and_reported(gcp: GcpEmulator):
    odd = {
        "role": "roles/cloudsql.viewer",
        "members": ["user:mallory@example.com"],
        "condition": {
            "title": f"accessctl:{Deployment(A).tag}:{REQ}",
            "description": f"accessctl grant for {REQ}; deployment {B}",
            "expression": 'request.time < timestamp("2026-12-01T12:00:00Z")',
        },
    }
    gcp.set_policy(P, {"bindings": [odd]})
    a = deployment(gcp, A)

    obs = a.observe([P], NOW)
    reconcile(a, [])

    assert obs.grants[P] == frozenset()
    assert len(obs.warnings) == 1 and repr(B) in obs.warnings[0]
    assert gcp.get_policy(P)["bindings"] == [odd]


def test_a_forged_cut_title_cannot_pass_for_a_desired_request(gcp: GcpEmulator):
    long = f"requests/{'m' * 39}/{'x' * 48}.yaml"
    a = deployment(gcp, A)
    real = Deployment(A).title_for(long)
    forged = {
        "role": "roles/cloudsql.viewer",
        "members": ["user:alice@example.com"],
        "condition": {
            # our tag and the desired path's head, but a digest that is not the path's
            "title": real[:-12] + "0" * 12,
            "description": f"accessctl grant for {long} via PR #12; deployment {A}",
            "expression": 'request.time < timestamp("2026-12-01T12:00:00Z")',
        },
    }
    gcp.set_policy(P, {"bindings": [forged]})

    assert all(reconcile(a, [grant(request=long)]))

    assert [b["condition"]["title"] for b in gcp.get_policy(P)["bindings"]] == [real]


# -- legacy titles (accessctl:<request path>) ----------------------------------------


def test_a_legacy_binding_of_a_known_request_is_adopted_without_churn(gcp: GcpEmulator):
    gcp.set_policy(P, {"bindings": [LEGACY]})
    a = deployment(gcp, A, frozenset({REQ}))
    gcp.reset_counters()

    obs = a.observe([P], NOW)
    same = [grant(pr=7), grant("user:bob@example.com", pr=7)]
    the_plan = plan(same, obs.grants[P], NOW)

    assert {g.principal for g in obs.grants[P]} == {
        "user:alice@example.com",
        "user:bob@example.com",
    }
    assert not obs.warnings
    assert the_plan.empty and len(the_plan.keep) == 2
    assert not reconcile(a, same) and gcp.writes(P) == 0
    assert gcp.get_policy(P)["bindings"] == [LEGACY]


def test_a_legacy_binding_takes_the_new_title_when_it_changes(gcp: GcpEmulator):
    gcp.set_policy(P, {"bindings": [LEGACY]})
    a = deployment(gcp, A, frozenset({REQ}))

    # bob's access is revoked; alice's stays, now under this deployment's title
    assert all(reconcile(a, [grant(pr=7)]))

    [binding] = gcp.get_policy(P)["bindings"]
    assert binding["members"] == ["user:alice@example.com"]
    assert binding["condition"]["title"] == Deployment(A).title_for(REQ)
    assert binding["condition"]["description"] == (
        f"accessctl grant for {REQ} via PR #7; deployment {A}"
    )
    assert binding["condition"]["expression"] == LEGACY["condition"]["expression"]
    assert plan([grant(pr=7)], a.observe([P], NOW).grants[P], NOW).empty

    assert all(reconcile(a, []))
    assert gcp.get_policy(P).get("bindings", []) == []


def test_a_legacy_binding_of_an_unknown_request_is_left_alone_and_reported_once(
    gcp: GcpEmulator,
):
    other = copy.deepcopy(LEGACY)
    other["condition"]["title"] = "accessctl:requests/zed/elsewhere.yaml"
    gcp.set_policy(P, {"bindings": [LEGACY, other]})
    before = gcp.get_policy(P)["bindings"]
    a = deployment(gcp, A, frozenset({REQ}))

    obs = a.observe([P], NOW)
    assert all(reconcile(a, [grant("user:carol@example.com", "requests/carol/x.yaml")]))
    assert all(reconcile(a, []))  # revokes carol's and alice's and bob's, never zed's

    assert [w for w in obs.warnings if "requests/zed/elsewhere.yaml" in w] == obs.warnings
    assert len(obs.warnings) == 1  # one binding, one note, though it has two members
    assert gcp.get_policy(P)["bindings"] == [b for b in before if b == other]


def test_another_deployment_leaves_our_legacy_binding_alone(gcp: GcpEmulator):
    gcp.set_policy(P, {"bindings": [LEGACY]})
    b = deployment(gcp, B, frozenset({"requests/erin/other.yaml"}))

    obs = b.observe([P], NOW)
    assert all(reconcile(b, [grant("user:erin@example.com", "requests/erin/other.yaml")]))
    assert all(reconcile(b, []))

    assert obs.grants[P] == frozenset() and len(obs.warnings) == 1
    assert gcp.get_policy(P)["bindings"] == [LEGACY]


# -- whatever the interleaving ----------------------------------------------------------


class TwoDeployments(RuleBasedStateMachine):
    """A and B grant and revoke in one project, with conflicting writes between them:
    each deployment's bindings are exactly its successful writes, the other's untouched."""

    @initialize()
    def start(self) -> None:
        self.emulator = GcpEmulator().start()
        self.emulator.add_resource(P)
        self.providers = {name: deployment(self.emulator, name) for name in (A, B)}
        self.held: dict[str, set[Grant]] = {A: set(), B: set()}

    def teardown(self) -> None:
        if hasattr(self, "emulator"):
            self.emulator.stop()

    @rule(
        name=st.sampled_from([A, B]),
        who=st.sampled_from(["alice", "bob"]),
        n=st.integers(0, 2),
        hours=st.integers(1, 3),
    )
    def grant_access(self, name: str, who: str, n: int, hours: int) -> None:
        g = grant(
            f"user:{who}@example.com", f"requests/{who}/r{n}.yaml", NOW + timedelta(hours=hours)
        )
        [result] = self.providers[name].apply(P, [add(g)], NOW)
        if result.ok:
            self.held[name].add(g)

    @rule(name=st.sampled_from([A, B]), data=st.data())
    def revoke_access(self, name: str, data: st.DataObject) -> None:
        observed = sorted(self.providers[name].observe([P], NOW).grants[P], key=repr)
        if not observed:
            return
        g = data.draw(st.sampled_from(observed))
        [result] = self.providers[name].apply(P, [revoke(g)], NOW)
        if result.ok:
            self.held[name] = {h for h in self.held[name] if h.key(NOW) != g.key(NOW)}

    @rule(other=st.sampled_from([A, B]), who=st.sampled_from(["carol", "dave"]))
    def a_write_lands_in_between(self, other: str, who: str) -> None:
        """Between the next writer's read and its write, ``other`` writes one of its
        grants: the next write gets 409 and must keep it."""
        g = grant(f"user:{who}@example.com", f"requests/{who}/x.yaml")
        writer = self.providers[other]

        def concurrent(policy: dict) -> dict:
            self.held[other].add(g)
            return {**policy, "bindings": [*policy.get("bindings", []), binding_of(writer, g)]}

        self.emulator.conflict_next(P, mutate=concurrent)

    @invariant()
    def each_holds_exactly_its_own(self) -> None:
        if not hasattr(self, "emulator"):
            return
        for name, provider in self.providers.items():
            seen = {g.key(NOW) for g in provider.observe([P], NOW).grants[P]}
            assert seen == {g.key(NOW) for g in self.held[name]}


def binding_of(provider: GcpProvider, g: Grant) -> dict:
    assert g.request is not None and g.end is not None
    return {
        "role": g.role,
        "members": [g.principal],
        "condition": {
            "title": provider.deployment.title_for(g.request),
            "description": provider.deployment.description_for(g),
            "expression": f'request.time < timestamp("{g.end.strftime("%Y-%m-%dT%H:%M:%SZ")}")',
        },
    }


TwoDeployments.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestTwoDeployments = TwoDeployments.TestCase
