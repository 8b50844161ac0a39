"""`status` judges requests on the branch by the policies at its tip, as plan/apply do;
`audit` keeps each version's verdict under its own commit's policies (it is history) and
flags a still-open version the tip's policies judge otherwise. Real git repos, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audit.conftest import GitRepo, audit_json, request_yaml, run_cli
from tests.e2e.independent_gcp import IndependentGcp

ALICE = "requests/alice/inc-4821.yaml"
AT = "2026-12-01T10:00:00Z"

GCP_POLICIES = """\
policies:
  - name: payments-db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [team:payments-oncall]
    approvers: [team:payments-leads]
    approvals: 1
    max_duration: {max_duration}
teams:
  payments-oncall: [alice, carol]
  payments-leads: [dave, erin]
identities:
  alice: {{gcp: 'user:alice@example.com'}}
  carol: {{gcp: 'user:carol@example.com'}}
providers:
  gcp: {{}}
"""


@pytest.fixture
def gcp() -> Iterator[IndependentGcp]:
    emu = IndependentGcp().start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "access")
    repo.commit(
        {"policies/access.yaml": GCP_POLICIES.format(max_duration="4h")},
        "2026-11-30T12:00:00Z",
        message="policies",
    )
    return repo


def status_rows(repo: GitRepo, at: str = AT) -> dict[str, dict]:
    proc = run_cli("status", "--repo", str(repo.root), "--format", "json", "--at", at)
    assert proc.returncode == 0, proc.stderr
    return {r["file"]: r for r in json.loads(proc.stdout)["requests"]}


def plan(repo: GitRepo, gcp: IndependentGcp, at: str = AT) -> dict:
    proc = run_cli(
        "plan", "--repo", str(repo.root), "--trust-git", "--format", "json", "--at", at,
        env={"ACCESSCTL_GCP_ENDPOINT": gcp.url},
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def test_tightened_max_duration_rejects_in_status_and_plan_but_audit_keeps_history(
    repo: GitRepo, gcp: IndependentGcp
) -> None:
    merge = repo.merge_pr(1, {ALICE: request_yaml(duration="3h")}, "2026-12-01T09:00:00Z")
    assert status_rows(repo)[ALICE]["state"] == "active"
    assert [g["request"] for g in plan(repo, gcp)["grant"]] == [ALICE]

    repo.commit(
        {"policies/access.yaml": GCP_POLICIES.format(max_duration="2h")},
        "2026-12-01T09:30:00Z",
        message="payments-db-read: at most 2h",
        author="erin",
    )

    row = status_rows(repo)[ALICE]
    assert row["state"] == "rejected"
    # the window is still the one the merge set; only the verdict changed
    assert (row["begin"], row["end"]) == ("2026-12-01T09:00:00Z", "2026-12-01T12:00:00Z")
    text = run_cli("status", "--repo", str(repo.root), "--at", AT)
    assert text.returncode == 0, text.stderr
    assert "rejected" in text.stdout
    assert "! refused: under the current policies:" in text.stdout
    assert "2h" in text.stdout.split("under the current policies:")[1].splitlines()[0]

    planned = plan(repo, gcp)
    assert planned["grant"] == []
    assert any(e.get("file") == ALICE for e in planned["errors"]), planned["errors"]

    # audit is history: the version stays active under the policies it was merged under,
    # with its window, and says the tip's policies refuse it now
    [entry] = [e for e in audit_json(repo, at=AT) if e["file"] == ALICE]
    assert entry["commit"] == merge
    assert entry["state"] == "active"
    assert entry["approved_at"] == "2026-12-01T09:00:00Z"
    assert (entry["begin"], entry["end"]) == ("2026-12-01T09:00:00Z", "2026-12-01T12:00:00Z")
    assert any(
        a["code"] == "policy-changed"
        and a["message"].startswith("refused under the current policies:")
        for a in entry["anomalies"]
    )


def test_removed_requester_is_rejected_at_once_and_a_loosened_policy_allows(
    repo: GitRepo,
) -> None:
    repo.merge_pr(1, {ALICE: request_yaml(duration="3h")}, "2026-12-01T09:00:00Z")
    repo.merge_pr(
        2, {"requests/carol/long.yaml": request_yaml("carol", duration="6h")},
        "2026-12-01T09:00:00Z", author="carol",
    )  # fmt: skip
    before = status_rows(repo)
    assert before[ALICE]["state"] == "active"
    assert before["requests/carol/long.yaml"]["state"] == "rejected"  # 6h > 4h

    loosened = GCP_POLICIES.format(max_duration="8h").replace(
        "payments-oncall: [alice, carol]", "payments-oncall: [carol]"
    )
    repo.commit({"policies/access.yaml": loosened}, "2026-12-01T09:30:00Z", author="erin")

    after = status_rows(repo)
    assert after[ALICE]["state"] == "rejected"  # alice left the team
    assert after["requests/carol/long.yaml"]["state"] == "active"  # 6h is allowed now

    entries = {e["file"]: e for e in audit_json(repo, at=AT)}
    assert entries[ALICE]["state"] == "active"
    assert entries["requests/carol/long.yaml"]["state"] == "rejected"
    assert any(
        a["code"] == "policy-changed" and a["message"].startswith("allowed under the current")
        for a in entries["requests/carol/long.yaml"]["anomalies"]
    )


def test_audit_leaves_ended_and_superseded_versions_alone(repo: GitRepo) -> None:
    carol = "requests/carol/old.yaml"
    repo.merge_pr(1, {ALICE: request_yaml(duration="3h")}, "2026-12-01T09:00:00Z")
    repo.merge_pr(2, {carol: request_yaml("carol", duration="3h")}, "2026-12-01T09:00:00Z")
    repo.merge_pr(3, {ALICE: request_yaml(duration="1h")}, "2026-12-01T09:10:00Z")
    repo.commit(
        {"policies/access.yaml": GCP_POLICIES.format(max_duration="2h")},
        "2026-12-01T09:30:00Z",
        author="erin",
    )

    def flagged(at: str) -> set[tuple[str, str]]:
        return {
            (e["file"], e["commit"][:7])
            for e in audit_json(repo, at=at)
            if any(a["code"] == "policy-changed" for a in e["anomalies"])
        }

    # the superseded 3h version of alice's file is history only; her 1h version is allowed
    # either way; carol's 3h version is still open and refused by the tip's policies
    assert {f for f, _ in flagged(AT)} == {carol}
    assert status_rows(repo)[ALICE]["state"] == "active"
    assert status_rows(repo)[carol]["state"] == "rejected"
    # once its window is over the policies of today change nothing about it
    assert flagged("2026-12-02T00:00:00Z") == set()
