"""Fixtures for the activity tests: an access repository with history written by hand, and
the commands run as a user runs them, against the emulators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.timeutil import parse_rfc3339
from tests.audit.conftest import GitRepo, request_yaml, run_cli

POLICIES = """\
policies:
  - name: gcp-read
    provider: gcp
    scopes: [projects/payments-prod, projects/ledger-prod, projects/team-*]
    roles: [roles/cloudsql.viewer]
    requesters: [alice, carol]
    approvers: [dave]
    approvals: 0
    max_duration: 4h
"""
AWS_POLICIES = """\
  - name: aws-read
    provider: aws
    scopes: ['111111111111', '222222222222']
    roles: [ReadOnly]
    requesters: [alice]
    approvers: [dave]
    approvals: 0
    max_duration: 8h
"""
IDENTITIES = """\
identities:
  alice: {gcp: 'user:alice@example.com', aws: alice@example.com}
  carol: {gcp: 'user:carol@example.com', aws: carol@example.com}
  mallory: {gcp: 'user:mallory@example.com', aws: mallory@example.com}
providers:
  gcp: {}
"""
AWS_SETTINGS = """\
  aws: {instance_arn: 'arn:aws:sso:::instance/ssoins-0000000000000000', identity_store_id: d-0000000000, region: us-east-1, activity_regions: [eu-west-1]}
"""
AT = "2026-12-02T00:00:00Z"
PAY = "projects/payments-prod"
LEDGER = "projects/ledger-prod"


def record(emu: Any, scope: str, who: str, at: str, method: str, denied: bool = False) -> None:
    """A Cloud SQL Data Access entry by ``who`` in ``scope`` at ``at``."""
    emu.logging.record(
        scope,
        who,
        at=parse_rfc3339(at),
        service="cloudsql.googleapis.com",
        method=method,
        resource=f"{scope}/instances/db",
        denied=denied,
        log="data_access",
    )


@pytest.fixture
def access_repo(tmp_path: Path) -> GitRepo:
    """GCP policies only."""
    repo = GitRepo(tmp_path / "access")
    repo.commit({"policies/access.yaml": POLICIES + IDENTITIES}, "2026-11-30T12:00:00Z")
    return repo


@pytest.fixture
def both_repo(tmp_path: Path) -> GitRepo:
    """GCP and AWS policies."""
    repo = GitRepo(tmp_path / "access")
    text = POLICIES + AWS_POLICIES + IDENTITIES + AWS_SETTINGS
    repo.commit({"policies/access.yaml": text}, "2026-11-30T12:00:00Z")
    return repo


def add_request(repo: GitRepo, path: str, when: str, **fields: Any) -> None:
    requester = path.split("/")[1]
    repo.commit({path: request_yaml(requester, **fields)}, when, message=f"add {path}")


def activity(
    repo: GitRepo, *extra: str, env: dict[str, str] | None = None, at: str = AT, fmt: str = "json"
) -> tuple[int, Any, str]:
    proc = run_cli(
        "activity",
        "--repo",
        str(repo.root),
        "--trust-git",
        "--format",
        fmt,
        "--at",
        at,
        *extra,
        env=env,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    out = json.loads(proc.stdout) if fmt == "json" and proc.stdout.strip() else proc.stdout
    return proc.returncode, out, proc.stderr
