"""`accessctl doctor` against moto in server mode: what a person sees, and the exit code."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import ALICE, BOB


def write_policies(
    root: Path,
    seeded: SeededInstance,
    *,
    roles: str = "[ReadOnly]",
    max_duration: str = "4h",
    instance_arn: str | None = None,
    extra_identity: str = "",
) -> Path:
    settings = seeded.provider_settings()
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "access.yaml").write_text(
        f"""\
policies:
  - name: aws-oncall
    provider: aws
    scopes: ['111111111111']
    roles: {roles}
    requesters: [alice, bob]
    approvers: [erin]
    approvals: 0
    max_duration: {max_duration}
identities:
  alice: {{aws: {ALICE}}}
  bob: {{aws: {BOB}}}
{extra_identity}providers:
  aws:
    instance_arn: {instance_arn or settings["instance_arn"]}
    identity_store_id: {settings["identity_store_id"]}
    region: {settings["region"]}
""",
        encoding="utf-8",
    )
    return root


def doctor(root: Path, *args: str):
    return CliRunner().invoke(cli, ["doctor", "--repo", str(root), *args], catch_exceptions=False)


def test_healthy_setup_exits_0(tmp_path: Path, aws: AwsSandbox, seeded: SeededInstance) -> None:
    result = doctor(write_policies(tmp_path, seeded))
    assert result.exit_code == 0, result.output
    assert "OK: aws" in result.output


def test_session_longer_than_max_duration_is_a_warning(
    tmp_path: Path, aws: AwsSandbox, seeded: SeededInstance
) -> None:
    root = write_policies(tmp_path, seeded, roles="[ReadOnly, Admin]")  # Admin: PT8H
    result = doctor(root)
    assert result.exit_code == 1, result.output
    assert "warning: policies/access.yaml:2: W-AWS-SESSION-OUTLIVES" in result.output
    assert "'Admin' issues sessions of 8h" in result.output
    assert "max_duration 4h" in result.output
    assert "ReadOnly" not in result.output  # PT1H fits in 4h
    relaxed = tmp_path / "relaxed"
    assert (
        doctor(write_policies(relaxed, seeded, roles="[Admin]", max_duration="8h")).exit_code == 0
    )


def test_missing_permission_set_and_unknown_user_point_at_their_lines(
    tmp_path: Path, aws: AwsSandbox, seeded: SeededInstance
) -> None:
    root = write_policies(
        tmp_path,
        seeded,
        roles="[ReadOnly, Ghost]",
        extra_identity="  dave: {aws: dave@example.com}\n",
    )
    result = doctor(root, "--format", "json")
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["ok"] is False
    by_code = {f["code"]: f for f in payload["findings"]}
    assert set(by_code) == {"E-AWS-PERMISSION-SET", "E-AWS-IDENTITY"}
    assert by_code["E-AWS-PERMISSION-SET"]["line"] == 2
    assert "'Ghost'" in by_code["E-AWS-PERMISSION-SET"]["message"]
    assert by_code["E-AWS-IDENTITY"]["line"] == 13
    assert "dave@example.com" in by_code["E-AWS-IDENTITY"]["message"]


def test_instance_not_visible(tmp_path: Path, aws: AwsSandbox, seeded: SeededInstance) -> None:
    root = write_policies(
        tmp_path, seeded, instance_arn="arn:aws:sso:::instance/ssoins-0000000000000000"
    )
    result = doctor(root)
    assert result.exit_code == 1, result.output
    assert "E-AWS-INSTANCE" in result.output and "ssoins-0000000000000000" in result.output


def test_unreachable_endpoint_is_a_finding_not_a_traceback(
    tmp_path: Path, aws: AwsSandbox, seeded: SeededInstance, monkeypatch
) -> None:
    root = write_policies(tmp_path, seeded)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = doctor(root)
    assert result.exit_code == 1, result.output
    assert "E-AWS-UNREACHABLE" in result.output
    assert "Traceback" not in result.output


def test_no_aws_nothing_to_check(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text("teams:\n  leads: [erin]\n", encoding="utf-8")
    result = doctor(tmp_path)
    assert result.exit_code == 0, result.output
    assert "No online checks apply" in result.output


def test_broken_policies_exit_2(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text("policies: [{name: x}]\n", encoding="utf-8")
    result = doctor(tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_session_duration_in_seconds_is_read(
    tmp_path: Path, aws: AwsSandbox, seeded: SeededInstance
) -> None:
    """moto answers 3600 (seconds, not ISO 8601) for a permission set created without a
    SessionDuration; doctor reads it as one hour instead of failing."""
    sso = aws.client("sso-admin")
    sso.delete_permission_set(
        InstanceArn=seeded.instance_arn, PermissionSetArn=seeded.permission_sets["ReadOnly"]
    )
    sso.create_permission_set(InstanceArn=seeded.instance_arn, Name="ReadOnly")
    assert doctor(write_policies(tmp_path / "fits", seeded)).exit_code == 0
    short = doctor(write_policies(tmp_path / "short", seeded, max_duration="30m"))
    assert short.exit_code == 1, short.output
    assert "'ReadOnly' issues sessions of 1h" in short.output
    assert "Traceback" not in short.output
