"""Fixtures for the attacker's-eye tests: real git repos, the CLI in a subprocess, and the
GitHub and GCP emulators over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests import support
from tests.support.emulators import running_gcp, running_github

ACCESSCTL = str(Path(sys.executable).parent / "accessctl")
REPO = "acme/access"
SCOPE = "projects/payments-prod"
NOW = "2026-12-01T08:00:00Z"

POLICY = """\
policies:
  - name: db-read
    provider: gcp
    scopes: [projects/payments-*]
    roles: [roles/cloudsql.viewer]
    requesters: [team:oncall]
    approvers: [team:leads]
    approvals: 1
    max_duration: 8h
teams:
  oncall: [alice, bob]
  leads: [dave, erin, alice]
identities:
  alice: {gcp: "user:alice@example.com"}
  bob: {gcp: "user:bob@example.com"}
providers:
  gcp: {}
"""


def request(
    login: str = "alice",
    *,
    role: str = "roles/cloudsql.viewer",
    scope: str = SCOPE,
    reason: str = "Investigate INC-4821, slow queries",
    extra: str = "",
    duration: str = "2h",
) -> str:
    return (
        f"requester: {login}\nprovider: gcp\nscope: {scope}\nrole: {role}\n"
        f"reason: {json.dumps(reason)}\nduration: {duration}\n{extra}"
    )


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    proc = subprocess.run(
        [ACCESSCTL, *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


class GitRepo(support.GitRepo):
    """A real git repository in a tmp dir; commits stage only the files they name."""

    author = "admin"
    stage_all = False


class World:
    """main with policies, pull requests on the GitHub emulator, a GCP project."""

    def __init__(self, tmp: Path, github: GitHubEmulator, gcp: GcpEmulator) -> None:
        self.tmp, self.github, self.gcp = tmp, github, gcp
        self.repo = GitRepo(tmp / "repo")
        self.repo.commit({"policies/p.yaml": POLICY}, "policies")
        self.env = {
            "GITHUB_API_URL": github.url,
            "GITHUB_TOKEN": DEFAULT_TOKEN,
            "GITHUB_REPOSITORY": REPO,
            "XDG_CACHE_HOME": str(tmp / "xdg"),
            "ACCESSCTL_GCP_ENDPOINT": gcp.url,
        }
        self.branches = 0

    def open_pr(self, files: dict[str, str | None], author: str = "alice") -> tuple[int, str]:
        """A branch off main with one commit; returns (PR number, head sha)."""
        self.branches += 1
        base = self.repo.head()
        self.repo.git("checkout", "-q", "-b", f"pr{self.branches}")
        head = self.repo.commit(files, "request", author=author)
        number = self.github.add_pull(
            REPO, author=author, head_sha=head, base_sha=base, files=self.repo.diff(base, head)
        )
        self.repo.git("checkout", "-q", "main")
        return number, head

    def push(self, number: int, branch: str, files: dict[str, str | None]) -> str:
        self.repo.git("checkout", "-q", branch)
        head = self.repo.commit(files, "more", author="alice")
        base = self.repo.git("merge-base", "main", head)
        self.github.push(REPO, number, head, files=self.repo.diff(base, head))
        self.repo.git("checkout", "-q", "main")
        return head

    def squash(self, number: int, branch: str) -> str:
        self.repo.git("merge", "-q", "--squash", branch)
        sha = self.repo.commit({}, f"merge #{number}")
        self.github.merge(REPO, number, merge_commit_sha=sha)
        return sha

    def pr_check(self, number: int, *extra: str) -> Result:
        event = self.tmp / f"event-{number}.json"
        event.write_text(json.dumps({"pull_request": {"number": number}}))
        summary = self.tmp / "summary.md"
        summary.write_text("")
        env = {**self.env, "GITHUB_EVENT_PATH": str(event), "GITHUB_STEP_SUMMARY": str(summary)}
        return run_cli("pr-check", "--repo", str(self.repo.root), "--at", NOW, *extra, env=env)

    def apply(self, *extra: str) -> Result:
        """The reconciler on the real clock (merges in the emulator happen now)."""
        args = ["apply", "--repo", str(self.repo.root), "--format", "json", "--no-ledger"]
        return run_cli(*args, *extra, env=self.env)

    def members(self, scope: str = SCOPE) -> set[str]:
        return {m for b in self.gcp.get_policy(scope).get("bindings", []) for m in b["members"]}


@pytest.fixture
def github() -> Iterator[GitHubEmulator]:
    with running_github(REPO) as emu:
        yield emu


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(SCOPE) as emu:
        yield emu


@pytest.fixture
def world(tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator) -> World:
    return World(tmp_path, github, gcp)
