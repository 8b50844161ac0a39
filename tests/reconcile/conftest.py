"""Fixtures for reconciler tests: real git access repos in tmp dirs, the GCP emulator over
HTTP, and the CLI run the way a user runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.core.timeutil import format_rfc3339
from reconciler.sandbox.gcp_emulator import GcpEmulator
from tests import support
from tests.support.emulators import running_gcp

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
PROJECTS = ("projects/app-prod-a", "projects/app-prod-b", "projects/app-prod-c")
# The access repos here have no origin and run_cli clears GITHUB_REPOSITORY: the titles
# are those of the "default" deployment (tests.support.titles).
DEPLOYMENT = "default"

POLICY = """\
policies:
  - name: gcp-read
    description: Read production data while on call
    provider: gcp
    scopes: [projects/app-prod-a, projects/app-prod-b, projects/app-prod-c]
    roles: [roles/cloudsql.viewer, roles/logging.viewer]
    requesters: [team:oncall]
    approvers: [team:leads]
    approvals: 1
    max_duration: 8h
teams:
  oncall: [alice, bob, carol]
  leads: [dave]
identities:
  alice: {gcp: "user:alice@example.com"}
  bob: {gcp: "user:bob@example.com"}
  carol: {gcp: "user:carol@example.com"}
providers:
  gcp: {}
"""


def request_yaml(
    requester: str = "alice",
    scope: str = "projects/app-prod-a",
    role: str = "roles/cloudsql.viewer",
    duration: str | None = "2h",
    start: datetime | None = None,
    expires: datetime | None = None,
    reason: str = "Investigate INC-4821, slow checkout queries",
) -> str:
    lines = [
        f"requester: {requester}",
        "provider: gcp",
        f"scope: {scope}",
        f"role: {role}",
        f"reason: {reason}",
    ]
    if duration:
        lines.append(f"duration: {duration}")
    if start:
        lines.append(f"start: {format_rfc3339(start)}")
    if expires:
        lines.append(f"expires: {format_rfc3339(expires)}")
    return "\n".join(lines) + "\n"


class GitRepo(support.GitRepo):
    """An access repo with commits at chosen committer times (by git's configured user)."""

    author = None
    strip = False

    def git(self, *args: str, at: datetime | None = None) -> str:  # type: ignore[override]
        return self.run_git(*args, date=at)

    def write(self, rel: str, text: str) -> None:  # type: ignore[override]
        self.write_file(rel, text)

    def commit(self, message: str, at: datetime) -> str:  # type: ignore[override]
        self.run_git("add", "-A")
        return self.commit_staged(message, date=at)


@pytest.fixture
def emulator() -> Iterator[GcpEmulator]:
    with running_gcp(*PROJECTS) as emu:
        yield emu


@pytest.fixture
def access_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "access")
    repo.write("policies/access.yaml", POLICY)
    repo.write("requests/README.md", "One file per request.\n")
    repo.commit("policies", at=T0 - 24 * H)
    return repo


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def run_cli(emulator: GcpEmulator, access_repo: GitRepo, monkeypatch: pytest.MonkeyPatch):
    """``accessctl <args> --repo <access repo>`` against the emulator; returns exit code and
    the separate stdout/stderr a user sees."""
    for var in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_STEP_SUMMARY", "ACCESSCTL_NOW"):
        monkeypatch.delenv(var, raising=False)

    def run(*args: str, at: datetime | None = None, env: dict[str, str] | None = None) -> CliResult:
        argv = [*args, "--repo", str(access_repo.root)]
        if at is not None:
            argv += ["--at", format_rfc3339(at)]
        full_env = {"ACCESSCTL_GCP_ENDPOINT": emulator.url, **(env or {})}
        result = CliRunner().invoke(cli, argv, env=full_env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


def managed(emu: GcpEmulator, scope: str) -> list[dict]:
    """The bindings of a scope whose title starts ``accessctl:`` (this deployment's, and
    any other or old-style accessctl title), as the cloud holds them."""
    return [
        b
        for b in emu.get_policy(scope).get("bindings", [])
        if b.get("condition", {}).get("title", "").startswith("accessctl:")
    ]


def unmanaged(emu: GcpEmulator, scope: str) -> list[dict]:
    return [
        b
        for b in emu.get_policy(scope).get("bindings", [])
        if not b.get("condition", {}).get("title", "").startswith("accessctl:")
    ]
