"""`accessctl request --open-pr` that can be retried: checked before anything is written,
continued where it stopped, never a second pull request. Real git (a bare origin), the
GitHub emulator over HTTP, the CLI as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.sandbox.github_emulator import GitHubEmulator, Reply, _pull_json
from tests.support import GitRepo

POLICIES = """\
policies:
  - name: db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [alice]
    approvers: [dave]
    approvals: 1
    max_duration: 4h
identities:
  alice: {gcp: "user:alice@example.com"}
providers:
  gcp: {}
"""
FLAGS = (
    "--requester", "alice", "--provider", "gcp", "--scope", "projects/payments-prod",
    "--role", "roles/cloudsql.viewer", "--duration", "2h", "--ticket", "INC-4821",
    "--reason", "Investigate INC-4821, slow checkout queries",
)  # fmt: skip
FILE = "requests/alice/inc-4821.yaml"
BRANCH = "access/alice/inc-4821"
_PULLS = re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls")


class PullsEmulator(GitHubEmulator):
    """Creating pull requests as GitHub does: 422 for a second open PR from the same head,
    and `GET /pulls?head=owner:branch` filters by head."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[dict[str, Any]] = []

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> Reply:
        m = _PULLS.fullmatch(path)
        if m is None:
            return super().route(method, path, query, body)
        name = f"{m['owner']}/{m['repo']}"
        repo = self.repos[name]
        if method == "GET" and "head" in query:
            ref = query["head"].split(":", 1)[-1]
            pulls = [p for p in repo.pulls.values() if p.state == "open" and p.head_ref == ref]
            return Reply(200, [_pull_json(self, repo, p) for p in pulls])
        if method != "POST":
            return super().route(method, path, query, body)
        body = body or {}
        if any(p.state == "open" and p.head_ref == body.get("head") for p in repo.pulls.values()):
            message = f"A pull request already exists for {m['owner']}:{body.get('head')}."
            return Reply(422, {"message": "Validation Failed", "errors": [{"message": message}]})
        number = self.add_pull(
            name, author="alice", head_sha="0" * 40, base_sha="0" * 40,
            base_ref=body["base"], title=body["title"],
        )  # fmt: skip
        pull = repo.pulls[number]
        pull.head_ref = body["head"]
        self.created.append(dict(body))
        return Reply(201, _pull_json(self, repo, pull))


def run_cli(*args: str, repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GH_", "ACCESSCTL_"))
    }
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "request", "--repo", str(repo), *args],
        capture_output=True, text=True, env={**base, **env}, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def github() -> Iterator[PullsEmulator]:
    with PullsEmulator() as emu:
        emu.add_repo("acme/access")
        yield emu


@pytest.fixture
def clone(tmp_path: Path) -> tuple[GitRepo, GitRepo]:
    """An access repository whose origin is a bare repository at a path (not a GitHub URL)."""
    remote = GitRepo(tmp_path / "remote.git", bare=True)
    repo = GitRepo(tmp_path / "access")
    repo.commit({"policies/access.yaml": POLICIES}, "policies")
    repo.git("push", "-q", str(remote.root), "main")
    repo.git("remote", "add", "origin", str(remote.root))
    repo.git("fetch", "-q", "origin")
    repo.git("remote", "set-head", "origin", "main")
    return repo, remote


def env_for(github: PullsEmulator, **extra: str) -> dict[str, str]:
    return {"GITHUB_API_URL": github.url, "GITHUB_REPOSITORY": "acme/access", **extra}


def test_no_token_is_a_usage_error_and_nothing_is_written(clone, github) -> None:
    repo, remote = clone
    proc = run_cli(*FLAGS, "--open-pr", repo=repo.root, env=env_for(github))
    assert proc.returncode == 2
    assert "GITHUB_TOKEN" in proc.stderr and "GH_TOKEN" in proc.stderr
    assert not (repo.root / FILE).exists()
    assert remote.git("branch", "--list", BRANCH) == ""


def test_origin_need_not_be_github_when_the_repository_is_named(clone, github) -> None:
    repo, remote = clone
    proc = run_cli(*FLAGS, "--open-pr", repo=repo.root, env=env_for(github, GH_TOKEN=github.token))
    assert proc.returncode == 0, proc.stderr
    assert "pull request: " in proc.stdout
    assert [p["head"] for p in github.created] == [BRANCH]
    assert remote.git("diff", "--name-only", f"main..{BRANCH}") == FILE


def test_a_rerun_continues_where_it_stopped_and_never_opens_a_second_pull_request(
    clone, github
) -> None:
    repo, remote = clone
    env = env_for(github, GITHUB_TOKEN=github.token)
    github.fail(r"POST /repos/acme/access/pulls", 403, times=1, message="Forbidden")
    first = run_cli(*FLAGS, "--open-pr", repo=repo.root, env=env)
    assert first.returncode == 1, first.stderr
    assert "rerun" in first.stderr
    pushed = remote.git("rev-parse", BRANCH)
    assert (repo.root / FILE).is_file() and github.created == []

    second = run_cli(*FLAGS, "--open-pr", repo=repo.root, env=env)
    assert second.returncode == 0, second.stderr
    assert remote.git("rev-parse", BRANCH) == pushed  # the same commit, not a new one
    third = run_cli(*FLAGS, "--open-pr", repo=repo.root, env=env)
    assert third.returncode == 0, third.stderr
    assert len(github.created) == 1  # one pull request, found again on the third run
    assert third.stdout.strip().splitlines()[-1] == second.stdout.strip().splitlines()[-1]


def test_the_printed_advice_works_when_followed(clone, github) -> None:
    """Plain `request` says "rerun with --open-pr": doing so proposes the same file."""
    repo, _ = clone
    plain = run_cli(*FLAGS, repo=repo.root, env={})
    assert plain.returncode == 0 and "rerun with --open-pr" in plain.stderr
    again = run_cli(*FLAGS, "--open-pr", repo=repo.root, env=env_for(github, GH_TOKEN=github.token))
    assert again.returncode == 0, again.stderr
    assert len(github.created) == 1


def test_a_different_file_at_the_same_path_is_never_overwritten(clone, github) -> None:
    repo, _ = clone
    (repo.root / "requests/alice").mkdir(parents=True)
    (repo.root / FILE).write_text("# my own notes\n")
    proc = run_cli(*FLAGS, "--open-pr", repo=repo.root, env=env_for(github, GH_TOKEN=github.token))
    assert proc.returncode == 2 and "exists already" in proc.stderr
    assert (repo.root / FILE).read_text() == "# my own notes\n"
    assert github.created == []
