"""The emergency stop: a `suspended` entry in the policies revokes every grant accessctl
manages for that person on both clouds in one apply (its refusals are notes, not
failures), pr-check refuses their new requests naming the reason, and status shows them
suspended. Real git, the GCP emulator, moto behind the AWS sandbox, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox.aws import AwsSandbox, SeededInstance
from reconciler.sandbox.gcp_emulator import GcpEmulator
from tests.support.emulators import running_gcp

from .conftest import REPO, GitRepo, World, request, run_cli

A = "111111111111"
PROJECT = "projects/payments-prod"
ALICE_AWS = "alice@example.com"


def policy(seeded: SeededInstance, suspended: str = "") -> str:
    s = seeded.provider_settings()
    return f"""\
policies:
  - name: gcp-read
    provider: gcp
    scopes: [{PROJECT}]
    roles: [roles/cloudsql.viewer]
    requesters: [team:oncall]
    approvers: [dave]
    approvals: 0
    max_duration: 8h
  - name: aws-read
    provider: aws
    scopes: ['{A}']
    roles: [ReadOnly]
    requesters: [team:oncall]
    approvers: [dave]
    approvals: 0
    max_duration: 8h
teams:
  oncall: [alice, bob]
  incident: [alice]
identities:
  alice: {{gcp: "user:alice@example.com", aws: {ALICE_AWS}}}
  bob: {{gcp: "user:bob@example.com"}}
{suspended}providers:
  gcp: {{}}
  aws: {{instance_arn: "{s["instance_arn"]}", identity_store_id: {s["identity_store_id"]}, region: {s["region"]}}}
"""


def requests(login: str) -> dict[str, str]:
    gcp = (
        f"requester: {login}\nprovider: gcp\nscope: {PROJECT}\nrole: roles/cloudsql.viewer\n"
        "reason: Investigate INC-4821, slow checkout\nduration: 8h\n"
    )
    aws = (
        f"requester: {login}\nprovider: aws\nscope: '{A}'\nrole: ReadOnly\n"
        "reason: Investigate INC-4821, slow checkout\nduration: 8h\n"
    )
    return {f"requests/{login}/db.yaml": gcp, f"requests/{login}/aws.yaml": aws}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as box:
        yield box


@pytest.fixture
def seeded(sandbox: AwsSandbox) -> SeededInstance:
    sandbox.reset()
    return sandbox.seed(users=[ALICE_AWS], permission_sets={"ReadOnly": "PT1H"})


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(PROJECT) as emu:
        yield emu


def env(sandbox: AwsSandbox, gcp: GcpEmulator) -> dict[str, str]:
    return {**sandbox.env(), "ACCESSCTL_GCP_ENDPOINT": gcp.url}


def apply(repo: GitRepo, sandbox: AwsSandbox, gcp: GcpEmulator):
    args = ["apply", "--repo", str(repo.root), "--trust-git", "--no-ledger", "--format", "json"]
    return run_cli(*args, env=env(sandbox, gcp))


def members(gcp: GcpEmulator) -> set[str]:
    return {m for b in gcp.get_policy(PROJECT).get("bindings", []) for m in b["members"]}


@pytest.mark.parametrize("who", ["alice", "team:incident"])
def test_a_suspended_person_loses_every_grant_on_both_clouds_in_one_apply(
    tmp_path: Path, sandbox: AwsSandbox, seeded: SeededInstance, gcp: GcpEmulator, who: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    bob_db = {"requests/bob/db.yaml": requests("bob")["requests/bob/db.yaml"]}
    repo.commit({"policies/p.yaml": policy(seeded), **requests("alice"), **bob_db})
    first = apply(repo, sandbox, gcp)
    assert first.code == 0, first.stdout + first.stderr
    assert members(gcp) == {"user:alice@example.com", "user:bob@example.com"}
    assert sandbox.assignments(seeded, A) == {("ReadOnly", "USER", ALICE_AWS)}

    stop = f"suspended:\n  - who: '{who}'\n    reason: laptop stolen, SEC-123\n"
    repo.commit({"policies/p.yaml": policy(seeded, stop)}, "emergency stop")
    result = apply(repo, sandbox, gcp)

    assert result.code == 0, result.stdout + result.stderr  # intended outcome: notes only
    assert members(gcp) == {"user:bob@example.com"}  # bob is untouched
    assert sandbox.assignments(seeded, A) == set()
    assert "note: " in result.stderr and "laptop stolen, SEC-123" in result.stderr
    assert result.json["errors"] == []
    revoked = {(g["provider"], g["principal"]) for g in result.json["revoke"]}
    assert revoked == {("gcp", "user:alice@example.com"), ("aws", ALICE_AWS)}

    status = run_cli("status", "--repo", str(repo.root), "--trust-git", "--format", "json")
    states = {r["file"]: r["state"] for r in json.loads(status.stdout)["requests"]}
    assert states["requests/alice/db.yaml"] == "suspended"
    assert states["requests/bob/db.yaml"] == "active"


def test_a_suspension_naming_an_unknown_team_stops_the_run(
    tmp_path: Path, sandbox: AwsSandbox, seeded: SeededInstance, gcp: GcpEmulator
) -> None:
    """An emergency stop that would stop nobody is a configuration error, not silence."""
    stop = "suspended:\n  - who: 'team:nobody'\n    reason: typo in the team name\n"
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"policies/p.yaml": policy(seeded, stop)})
    result = apply(repo, sandbox, gcp)
    assert result.code == 2
    assert "E-CONFIG-UNKNOWN-TEAM" in result.stderr


def test_pr_check_refuses_a_suspended_persons_new_request(world: World) -> None:
    stop = "suspended:\n  - who: alice\n    reason: under investigation, SEC-9\n"
    base = world.repo.git("show", "HEAD:policies/p.yaml")
    world.repo.commit({"policies/p.yaml": base.rstrip("\n") + "\n" + stop}, "stop alice")
    number, _ = world.open_pr({"requests/alice/inc-1.yaml": request()})
    world.github.add_review(REPO, number, "dave", "APPROVED")
    result = world.pr_check(number, "--format", "json")
    assert result.code == 1
    codes = {f["code"]: f["message"] for f in result.json["findings"]}
    assert "E-SUSPENDED" in codes and "under investigation, SEC-9" in codes["E-SUSPENDED"]
