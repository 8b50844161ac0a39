"""`accessctl apply` verifying approvals on GitHub (no --trust-git): the GitHub emulator
over HTTP, real git history, the GCP emulator. A merged, approved pull request grants from
its merge time; a direct push to main grants nothing and is reported; an idle rerun asks
GitHub nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.core.timeutil import format_rfc3339
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests.support import GitRepo

from .conftest import T0, H, managed, request_yaml

REPO = "acme/access"
ALICE = "requests/alice/inc-4821.yaml"
BOB = "requests/bob/inc-9.yaml"


@pytest.fixture
def github() -> Iterator[GitHubEmulator]:
    with GitHubEmulator() as emu:
        emu.add_repo(REPO)
        yield emu


@pytest.fixture
def github_env(github, tmp_path) -> dict[str, str]:
    return {
        "GITHUB_API_URL": github.url,
        "GITHUB_TOKEN": DEFAULT_TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


def merge_pr(repo, github, path, text, *, author, approver, at) -> int:
    """Branch, commit, open a PR, review it, merge it with a merge commit at ``at``."""
    base = repo.git("rev-parse", "HEAD").strip()
    repo.git("checkout", "-q", "-b", f"req-{author}")
    repo.write(path, text)
    head = repo.commit(f"request by {author}", at=at - H)
    number = github.add_pull(
        REPO,
        author=author,
        head_sha=head,
        base_sha=base,
        files=[{"filename": path, "status": "added"}],
    )
    if approver:
        github.add_review(REPO, number, approver, "APPROVED", commit_id=head)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", f"req-{author}", "-m", "Merge pull request", at=at)
    merge = repo.git("rev-parse", "HEAD").strip()
    github.merge(REPO, number, merge_commit_sha=merge, merged_at=at)
    return number


def test_approved_pull_request_grants_and_direct_push_does_not(
    run_cli, access_repo, emulator, github, github_env
) -> None:
    number = merge_pr(
        access_repo, github, ALICE, request_yaml(), author="alice", approver="dave", at=T0
    )
    access_repo.write(BOB, request_yaml(requester="bob", scope="projects/app-prod-b"))
    access_repo.commit("bob pushes straight to main", at=T0 + H / 2)

    result = run_cli("apply", "--format", "json", at=T0 + H, env=github_env)
    assert result.exit_code == 1, result.output  # bob's direct push is reported
    payload = result.json()
    assert [g["request"] for g in payload["grant"]] == [ALICE]
    assert payload["grant"][0]["begin"] == format_rfc3339(T0)
    assert any(e["file"] == BOB for e in payload["errors"])
    (binding,) = managed(emulator, "projects/app-prod-a")
    assert f"#{number}" in binding["condition"]["description"]
    assert managed(emulator, "projects/app-prod-b") == []


def test_idle_rerun_looks_up_no_approval(
    run_cli, access_repo, emulator, github, github_env, tmp_path
) -> None:
    """With the ledger written through GitHub (signed), verified approvals are read back
    from it: the idle rerun asks GitHub only to check that commit's signature."""
    origin = GitRepo(tmp_path / "origin.git", bare=True)
    access_repo.git("remote", "add", "origin", str(origin.root))
    access_repo.git("push", "-q", "origin", "main")
    github.attach_git(REPO, origin.root)
    merge_pr(access_repo, github, ALICE, request_yaml(), author="alice", approver="dave", at=T0)
    assert run_cli("apply", at=T0 + H, env=github_env).exit_code == 0
    github.reset_calls()
    again = run_cli("apply", "--format", "json", at=T0 + H, env=github_env)
    assert again.exit_code == 0, again.output
    assert again.json()["grant"] == [] and len(again.json()["keep"]) == 1
    assert github.calls["GET /repos/{o}/{r}/commits/{sha}/pulls"] == 0
    assert github.calls["GET /repos/{o}/{r}/pulls/{n}/reviews"] == 0
    assert github.total_calls <= 2, dict(github.calls)


def test_pull_request_without_enough_approvals_grants_nothing(
    run_cli, access_repo, emulator, github, github_env
) -> None:
    merge_pr(access_repo, github, ALICE, request_yaml(), author="alice", approver=None, at=T0)
    result = run_cli("apply", "--format", "json", at=T0 + H, env=github_env)
    assert result.exit_code == 1
    assert result.json()["grant"] == []
    assert any(e["file"] == ALICE for e in result.json()["errors"])
    assert managed(emulator, "projects/app-prod-a") == []
