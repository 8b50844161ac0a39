"""`audit` shows when an AWS revoke ended the sessions issued before it (the deny statement
apply writes in the permission set's inline policy, as its ledger line records it), in
JSON, CSV and the text timeline. moto behind the AWS sandbox, real git, the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.core.timeutil import format_rfc3339
from reconciler.ledger import parse_line
from reconciler.sandbox.aws import AwsSandbox, SeededInstance
from tests.aws.conftest import aws, aws_sandbox, seeded
from tests.aws.test_cli_aws import A, policy_yaml, request_yaml
from tests.reconcile.conftest import T0, GitRepo, H

__all__ = ["aws", "aws_sandbox", "seeded"]  # fixtures, found by name

ALICE = "requests/alice/inc-4821.yaml"
NO_GITHUB = {"GITHUB_TOKEN": None, "GITHUB_REPOSITORY": None, "ACCESSCTL_NOW": None}


def run(repo: GitRepo, *args: str, at: datetime) -> tuple[int, str]:
    argv = [*args, "--trust-git", "--repo", str(repo.root), "--at", format_rfc3339(at)]
    result = CliRunner().invoke(cli, argv, env=NO_GITHUB, catch_exceptions=False)
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout


def test_audit_shows_when_the_revoke_ended_the_sessions(
    tmp_path: Path, aws: AwsSandbox, seeded: SeededInstance
) -> None:
    repo = GitRepo(tmp_path / "access")
    repo.write("policies/access.yaml", policy_yaml(seeded))
    repo.commit("policies", at=T0 - 24 * H)
    repo.write(ALICE, request_yaml(duration="1h"))
    repo.commit("alice: ReadOnly", at=T0)

    assert run(repo, "apply", at=T0 + H / 6)[0] == 0  # granted
    code, out = run(repo, "apply", "--format", "json", at=T0 + 2 * H)  # expired: revoked
    assert code == 0, out
    [revoked] = json.loads(out)["results"]
    assert revoked["action"] == "revoke" and revoked["ok"] is True
    assert aws.assignments(seeded, A) == set()

    code, out = run(repo, "audit", "--format", "json", at=T0 + 3 * H)
    assert code == 0, out
    [entry] = json.loads(out)["requests"]
    assert entry["revoked_at"] == "2026-12-01T11:00:00Z"
    assert entry["sessions_ended_at"] == "2026-12-01T11:00:00Z"

    code, out = run(repo, "audit", "--format", "csv", at=T0 + 3 * H)
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["sessions_ended_at"] == "2026-12-01T11:00:00Z"

    code, out = run(repo, "audit", at=T0 + 3 * H)
    assert "revoke ok (alice@example.com); sessions issued before 2026-12-01T11:00:00Z denied" in (
        out
    )


def test_a_ledger_line_without_it_reads_as_null() -> None:
    """GCP (and lines written before) have nothing like it: null, never invented."""

    line = {
        "time": "2026-12-01T11:00:00Z",
        "action": "revoke",
        "ok": True,
        "provider": "gcp",
        "scope": "projects/x-prod",
        "role": "roles/viewer",
        "principal": "user:alice@example.com",
    }
    entry = parse_line(json.dumps(line))
    assert entry is not None and entry.sessions_ended_at is None
    aws_line = parse_line(json.dumps({**line, "sessions_ended_at": "2026-12-01T11:00:00Z"}))
    assert aws_line is not None and aws_line.sessions_ended_at is not None
    assert format_rfc3339(aws_line.sessions_ended_at) == "2026-12-01T11:00:00Z"
