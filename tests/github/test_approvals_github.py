"""GitHubApprovals against the emulator and real git history: squash, merge and rebase
merges resolve to their pull request; a direct push is reported; the cache spares calls."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.approvals import FileChange
from reconciler.approvals_github import NO_PULL_REQUEST, ApprovalCache, GitHubApprovals
from reconciler.github import GitHubClient
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator

from .conftest import REPO, GitRepo

REQUEST = "requests/alice/inc-1.yaml"
BODY = "requester: alice\nprovider: gcp\nscope: projects/p\nrole: roles/x\nreason: a good reason\nduration: 1h\n"
MERGED_AT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def change_of(repo: GitRepo, path: str) -> FileChange:
    commit = repo.git("log", "-1", "--first-parent", "--format=%H", "--", path)
    when = datetime.fromtimestamp(int(repo.git("log", "-1", "--format=%ct", commit)), UTC)
    return FileChange(path, commit, repo.git("rev-parse", f"HEAD:{path}"), when)


def source(emulator: GitHubEmulator, cache: bytes | None = None) -> GitHubApprovals:
    client = GitHubClient(emulator.url, DEFAULT_TOKEN, REPO, retries=1, backoff=0)
    return GitHubApprovals(client, ApprovalCache(cache, client.api_url, client.repository))


def open_pr(
    emulator: GitHubEmulator, repo: GitRepo, base: str, head: str, blob: str | None = None
) -> int:
    blob = blob or repo.git("rev-parse", f"{head}:{REQUEST}")
    n = emulator.add_pull(
        REPO,
        author="alice",
        head_sha=head,
        base_sha=base,
        files=[{"filename": REQUEST, "status": "added", "sha": blob}],
    )
    emulator.add_review(REPO, n, "dave", "APPROVED", commit_id=head)
    return n


@pytest.fixture
def based(git_repo: GitRepo) -> tuple[GitRepo, str]:
    base = git_repo.commit({"policies/p.yaml": "teams: {}\n"}, "policies")
    git_repo.checkout("feature", new=True)
    return git_repo, base


def test_squash_merge(emulator: GitHubEmulator, based: tuple[GitRepo, str], tmp_path: Path) -> None:
    repo, base = based
    head = repo.commit({REQUEST: BODY})
    n = open_pr(emulator, repo, base, head)
    repo.checkout("main")
    repo.git("merge", "--squash", "feature")
    squash = repo.commit({}, "squash")
    emulator.merge(REPO, n, merge_commit_sha=squash, merged_at=MERGED_AT)

    record = source(emulator).lookup([change_of(repo, REQUEST)])[REQUEST]

    assert record.error is None and record.pr == n
    assert record.commit == squash
    assert record.approved_at == MERGED_AT
    assert record.approvals is not None
    assert record.approvals.reviewers == {"dave"} and record.approvals.pr_author == "alice"


def test_merge_commit(emulator: GitHubEmulator, based: tuple[GitRepo, str], tmp_path: Path) -> None:
    repo, base = based
    head = repo.commit({REQUEST: BODY})
    n = open_pr(emulator, repo, base, head)
    repo.checkout("main")
    repo.commit({"README.md": "moved on\n"}, "unrelated")
    repo.git("merge", "--no-ff", "-q", "-m", "Merge pull request", "feature")
    emulator.merge(REPO, n, merge_commit_sha=repo.head(), merged_at=MERGED_AT)

    change = change_of(repo, REQUEST)
    assert change.commit == repo.head()  # first-parent history sees the merge commit
    record = source(emulator).lookup([change])[REQUEST]
    assert record.error is None and record.pr == n and record.approved_at == MERGED_AT


def test_rebase_merge_of_an_earlier_commit(
    emulator: GitHubEmulator, based: tuple[GitRepo, str], tmp_path: Path
) -> None:
    repo, base = based
    first = repo.commit({REQUEST: BODY}, "request")
    n = open_pr(emulator, repo, base, first)
    second = repo.commit({"requests/alice/README.md": "notes\n"}, "notes")
    emulator.push(REPO, n, second)
    emulator.add_review(REPO, n, "erin", "APPROVED", commit_id=second)
    repo.checkout("main")
    repo.commit({"README.md": "moved on\n"}, "unrelated")
    repo.checkout("feature")
    repo.git("rebase", "-q", "main")
    rebased = repo.git("rev-list", "--reverse", "main..feature").split()
    repo.checkout("main")
    repo.git("merge", "--ff-only", "-q", "feature")
    emulator.merge(REPO, n, merge_commit_sha=rebased[-1], main_commits=rebased, merged_at=MERGED_AT)

    change = change_of(repo, REQUEST)
    assert change.commit == rebased[0] != first
    record = source(emulator).lookup([change])[REQUEST]
    assert record.error is None and record.pr == n
    assert record.approvals is not None
    # dave approved an older head; only erin's approval on the final head counts
    assert record.approvals.reviewers == {"erin"}


def test_direct_push_is_reported(emulator: GitHubEmulator, git_repo: GitRepo) -> None:
    git_repo.commit({"policies/p.yaml": "teams: {}\n"})
    git_repo.commit({REQUEST: BODY}, "sneaky direct push")

    record = source(emulator).lookup([change_of(git_repo, REQUEST)])[REQUEST]

    assert record.error == NO_PULL_REQUEST
    assert record.approved_at is None and not record.transient
    assert record.approvals is not None and not record.approvals.reviewers


def test_unmerged_or_other_branch_pr_is_not_an_approval(
    emulator: GitHubEmulator, based: tuple[GitRepo, str]
) -> None:
    repo, base = based
    head = repo.commit({REQUEST: BODY})
    open_pr(emulator, repo, base, head)  # still open: its commit was pushed to main directly
    other = emulator.add_pull(
        REPO, author="alice", head_sha=head, base_sha=base, base_ref="release"
    )
    emulator.merge(REPO, other, merge_commit_sha=head)
    repo.checkout("main")
    repo.git("merge", "--ff-only", "-q", "feature")

    record = source(emulator).lookup([change_of(repo, REQUEST)])[REQUEST]
    assert record.error == NO_PULL_REQUEST


def test_cache_makes_the_second_lookup_free(
    emulator: GitHubEmulator, based: tuple[GitRepo, str], tmp_path: Path
) -> None:
    repo, base = based
    head = repo.commit({REQUEST: BODY})
    n = open_pr(emulator, repo, base, head)
    repo.checkout("main")
    repo.git("merge", "--squash", "feature")
    emulator.merge(REPO, n, merge_commit_sha=repo.commit({}, "squash"), merged_at=MERGED_AT)
    change = change_of(repo, REQUEST)

    first_source = source(emulator)
    first = first_source.lookup([change])
    kept = first_source.evidence()["approvals.json"]  # what apply stores on its ledger branch
    calls_first = emulator.total_calls
    emulator.reset_calls()
    second_source = source(emulator, kept)
    second = second_source.lookup([change])

    assert calls_first == 4  # repo (default branch), commit -> pulls, files, reviews
    assert emulator.total_calls == 0 and second_source.calls == 0
    assert second == first


def test_github_down_is_transient_not_a_refusal(
    emulator: GitHubEmulator, based: tuple[GitRepo, str], tmp_path: Path
) -> None:
    repo, _ = based
    repo.checkout("main")
    repo.commit({REQUEST: BODY})
    emulator.fail(".", 503, times=50)

    looked_up = source(emulator)
    record = looked_up.lookup([change_of(repo, REQUEST)])[REQUEST]

    assert looked_up.evidence() == {}  # failures are never kept
    assert record.transient and record.error and "503" in record.error


def test_a_cache_committed_to_the_repository_is_never_trusted(
    emulator: GitHubEmulator, git_repo: GitRepo
) -> None:
    git_repo.commit({"policies/p.yaml": "teams: {}\n"})
    head = git_repo.commit({REQUEST: BODY}, "direct push")
    change = change_of(git_repo, REQUEST)
    forged = {
        "version": 1,
        "api": emulator.url,
        "repository": REPO,
        "records": {
            f"{change.blob}:{head}:{REQUEST}": {
                "approved_at": "2026-12-01T09:00:00Z",
                "pr": 1,
                "pr_author": "alice",
                "reviewers": ["dave"],
            }
        },
    }
    git_repo.commit(
        {".accessctl-cache/approvals.json": json.dumps(forged)}, "cache", author="mallory"
    )
    env = {"GITHUB_API_URL": emulator.url, "GITHUB_TOKEN": DEFAULT_TOKEN, "GITHUB_REPOSITORY": REPO}

    source = GitHubApprovals.from_env(git_repo.root, env)
    record = source.lookup([change])[REQUEST]

    assert record.error == NO_PULL_REQUEST


def test_content_that_differs_from_the_reviewed_head_is_refused(
    emulator: GitHubEmulator, based: tuple[GitRepo, str]
) -> None:
    repo, base = based
    head = repo.commit({REQUEST: BODY})
    n = open_pr(emulator, repo, base, head, blob="f" * 40)  # the PR's head had other content
    repo.checkout("main")
    repo.git("merge", "--squash", "feature")
    emulator.merge(REPO, n, merge_commit_sha=repo.commit({}, "squash"), merged_at=MERGED_AT)

    record = source(emulator).lookup([change_of(repo, REQUEST)])[REQUEST]

    assert record.error and "differs from the reviewed head" in record.error
    assert record.approved_at is None and not record.transient
