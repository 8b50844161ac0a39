"""The github-issue sink: one open issue at a time, opened when an apply fails, commented
on by later failures, closed by the next apply that exits 0. The GitHub emulator, the GCP
emulator, real git, the CLI (--trust-git: GitHub is only the issue tracker here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests.reconcile.conftest import request_yaml

from .conftest import T0, H, with_notifications

REPO = "acme/access"
ALICE = "requests/alice/inc-1.yaml"
M = H / 60


@pytest.fixture
def github() -> Iterator[GitHubEmulator]:
    with GitHubEmulator() as emu:
        emu.add_repo(REPO)
        yield emu


def test_open_update_close(run_cli, access_repo, emulator, github) -> None:
    with_notifications(access_repo, "  - type: github-issue\n")
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    env = {"GITHUB_API_URL": github.url, "GITHUB_TOKEN": DEFAULT_TOKEN, "GITHUB_REPOSITORY": REPO}
    issues = github.repos[REPO].issues

    emulator.fail_next("projects/app-prod-a", status=403, count=None)
    first = run_cli("apply", "--trust-git", at=T0 + 5 * M, env=env)
    assert first.exit_code == 1
    (issue,) = issues.values()
    assert issue["state"] == "open"
    assert "projects/app-prod-a" in issue["body"]

    assert run_cli("apply", "--trust-git", at=T0 + 15 * M, env=env).exit_code == 1
    assert len(issues) == 1  # the same issue, updated
    comments = [c for c in github.repos[REPO].comments.values() if c["_issue"] == issue["number"]]
    assert len(comments) == 1 and "projects/app-prod-a" in comments[0]["body"]

    emulator.heal("projects/app-prod-a")
    assert run_cli("apply", "--trust-git", at=T0 + 25 * M, env=env).exit_code == 0
    assert issue["state"] == "closed"

    # a later success with nothing open asks nothing more than the listing
    assert run_cli("apply", "--trust-git", at=T0 + 35 * M, env=env).exit_code == 0
    assert len(issues) == 1
    for text in (issue["body"], *(c["body"] for c in comments)):
        assert DEFAULT_TOKEN not in text


def test_github_down_is_a_warning(run_cli, access_repo, emulator, github) -> None:
    with_notifications(access_repo, "  - type: github-issue\n")
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    env = {
        "GITHUB_API_URL": "http://127.0.0.1:9/api",
        "GITHUB_TOKEN": DEFAULT_TOKEN,
        "GITHUB_REPOSITORY": REPO,
    }
    emulator.fail_next("projects/app-prod-a", status=403, count=None)
    result = run_cli("apply", "--trust-git", at=T0 + 5 * M, env=env)
    assert result.exit_code == 1  # the failed grant, as without notifications
    assert "github-issue" in result.output
    assert DEFAULT_TOKEN not in result.output
