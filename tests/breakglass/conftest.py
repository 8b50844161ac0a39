"""Fixtures for the break-glass tests: a real git access repository whose pull requests
live on the GitHub emulator (merged at chosen times, reviewed at chosen times), the GCP
emulator, a local webhook receiver, and the CLI run as a subprocess, as Actions runs it."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from reconciler.core.timeutil import format_rfc3339
from reconciler.notify import SIGNATURE_HEADER
from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests import support
from tests.notifications.conftest import Receiver, receiver
from tests.support.emulators import running_gcp, running_github

__all__ = ["Receiver", "receiver"]  # the webhook receiver fixture, found by name

ACCESSCTL = str(Path(sys.executable).parent / "accessctl")
REPO = "acme/access"
SCOPE = "projects/payments-prod"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
SECRET = "bg-hmac-secret-0123456789"
HOOK_PATH = "/hook/BG-T0K3N"

POLICY = """\
policies:
  - name: db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [team:oncall]
    approvers: [team:leads]
    approvals: 1
    max_duration: 8h
    break_glass: {max_duration: 2h, review_within: 24h}
  - name: logs-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/logging.viewer]
    requesters: [team:oncall]
    approvers: [team:leads]
    approvals: 1
    max_duration: 8h
teams:
  oncall: [alice, bob]
  leads: [dave, erin]
identities:
  alice: {gcp: "user:alice@example.com"}
  bob: {gcp: "user:bob@example.com"}
  mallory: {gcp: "user:mallory@example.com"}
providers:
  gcp: {}
notifications:
  - type: webhook
    url_env: ACCESSCTL_BG_WEBHOOK
    secret_env: ACCESSCTL_BG_SECRET
"""


def request(
    login: str = "alice",
    *,
    role: str = "roles/cloudsql.viewer",
    duration: str = "1h",
    ticket: str | None = "INC-4821",
    break_glass: bool = True,
) -> str:
    text = (
        f"requester: {login}\nprovider: gcp\nscope: {SCOPE}\nrole: {role}\n"
        f"reason: Payments are down, INC-4821, need the slow query log\nduration: {duration}\n"
    )
    if ticket is not None:
        text += f"ticket: {ticket}\n"
    return text + ("break_glass: true\n" if break_glass else "")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class GitRepo(support.GitRepo):
    """A real repository; commits stage only the files they name."""

    author = "admin"
    stage_all = False


class Access:
    """An access repository on main (policies committed a day before T0), its origin served
    by the GitHub emulator (so the ledger is written and signed through GitHub, and the
    approvals apply verified are kept on it), pull requests merged at chosen times."""

    def __init__(
        self,
        tmp: Path,
        github: GitHubEmulator,
        gcp: GcpEmulator,
        receiver: Receiver,
        policy: str = POLICY,
    ) -> None:
        self.tmp, self.github, self.gcp, self.receiver = tmp, github, gcp, receiver
        self.repo = GitRepo(tmp / "access")
        self.repo.commit({"policies/p.yaml": policy}, "policies", date=T0 - 24 * H)
        origin = GitRepo(tmp / "origin.git", bare=True)
        self.repo.git("remote", "add", "origin", str(origin.root))
        self.repo.git("push", "-q", "origin", "main")
        github.attach_git(REPO, origin.root)
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/tmp"),
            "GITHUB_API_URL": github.url,
            "GITHUB_TOKEN": DEFAULT_TOKEN,
            "GITHUB_REPOSITORY": REPO,
            "XDG_CACHE_HOME": str(tmp / "xdg"),
            "ACCESSCTL_GCP_ENDPOINT": gcp.url,
            "ACCESSCTL_BG_WEBHOOK": receiver.url + HOOK_PATH,
            "ACCESSCTL_BG_SECRET": SECRET,
        }
        self.branches = 0

    def open_pr(
        self, files: dict[str, str | None], *, author: str = "alice", at: datetime = T0
    ) -> tuple[int, str]:
        """A branch off main with one commit by ``author``; (PR number, branch)."""
        self.branches += 1
        branch = f"pr{self.branches}"
        base = self.repo.head()
        self.repo.checkout(branch, new=True)
        head = self.repo.commit(files, "request", author=author, date=at - 10 * M)
        self.repo.git("push", "-q", "origin", branch)
        number = self.github.add_pull(
            REPO, author=author, head_sha=head, base_sha=base, files=self.repo.diff(base, head)
        )
        self.repo.checkout("main")
        return number, branch

    def merge(self, number: int, branch: str, *, at: datetime = T0) -> str:
        """Squash-merged into main at ``at`` (GitHub's ``merged_at``)."""
        self.repo.git("merge", "-q", "--squash", branch)
        sha = self.repo.commit({}, f"Request access (#{number})", date=at)
        self.repo.git("push", "-q", "origin", "main")
        self.github.merge(REPO, number, merge_commit_sha=sha, merged_at=at)
        return sha

    def ask(
        self,
        files: dict[str, str | None],
        *,
        author: str = "alice",
        at: datetime = T0,
        approved_by: tuple[str, ...] = (),
    ) -> int:
        """A pull request opened, approved by ``approved_by`` before the merge, merged at ``at``."""
        number, branch = self.open_pr(files, author=author, at=at)
        for login in approved_by:
            self.review(number, login, at=at - 5 * M)
        self.merge(number, branch, at=at)
        return number

    def review(self, number: int, login: str, *, at: datetime, state: str = "APPROVED") -> int:
        return self.github.add_review(REPO, number, login, state, submitted_at=at)

    def run(self, *args: str, at: datetime, env: dict[str, str] | None = None) -> Result:
        argv = [ACCESSCTL, *args, "--repo", str(self.repo.root), "--at", format_rfc3339(at)]
        proc = subprocess.run(
            argv, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=120
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def apply(self, *, at: datetime) -> Result:
        return self.run("apply", "--format", "json", at=at)

    def status(self, *, at: datetime) -> dict[str, dict]:
        """``status --format json`` by file (exit 0 asserted)."""
        result = self.run("status", "--format", "json", at=at)
        assert result.code == 0, result.output
        return {r["file"]: r for r in result.json["requests"]}

    def audit(self, *, at: datetime, code: int = 0) -> dict[str, dict]:
        """``audit --format json``: the latest entry of each file."""
        result = self.run("audit", "--format", "json", at=at)
        assert result.code == code, result.output
        return {e["file"]: e for e in result.json["requests"]}

    def pr_check(self, number: int, *, at: datetime = T0) -> Result:
        event = self.tmp / f"event-{number}.json"
        event.write_text(json.dumps({"pull_request": {"number": number}}))
        summary = self.tmp / "summary.md"
        summary.write_text("")
        env = {"GITHUB_EVENT_PATH": str(event), "GITHUB_STEP_SUMMARY": str(summary)}
        return self.run("pr-check", "--format", "json", at=at, env=env)

    def members(self) -> set[str]:
        return {m for b in self.gcp.get_policy(SCOPE).get("bindings", []) for m in b["members"]}

    def ledger_lines(self) -> list[dict]:
        """Every line of the ledger branch as origin (GitHub) holds it."""
        self.repo.git("fetch", "-q", "origin", "accessctl-ledger")
        names = self.repo.git("ls-tree", "-r", "--name-only", "FETCH_HEAD", "ledger/")
        lines = []
        for name in names.splitlines():
            text = self.repo.git("show", f"FETCH_HEAD:{name}")
            lines += [json.loads(line) for line in text.splitlines() if line.strip()]
        return lines

    def webhook_bodies(self) -> list[dict]:
        """Every webhook body, each checked against its schema and its signature."""
        schema = json.loads(
            resources.files("reconciler").joinpath("schemas/notification.schema.json").read_text()
        )
        out = []
        for d in self.receiver.at(HOOK_PATH):
            expected = "sha256=" + hmac.new(SECRET.encode(), d.raw, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(d.headers[SIGNATURE_HEADER], expected)
            body = d.json()
            jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
            out.append(body)
        return out


@pytest.fixture
def github() -> Iterator[GitHubEmulator]:
    with running_github(REPO) as emu:
        yield emu


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(SCOPE) as emu:
        yield emu


@pytest.fixture
def access(tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver) -> Access:
    return Access(tmp_path, github, gcp, receiver)
