"""A Hypothesis state machine over the whole reconciler (SPEC §7.1, §7.2).

Rules add, edit and delete request files (real commits in a real git repo), move the clock,
inject faults into the GCP emulator (transient errors, outages, concurrent writers) and run
``apply``. After every apply, in every scope that did not fail, the managed bindings are
exactly the allowed in-window requests (computed here from the model, independently of the
code under test), and every binding accessctl does not manage is as the other writers left it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from reconciler import app
from reconciler.core.timeutil import format_rfc3339
from reconciler.sandbox.gcp_emulator import GcpEmulator
from tests.support.titles import title

from .conftest import DEPLOYMENT, POLICY, PROJECTS, T0, GitRepo, request_yaml

ALLOWED = {"alice", "bob", "carol"}
MAX = timedelta(hours=8)
ROLES = ("roles/cloudsql.viewer", "roles/logging.viewer")
_END = re.compile(r'request\.time < timestamp\("([^"]+)"\)')
FAST = {"backoff_base": 0.001, "backoff_max": 0.004, "attempts": 5}


@dataclass
class Req:
    requester: str
    scope: str
    role: str
    duration: timedelta
    start_offset: timedelta | None
    committed_at: datetime
    valid: bool = True

    def window(self) -> tuple[datetime, datetime]:
        begin = self.committed_at
        if self.start_offset is not None:
            begin = max(begin, T0 + self.start_offset)
        return begin, begin + self.duration


def _text(r: Req) -> str:
    minutes = int(r.duration.total_seconds() // 60)
    start = T0 + r.start_offset if r.start_offset is not None else None
    body = request_yaml(r.requester, r.scope, r.role, f"{minutes}m", start=start)
    return body if r.valid else body + "colour: blue\n"


class Reconciler(RuleBasedStateMachine):
    paths = Bundle("paths")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="accessctl-sm-"))
        self.repo = GitRepo(self.tmp / "access")
        self.now = T0
        self.repo.write("policies/access.yaml", POLICY)
        self.repo.commit("policies", at=self.now - timedelta(days=1))
        self.emu = GcpEmulator(port=0).start()
        self.foreign: dict[str, list[dict]] = {}
        for i, scope in enumerate(PROJECTS):
            bindings = [
                {"role": "roles/browser", "members": [f"user:ops{i}@example.com"]},
                {
                    "role": "roles/cloudsql.viewer",
                    "members": ["user:alice@example.com"],
                    "condition": {
                        "title": "breakglass",
                        "expression": 'request.time < timestamp("2030-01-01T00:00:00Z")',
                    },
                },
            ]
            self.emu.add_resource(scope, {"bindings": bindings})
            self.foreign[scope] = self._unmanaged(scope)
        self.requests: dict[str, Req] = {}
        self.counter = 0
        self.down: set[str] = set()
        self.transient: dict[str, int] = dict.fromkeys(PROJECTS, 0)

    def teardown(self) -> None:
        self.emu.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the world ----------------------------------------------------------------------

    def _unmanaged(self, scope: str) -> list[dict]:
        return [
            b
            for b in self.emu.get_policy(scope).get("bindings", [])
            if not b.get("condition", {}).get("title", "").startswith("accessctl:")
        ]

    def _managed(self, scope: str) -> set[tuple[str, str, str, str]]:
        out = set()
        for b in self.emu.get_policy(scope).get("bindings", []):
            cond = b.get("condition", {})
            if not cond.get("title", "").startswith("accessctl:"):
                continue
            end = _END.search(cond["expression"])
            for member in b["members"]:
                out.add((b["role"], member, cond["title"], end and end[1]))
        return out

    def _expected(self, scope: str) -> set[tuple[str, str, str, str]]:
        out = set()
        for path, r in self.requests.items():
            if r.scope != scope or not r.valid or r.requester not in ALLOWED:
                continue
            begin, end = r.window()
            if end - begin > MAX or end <= self.now:
                continue
            member = f"user:{r.requester}@example.com"
            out.add((r.role, member, title(path, DEPLOYMENT), format_rfc3339(end)))
        return out

    # -- rules --------------------------------------------------------------------------

    @rule(
        target=paths,
        requester=st.sampled_from(["alice", "bob", "carol", "eve"]),
        scope=st.sampled_from(PROJECTS),
        role=st.sampled_from(ROLES),
        minutes=st.sampled_from([30, 120, 600]),
        start=st.sampled_from([None, -1, 1, 3]),
        valid=st.booleans().map(lambda b: b or False) | st.just(True),
    )
    def add_request(self, requester, scope, role, minutes, start, valid):
        self.counter += 1
        path = f"requests/{requester}/r-{self.counter}.yaml"
        offset = None if start is None else (self.now - T0) + timedelta(hours=start)
        r = Req(requester, scope, role, timedelta(minutes=minutes), offset, self.now, valid)
        self.requests[path] = r
        self.repo.write(path, _text(r))
        self.repo.commit(f"add {path}", at=self.now)
        return path

    @rule(path=paths, scope=st.sampled_from(PROJECTS), minutes=st.sampled_from([60, 240]))
    def edit_request(self, path, scope, minutes):
        if path not in self.requests:
            return
        r = self.requests[path]
        r.scope, r.duration, r.committed_at = scope, timedelta(minutes=minutes), self.now
        self.repo.write(path, _text(r))
        self.repo.commit(f"edit {path}", at=self.now)

    @rule(path=consumes(paths))
    def delete_request(self, path):
        if path not in self.requests:
            return
        del self.requests[path]
        self.repo.remove(path)
        self.repo.commit(f"delete {path}", at=self.now)

    @rule(minutes=st.sampled_from([10, 50, 130, 400]))
    def move_clock(self, minutes):
        self.now += timedelta(minutes=minutes)

    @rule(scope=st.sampled_from(PROJECTS), status=st.sampled_from([429, 500, 503]))
    def transient_error(self, scope, status):
        # At most two pending per scope: fewer than the provider's attempts, so the
        # retries must absorb them.
        if self.transient[scope] < 2:
            self.emu.fail_next(scope, status=status, count=1)
            self.transient[scope] += 1

    @rule(scope=st.sampled_from(PROJECTS))
    def outage(self, scope):
        self.emu.fail_next(scope, status=503, count=None)
        self.down.add(scope)

    @precondition(lambda self: self.down)
    @rule()
    def heal(self):
        for scope in self.down:
            self.emu.heal(scope)
            self.transient[scope] = 0
        self.down.clear()

    @rule(scope=st.sampled_from(PROJECTS))
    def concurrent_writer(self, scope):
        n = self.counter = self.counter + 1

        def mutate(policy: dict) -> dict:
            extra = {"role": "roles/browser", "members": [f"user:writer{n}@example.com"]}
            policy.setdefault("bindings", []).append(extra)
            self.foreign[scope] = [*self.foreign[scope], extra]
            return policy

        self.emu.conflict_next(scope, count=1, mutate=mutate)

    @rule()
    def apply(self):
        settings_ = app.Settings(
            repo=self.repo.root,
            now=self.now,
            trust_git=True,
            apply=True,
            ledger=False,
            env={},  # no GITHUB_REPOSITORY from the runner: the "default" deployment
            provider_options={**FAST, "endpoint": self.emu.url},
        )
        outcome = app.reconcile(settings_)
        failed = {scope for (_, scope) in outcome.failed_scopes}
        failed |= {r.change.grant.scope for r in outcome.results if not r.ok}
        assert failed <= self.down, (failed, self.down, outcome.results)
        for scope in PROJECTS:
            if scope in self.down:
                continue
            self.transient[scope] = 0  # every pending fault was consumed by the retries
            assert self._managed(scope) == self._expected(scope), scope

    @invariant()
    def unmanaged_bindings_untouched(self):
        for scope in PROJECTS:
            assert self._unmanaged(scope) == self.foreign[scope], scope


Reconciler.TestCase.settings = settings(
    max_examples=15,
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestReconciler = Reconciler.TestCase
