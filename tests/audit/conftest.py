"""Fixtures for the audit tests: real git repositories whose history we write by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests import support

ROOT = Path(__file__).resolve().parents[2]

POLICIES = """\
policies:
  - name: payments-db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [team:payments-oncall]
    approvers: [team:payments-leads]
    approvals: 1
    max_duration: 4h
  - name: aws-read
    provider: aws
    scopes: ['111111111111']
    roles: [ReadOnly]
    requesters: [alice]
    approvers: [dave]
    approvals: 1
    max_duration: 8h
teams:
  payments-oncall: [alice, carol]
  payments-leads: [dave, erin]
identities:
  alice: {gcp: 'user:alice@example.com', aws: alice@example.com}
  carol: {gcp: 'user:carol@example.com'}
providers:
  gcp: {}
  aws: {instance_arn: 'arn:aws:sso:::instance/ssoins-0000000000000000', identity_store_id: d-0000000000, region: us-east-1}
"""


def request_yaml(
    requester: str = "alice",
    *,
    provider: str = "gcp",
    scope: str = "projects/payments-prod",
    role: str = "roles/cloudsql.viewer",
    reason: str = "Investigate INC-4821, slow checkout queries",
    duration: str | None = "2h",
    start: str | None = None,
    expires: str | None = None,
) -> str:
    lines = [
        "# yaml-language-server: $schema=../../reconciler/schemas/request.schema.json",
        f"requester: {requester}",
        f"provider: {provider}",
        f"scope: '{scope}'",
        f"role: {role}",
        f"reason: {reason}",
    ]
    if duration:
        lines.append(f"duration: {duration}")
    if start:
        lines.append(f"start: {start}")
    if expires:
        lines.append(f"expires: {expires}")
    return "\n".join(lines) + "\n"


class GitRepo(support.GitRepo):
    """A real repository; every commit takes an explicit time so windows are predictable.
    GitHub commits (merges, squashes), so it is the committer; authors are the PR authors."""

    committer = ("GitHub", "noreply@github.com")

    def git(self, *args: str, when: str | None = None, author: str = "alice") -> str:
        return self.run_git(*args, author=author, date=when)

    def commit(  # type: ignore[override]  # the audit tests pass the time second
        self,
        files: dict[str, str | None],
        when: str,
        message: str = "change",
        author: str = "alice",
    ) -> str:
        self.stage(files)
        return self.commit_staged(message, author=author, date=when)


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The real console entry point, as a user runs it."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ACCESSCTL_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=full_env,
        timeout=120,
    )


def audit_json(repo: GitRepo, *extra: str, at: str = "2026-12-02T00:00:00Z") -> list[dict]:
    proc = run_cli(
        "audit", "--repo", str(repo.root), "--trust-git", "--format", "json", "--at", at, *extra
    )
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)["requests"]


def utc(text: str) -> datetime:
    from reconciler.core.timeutil import parse_rfc3339

    return parse_rfc3339(text)


@pytest.fixture
def access_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "access")
    repo.commit({"policies/access.yaml": POLICIES}, "2026-11-30T12:00:00Z", message="policies")
    return repo


@pytest.fixture
def bare_remote(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "remote.git", bare=True)
