"""Fixtures for the foundation tests: an access repo in a tmp dir and `accessctl validate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import cli

NOW = "2026-11-30T00:00:00Z"
ROOT = Path(__file__).resolve().parents[2]
ACCESSCTL = str(Path(sys.executable).with_name("accessctl"))

POLICIES = """\
teams:
  payments-oncall: [alice, carol]
  payments-leads: [dave, erin]
identities:
  alice: {gcp: user:alice@example.com, aws: alice@example.com}
  bob: {gcp: user:bob@example.com, aws: bob@example.com}
  carol: {gcp: user:carol@example.com}
  dave: {gcp: user:dave@example.com, aws: dave@example.com}
  erin: {gcp: user:erin@example.com, aws: erin@example.com}
providers:
  aws: {instance_arn: "arn:aws:sso:::instance/ssoins-7223a1c2b5e6f0d9", identity_store_id: d-9067e4a1b2, region: us-east-1}
  gcp: {}
policies:
  - name: payments-db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer, roles/logging.viewer]
    requesters: [team:payments-oncall, bob]
    approvers: [team:payments-leads]
    approvals: 1
    max_duration: 4h
    ticket: '^(INC|CHG)-[0-9]+$'
  - name: payments-nonprod
    provider: gcp
    scopes: ['projects/payments-*']
    roles: [roles/logging.viewer]
    requesters: [team:payments-oncall, bob, carol, frank]
    approvers: []
    approvals: 0
    max_duration: 1d
  - name: payments-aws
    provider: aws
    scopes: ['111122223333']
    roles: [ReadOnlyAccess, PaymentsDebug]
    requesters: [team:payments-oncall]
    approvers: [team:payments-leads]
    approvals: 1
    max_duration: 8h
"""

GOOD_REQUEST = """\
requester: alice
provider: gcp
scope: projects/payments-prod
role: roles/cloudsql.viewer
reason: Investigate INC-4821, slow checkout queries
ticket: INC-4821
duration: 2h
"""


@dataclass
class Result:
    exit_code: int
    output: str
    stderr: str = ""

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.output)

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.json["findings"])


def write_files(root: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write ``{path: content}`` under ``root``; ``None`` deletes the file."""
    for rel, content in files.items():
        path = root / rel
        if content is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", newline="")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An access repo with the fixture policies and one good request."""
    root = tmp_path / "repo"
    write_files(
        root,
        {
            "policies/base.yaml": POLICIES,
            "requests/alice/inc-4821.yaml": GOOD_REQUEST,
            "requests/README.md": "# Requests\n",
        },
    )
    return root


def run_validate(
    repo: Path, *args: str, fmt: str = "json", env: dict[str, str] | None = None
) -> Result:
    """`accessctl validate` in-process through click, as the console script runs it."""
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["validate", "--repo", str(repo), "--at", NOW, "--format", fmt, *args],
        env=env,
        catch_exceptions=False,
    )
    return Result(result.exit_code, result.stdout, result.stderr)


def run_validate_process(repo: Path, *args: str, timeout: float = 30) -> Result:
    """`accessctl validate --format json` as a subprocess, exactly as a user or CI runs it."""
    env = {k: v for k, v in os.environ.items() if k != "ACCESSCTL_NOW"}
    proc = subprocess.run(
        [ACCESSCTL, "validate", "--repo", str(repo), "--at", NOW, "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def validate(repo: Path) -> Callable[..., Result]:
    def run(*args: str, fmt: str = "json") -> Result:
        return run_validate(repo, *args, fmt=fmt)

    return run
