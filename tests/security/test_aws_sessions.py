"""Revoked means revoked on AWS, through `accessctl apply` as a user runs it: when a window
ends, the sessions its assignment issued are denied in the owned permission set's inline
policy until they have all expired; nothing else in any inline policy moves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import GitRepo, Result, run_cli

A, B = "111111111111", "222222222222"
ALICE, BOB = "alice@example.com", "bob@example.com"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
WRITES = (
    "PutInlinePolicyToPermissionSet",
    "DeleteInlinePolicyFromPermissionSet",
    "ProvisionPermissionSet",
)
ADMIN = """{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "OncallReads", "Effect": "Allow", "Action": "logs:Get*", "Resource": "*"}
  ]
}
"""
BREAKGLASS = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as box:
        yield box


@pytest.fixture
def seeded(sandbox: AwsSandbox) -> SeededInstance:
    sandbox.reset()
    seeded = sandbox.seed(
        users=[ALICE, BOB],
        permission_sets={"ReadOnly": "PT1H", "Admin": "PT8H", "BreakGlass": "PT1H"},
    )
    sandbox.put_inline_policy(seeded, "ReadOnly", ADMIN)
    sandbox.put_inline_policy(seeded, "BreakGlass", BREAKGLASS)
    return seeded


def policy(seeded: SeededInstance) -> str:
    s = seeded.provider_settings()
    return f"""\
policies:
  - name: aws-oncall
    provider: aws
    scopes: ['{A}', '{B}']
    roles: [ReadOnly, Admin]
    requesters: [alice, bob]
    approvers: [erin]
    approvals: 0
    max_duration: 8h
identities:
  alice: {{aws: {ALICE}}}
  bob: {{aws: {BOB}}}
providers:
  aws: {{instance_arn: "{s["instance_arn"]}", identity_store_id: {s["identity_store_id"]}, region: {s["region"]}}}
"""


def req(account: str = A, login: str = "alice", duration: str = "2h") -> str:
    return (
        f"requester: {login}\nprovider: aws\nscope: '{account}'\nrole: ReadOnly\n"
        f"reason: Investigate INC-4821, slow checkout\nduration: {duration}\n"
    )


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def repo(tmp_path: Path, seeded: SeededInstance) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"policies/p.yaml": policy(seeded)}, "policies", date=T0 - 24 * 60 * M)
    return repo


def apply(sandbox: AwsSandbox, repo: GitRepo, at: datetime) -> Result:
    sandbox.faults.calls.clear()
    env = {**sandbox.env(), "GITHUB_TOKEN": "", "GITHUB_REPOSITORY": ""}
    args = ["apply", "--repo", str(repo.root), "--trust-git", "--no-ledger", "--format", "json"]
    return run_cli(*args, "--at", stamp(at), env=env, timeout=120)


def denies(sandbox: AwsSandbox, seeded: SeededInstance) -> list[dict]:
    statements = json.loads(sandbox.inline_policy(seeded, "ReadOnly"))["Statement"]
    return [s for s in statements if s.get("Sid", "").startswith("AccessctlRevoke")]


def writes(sandbox: AwsSandbox) -> dict[str, int]:
    return {op: n for op, n in sandbox.faults.calls.items() if op in WRITES}


def test_expiry_denies_the_users_sessions_and_a_regrant_is_not_blocked(
    sandbox: AwsSandbox, seeded: SeededInstance, repo: GitRepo
) -> None:
    repo.commit({"requests/alice/inc-1.yaml": req()}, "alice: ReadOnly", date=T0)
    assert apply(sandbox, repo, T0 + 10 * M).code == 0
    assert sandbox.assignments(seeded, A) == {("ReadOnly", "USER", ALICE)}

    revoked_at = T0 + 125 * M  # the 2h window ended at T0 + 2h
    result = apply(sandbox, repo, revoked_at)
    assert result.code == 0, result.stdout + result.stderr
    [revoke] = result.json["results"]
    assert revoke["action"] == "revoke" and revoke["ok"], revoke
    assert f"sessions issued before {stamp(revoked_at)} denied" in revoke["message"]
    assert sandbox.assignments(seeded, A) == set()
    [statement] = denies(sandbox, seeded)
    assert statement["Effect"] == "Deny"
    assert statement["Action"] == statement["Resource"] == "*"
    assert statement["Condition"] == {
        "StringEquals": {"identitystore:userId": [seeded.users[ALICE]]},
        "DateLessThan": {"aws:TokenIssueTime": stamp(revoked_at)},
    }
    text = sandbox.inline_policy(seeded, "ReadOnly")
    assert (
        '{"Sid": "OncallReads", "Effect": "Allow", "Action": "logs:Get*", "Resource": "*"}' in text
    )
    assert json.loads(text)["Statement"][0]["Sid"] == "OncallReads"
    assert sandbox.inline_policy(seeded, "BreakGlass") == BREAKGLASS  # not accessctl's
    assert sandbox.inline_policy(seeded, "Admin") == ""  # accessctl's, nothing revoked there
    arns = {s["PermissionSetArn"] for s in sandbox.provisioning.statuses()}
    assert arns == {seeded.permission_sets["ReadOnly"]}

    # A new request after the revocation: its sessions are issued later, so not denied.
    regranted_at = revoked_at + 20 * M
    repo.commit({"requests/alice/inc-2.yaml": req()}, "alice: again", date=regranted_at - M)
    again = apply(sandbox, repo, regranted_at)
    assert again.code == 0, again.stdout
    assert sandbox.assignments(seeded, A) == {("ReadOnly", "USER", ALICE)}
    [statement] = denies(sandbox, seeded)
    assert statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"] == stamp(revoked_at)
    assert revoked_at < regranted_at

    idle = apply(sandbox, repo, regranted_at + 10 * M)
    assert idle.code == 0 and idle.json["grant"] == idle.json["revoke"] == []
    assert writes(sandbox) == {}
    assert sandbox.faults.calls["GetInlinePolicyForPermissionSet"] == 2  # one per owned set


def test_the_next_write_after_the_horizon_removes_an_expired_deny(
    sandbox: AwsSandbox, seeded: SeededInstance, repo: GitRepo
) -> None:
    repo.commit(
        {"requests/alice/inc-1.yaml": req(duration="1h"), "requests/bob/inc-1.yaml": req(B, "bob")},
        "alice and bob",
        date=T0,
    )
    assert apply(sandbox, repo, T0 + 5 * M).code == 0
    assert apply(sandbox, repo, T0 + 65 * M).code == 0  # alice's window ended
    assert len(denies(sandbox, seeded)) == 1
    before_horizon = apply(sandbox, repo, T0 + 115 * M)  # ReadOnly: PT1H
    assert before_horizon.code == 0 and writes(sandbox) == {}
    bob_gone = apply(sandbox, repo, T0 + 125 * M)  # bob's 2h ended; alice's deny expired
    assert bob_gone.code == 0, bob_gone.stdout
    [statement] = denies(sandbox, seeded)
    assert statement["Condition"]["StringEquals"]["identitystore:userId"] == [seeded.users[BOB]]


def test_an_idle_apply_after_the_horizon_removes_the_deny(
    sandbox: AwsSandbox, seeded: SeededInstance, repo: GitRepo
) -> None:
    repo.commit({"requests/alice/inc-1.yaml": req(duration="1h")}, "alice", date=T0)
    assert apply(sandbox, repo, T0 + 5 * M).code == 0
    assert apply(sandbox, repo, T0 + 65 * M).code == 0
    assert len(denies(sandbox, seeded)) == 1
    assert apply(sandbox, repo, T0 + 124 * M).code == 0
    assert writes(sandbox) == {}
    cleaned = apply(sandbox, repo, T0 + 125 * M)
    assert cleaned.code == 0, cleaned.stdout
    assert sandbox.inline_policy(seeded, "ReadOnly") == ADMIN  # byte for byte
    assert apply(sandbox, repo, T0 + 135 * M).code == 0
    assert writes(sandbox) == {}


def test_a_failed_provisioning_fails_the_apply_with_aws_reason(
    sandbox: AwsSandbox, seeded: SeededInstance, repo: GitRepo
) -> None:
    repo.commit({"requests/alice/inc-1.yaml": req(duration="1h")}, "alice", date=T0)
    assert apply(sandbox, repo, T0 + 5 * M).code == 0
    reason = "Received a 409 status error: another operation is in progress in 111111111111"
    sandbox.faults.fail_provisioning(reason)
    result = apply(sandbox, repo, T0 + 65 * M)
    assert result.code == 1, result.stdout
    [revoke] = result.json["results"]
    assert not revoke["ok"] and reason in revoke["message"]
    assert sandbox.assignments(seeded, A) == set()
