"""A Hypothesis state machine over the GCP provider and the emulator: whatever the
sequence of grants, revokes, outages, conflicting writers and other tools' edits, the
cloud holds exactly the managed bindings whose writes succeeded, and every unmanaged
binding (including those written concurrently) survives."""

from __future__ import annotations

from datetime import timedelta

from google.iam.v1 import policy_pb2
from google.protobuf import json_format
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from reconciler.core.models import Config
from reconciler.providers.base import make
from reconciler.providers.gcp import expression_for, grants_of
from reconciler.sandbox.gcp_emulator import GcpEmulator

from .conftest import NOW, add, grant, revoke

SCOPES = ("projects/alpha-prod", "folders/1234")
PRINCIPALS = ("user:alice@example.com", "user:bob@example.com", "group:ops@example.com")
ROLES = ("roles/cloudsql.viewer", "roles/logging.viewer")
SEED = {
    "bindings": [
        {"role": "roles/owner", "members": ["user:root@example.com"]},
        {"role": "roles/logging.viewer", "members": ["user:bob@example.com"]},
    ],
    "auditConfigs": [{"service": "allServices", "auditLogConfigs": [{"logType": "ADMIN_READ"}]}],
}


def managed_in(policy: dict) -> set[tuple]:
    """(role, member, request, expression) of every managed grant: a binding shared by
    several requests (same role, member and window) holds one grant per request."""
    out = set()
    for b in policy.get("bindings", []):
        cond = b.get("condition", {})
        if cond.get("title", "").startswith("accessctl:"):
            one = json_format.ParseDict({"bindings": [b]}, policy_pb2.Policy())
            held = grants_of("projects/x", one)
            out |= {(g.role, g.principal, g.request, cond["expression"]) for g in held}
    return out


def unmanaged_in(policy: dict) -> list[dict]:
    return [
        b
        for b in policy.get("bindings", [])
        if not b.get("condition", {}).get("title", "").startswith("accessctl:")
    ]


class ProviderMachine(RuleBasedStateMachine):
    @initialize()
    def start(self):
        self.emulator = GcpEmulator().start()
        self.provider = make(
            "gcp", Config(), {"endpoint": self.emulator.url, "backoff_base": 0.0005, "attempts": 4}
        )
        self.held: dict[str, dict[tuple, object]] = {s: {} for s in SCOPES}
        self.unmanaged: dict[str, list[dict]] = {}
        for scope in SCOPES:
            self.emulator.add_resource(scope, SEED)
            self.unmanaged[scope] = unmanaged_in(self.emulator.get_policy(scope))
        self.now = NOW

    def teardown(self):
        if hasattr(self, "emulator"):
            self.emulator.stop()

    def _row(self, g) -> tuple:
        return (g.role, g.principal, g.request, expression_for(g, self.now))

    @rule(
        scope=st.sampled_from(SCOPES),
        principal=st.sampled_from(PRINCIPALS),
        role=st.sampled_from(ROLES),
        n=st.integers(0, 3),
        hours=st.integers(1, 4),
        observe_first=st.booleans(),
    )
    def grant_access(self, scope, principal, role, n, hours, observe_first):
        g = grant(
            scope=scope,
            role=role,
            principal=principal,
            request=f"requests/x/r{n}.yaml",
            end=self.now + timedelta(hours=hours),
        )
        if observe_first:
            self.provider.observe([scope], self.now)
        [result] = self.provider.apply(scope, [add(g)], self.now)
        if result.ok:
            self.held[scope][self._row(g)] = g

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def revoke_access(self, data):
        scope = data.draw(st.sampled_from([s for s in SCOPES if self.held[s]]))
        row = data.draw(st.sampled_from(sorted(self.held[scope], key=repr)))
        [result] = self.provider.apply(scope, [revoke(self.held[scope][row])], self.now)
        if result.ok:
            del self.held[scope][row]

    @rule(
        scope=st.sampled_from(SCOPES),
        status=st.sampled_from([429, 500, 503]),
        count=st.integers(1, 5),
        method=st.sampled_from([None, "get", "set"]),
    )
    def outage(self, scope, status, count, method):
        self.emulator.fail_next(scope, status=status, count=count, method=method)

    @rule(scope=st.sampled_from(SCOPES), count=st.integers(1, 5), member=st.integers(0, 99))
    def concurrent_writer(self, scope, count, member):
        def other_tool(policy: dict) -> None:
            binding = {"role": "roles/browser", "members": [f"user:tool{member}@example.com"]}
            policy.setdefault("bindings", []).append(binding)
            self.unmanaged[scope].append(binding)

        self.emulator.conflict_next(scope, count=count, mutate=other_tool)

    @rule(minutes=st.integers(1, 300))
    def clock_moves(self, minutes):
        self.now += timedelta(minutes=minutes)

    @invariant()
    def cloud_matches_what_succeeded(self):
        if not hasattr(self, "emulator"):
            return
        for scope in SCOPES:
            policy = self.emulator.get_policy(scope)
            assert managed_in(policy) == set(self.held[scope])
            assert unmanaged_in(policy) == self.unmanaged[scope]
            assert policy["auditConfigs"] == SEED["auditConfigs"]


ProviderMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestProviderMachine = ProviderMachine.TestCase
