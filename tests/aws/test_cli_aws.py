"""`accessctl apply --trust-git` end to end on AWS: real git repos, moto in server mode
through AWS_ENDPOINT_URL, assertions on exit codes, output and what Identity Center holds."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.core.timeutil import format_rfc3339
from reconciler.sandbox.aws import AwsSandbox, SeededInstance
from tests.reconcile.conftest import T0, CliResult, GitRepo, H

from .conftest import ALICE, BOB, CAROL

A, B, C = "111111111111", "222222222222", "333333333333"


def policy_yaml(seeded: SeededInstance) -> str:
    settings = seeded.provider_settings()
    return f"""\
policies:
  - name: aws-oncall
    description: Inspect production accounts while on call
    provider: aws
    scopes: ['1111*', '{B}', '{C}']
    roles: [ReadOnly, Admin]
    requesters: [team:oncall]
    approvers: [team:leads]
    approvals: 0
    max_duration: 8h
teams:
  oncall: [alice, bob, carol, dave]
  leads: [erin]
identities:
  alice: {{aws: {ALICE}}}
  bob: {{aws: {BOB}}}
  carol: {{aws: {CAROL}}}
  dave: {{aws: dave@example.com}}
providers:
  aws:
    instance_arn: {settings["instance_arn"]}
    identity_store_id: {settings["identity_store_id"]}
    region: {settings["region"]}
"""


def request_yaml(
    requester: str = "alice", account: str = A, role: str = "ReadOnly", duration: str = "2h"
) -> str:
    return (
        f"requester: {requester}\nprovider: aws\nscope: '{account}'\nrole: {role}\n"
        f"reason: Investigate INC-4821, slow checkout queries\nduration: {duration}\n"
    )


@pytest.fixture
def repo(tmp_path: Path, seeded: SeededInstance) -> GitRepo:
    repo = GitRepo(tmp_path / "access")
    repo.write("policies/access.yaml", policy_yaml(seeded))
    repo.write("requests/README.md", "One file per request.\n")
    repo.commit("policies", at=T0 - 24 * H)
    return repo


Run = Callable[..., CliResult]


@pytest.fixture
def run(repo: GitRepo, aws: AwsSandbox) -> Run:
    def run(*args: str, at: datetime) -> CliResult:
        argv = [*args, "--trust-git", "--no-ledger", "--repo", str(repo.root)]
        argv += ["--at", format_rfc3339(at), "--format", "json"]
        env = {"GITHUB_TOKEN": None, "GITHUB_REPOSITORY": None, "ACCESSCTL_NOW": None}
        result = CliRunner().invoke(cli, argv, env=env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


def holds(aws: AwsSandbox, seeded: SeededInstance, account: str) -> set[tuple[str, str, str]]:
    return aws.assignments(seeded, account)


def test_grant_then_idempotent_rerun(run: Run, repo: GitRepo, aws: AwsSandbox, seeded) -> None:
    repo.write("requests/alice/inc-4821.yaml", request_yaml())
    repo.commit("alice: ReadOnly", at=T0)
    first = run("apply", at=T0 + H / 6)
    assert first.exit_code == 0, first.output
    assert [r["ok"] for r in first.json()["results"]] == [True]
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE)}

    second = run("apply", at=T0 + H / 3)
    assert second.exit_code == 0, second.output
    payload = second.json()
    assert payload["grant"] == payload["revoke"] == []
    assert [g["principal"] for g in payload["keep"]] == [ALICE]
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE)}


def test_expiry_and_early_revoke(run: Run, repo: GitRepo, aws: AwsSandbox, seeded) -> None:
    repo.write("requests/alice/short.yaml", request_yaml(duration="1h"))
    repo.write("requests/bob/long.yaml", request_yaml("bob", account=B, duration="6h"))
    repo.commit("two requests", at=T0)
    assert run("apply", at=T0 + H / 2).exit_code == 0
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE)}
    assert holds(aws, seeded, B) == {("ReadOnly", "USER", BOB)}

    expired = run("apply", at=T0 + 2 * H)
    assert expired.exit_code == 0, expired.output
    assert holds(aws, seeded, A) == set()
    assert holds(aws, seeded, B) == {("ReadOnly", "USER", BOB)}
    # The assignment carries no request, yet the revoke names the one that expired.
    [gone] = expired.json()["revoke"]
    assert gone["request"] == "requests/alice/short.yaml"

    repo.remove("requests/bob/long.yaml")
    repo.commit("bob: done early", at=T0 + 3 * H)
    early = run("apply", at=T0 + 3 * H)
    assert early.exit_code == 0, early.output
    assert holds(aws, seeded, B) == set()


def test_overlapping_requests_keep_the_assignment_until_the_last_ends(
    run: Run, repo: GitRepo, aws: AwsSandbox, seeded
) -> None:
    repo.write("requests/alice/first.yaml", request_yaml(duration="1h"))
    repo.write("requests/alice/second.yaml", request_yaml(duration="4h"))
    repo.commit("overlapping", at=T0)
    assert run("apply", at=T0 + H / 2).exit_code == 0
    after_first = run("apply", at=T0 + 2 * H)
    assert after_first.exit_code == 0, after_first.output
    assert after_first.json()["revoke"] == []
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE)}
    after_both = run("apply", at=T0 + 5 * H)
    assert after_both.exit_code == 0, after_both.output
    assert holds(aws, seeded, A) == set()


def test_only_owned_user_assignments_are_revoked(
    run: Run, repo: GitRepo, aws: AwsSandbox, seeded
) -> None:
    aws.assign(seeded, A, "BreakGlass", ALICE)  # permission set no policy names
    aws.assign(seeded, B, "ReadOnly", "ops")  # a group holding an owned permission set
    aws.assign(seeded, C, "Admin", CAROL)  # owned, no request: revoked
    aws.assign(seeded, "111100000000", "ReadOnly", BOB)  # owned, only a glob covers it
    result = run("apply", at=T0)
    assert result.exit_code == 0, result.output
    revoked = sorted((g["scope"], g["principal"]) for g in result.json()["revoke"])
    assert revoked == [("111100000000", BOB), (C, CAROL)]
    assert holds(aws, seeded, A) == {("BreakGlass", "USER", ALICE)}
    assert holds(aws, seeded, B) == {("ReadOnly", "GROUP", "ops")}
    assert holds(aws, seeded, C) == set()
    assert holds(aws, seeded, "111100000000") == set()


def test_unknown_user_fails_its_request_only(
    run: Run, repo: GitRepo, aws: AwsSandbox, seeded
) -> None:
    repo.write("requests/dave/inc-1.yaml", request_yaml("dave"))
    repo.write("requests/alice/inc-1.yaml", request_yaml())
    repo.commit("dave and alice", at=T0)
    result = run("apply", at=T0 + H)
    assert result.exit_code == 1, result.output
    failed = [r for r in result.json()["results"] if not r["ok"]]
    assert len(failed) == 1
    assert "dave@example.com" in json.dumps(failed)
    assert "not found" in json.dumps(failed)
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE)}


def test_one_failing_account_while_others_converge(
    run: Run, repo: GitRepo, aws: AwsSandbox, seeded
) -> None:
    aws.faults.deny_account(B)
    repo.write("requests/alice/inc-1.yaml", request_yaml())
    repo.write("requests/bob/inc-1.yaml", request_yaml("bob", account=B))
    repo.commit("two accounts", at=T0)
    result = run("apply", at=T0 + H)
    assert result.exit_code == 1, result.output
    assert B in result.stdout and "AccessDeniedException" in result.stdout
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE)}
    aws.faults.clear()
    healed = run("apply", at=T0 + H)
    assert healed.exit_code == 0, healed.output
    assert holds(aws, seeded, B) == {("ReadOnly", "USER", BOB)}


def test_failed_creation_is_reported_with_aws_reason(
    run: Run, repo: GitRepo, aws: AwsSandbox, seeded
) -> None:
    aws.faults.fail_creations(C, "Received a 404 status error: Not supported account")
    aws.faults.slow(1)
    repo.write("requests/carol/inc-1.yaml", request_yaml("carol", account=C))
    repo.write("requests/alice/inc-1.yaml", request_yaml())
    repo.commit("carol and alice", at=T0)
    result = run("apply", at=T0 + H)
    assert result.exit_code == 1, result.output
    failed = [r for r in result.json()["results"] if not r["ok"]]
    assert len(failed) == 1 and "Not supported account" in json.dumps(failed)
    assert holds(aws, seeded, C) == set()
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE)}


def _no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_emulator_needs_no_credentials(
    run: Run, repo: GitRepo, aws: AwsSandbox, seeded, monkeypatch, tmp_path: Path
) -> None:
    _no_credentials(monkeypatch, tmp_path)
    repo.write("requests/alice/inc-1.yaml", request_yaml())
    repo.commit("alice", at=T0)
    result = run("apply", at=T0 + H)
    assert result.exit_code == 0, result.output
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE)}


def test_real_aws_without_credentials_is_a_configuration_error(
    run: Run, repo: GitRepo, aws: AwsSandbox, seeded, monkeypatch, tmp_path: Path
) -> None:
    _no_credentials(monkeypatch, tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    repo.write("requests/alice/inc-1.yaml", request_yaml())
    repo.commit("alice", at=T0)
    result = run("apply", at=T0 + H)
    assert result.exit_code == 2, result.output
    assert "no AWS credentials" in result.stderr
    assert "Traceback" not in result.output


def test_unreadable_session_duration_does_not_stop_the_account(
    run: Run, repo: GitRepo, aws: AwsSandbox, seeded
) -> None:
    """A field the decision does not need (SessionDuration) never makes an account
    unreadable: a malformed one and a missing one (moto: 3600) are both managed."""
    sso = aws.client("sso-admin")
    sso.update_permission_set(
        InstanceArn=seeded.instance_arn,
        PermissionSetArn=seeded.permission_sets["ReadOnly"],
        SessionDuration="banana",
    )
    sso.delete_permission_set(
        InstanceArn=seeded.instance_arn, PermissionSetArn=seeded.permission_sets["Admin"]
    )
    seeded.permission_sets["Admin"] = sso.create_permission_set(
        InstanceArn=seeded.instance_arn, Name="Admin"
    )["PermissionSet"]["PermissionSetArn"]
    aws.assign(seeded, A, "ReadOnly", BOB)  # standing: revoked
    repo.write("requests/alice/inc-1.yaml", request_yaml())
    repo.write("requests/carol/inc-1.yaml", request_yaml("carol", role="Admin"))
    repo.commit("alice and carol", at=T0)
    result = run("apply", at=T0 + H)
    assert result.exit_code == 0, result.output
    assert holds(aws, seeded, A) == {("ReadOnly", "USER", ALICE), ("Admin", "USER", CAROL)}
