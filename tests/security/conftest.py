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


class GitRepo:
    """A real git repository in a tmp dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, author: str = "admin", date: str | None = None) -> str:
        env = {
            **os.environ,
            **({"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {}),
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": f"{author}@example.com",
            "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": f"{author}@example.com",
        }
        proc = subprocess.run(
            ["git", "-C", str(self.root), "-c", "commit.gpgsign=false", *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout.strip()

    def commit(
        self,
        files: dict[str, str | None],
        message: str = "change",
        author: str = "admin",
        date: str | None = None,
    ) -> str:
        written = []
        for rel, text in files.items():
            path = self.root / rel
            if text is None:
                self.git("rm", "-q", "--", rel)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(rel)
        if written:
            self.git("add", "--", *written)
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author, date=date)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def blob(self, ref: str, path: str) -> str:
        return self.git("rev-parse", f"{ref}:{path}")

    def diff(self, base: str, head: str) -> list[dict]:
        """The PR's files as GitHub lists them, with the blob SHA at head."""
        out = []
        for line in self.git(
            "-c", "core.quotepath=false", "diff", "--name-status", "--no-renames", base, head
        ).splitlines():
            status, path = line.split("\t")
            kind = {"A": "added", "D": "removed"}.get(status[0], "modified")
            entry = {"filename": path, "status": kind}
            if kind != "removed":
                entry["sha"] = self.blob(head, path)
            out.append(entry)
        return out


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
    with GitHubEmulator() as emu:
        emu.add_repo(REPO)
        yield emu


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    emu = GcpEmulator(port=0).start()
    emu.add_resource(SCOPE)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def world(tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator) -> World:
    return World(tmp_path, github, gcp)
