"""accessctl pr-check against an independently written GitHub emulator and real git repos."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import GitRepo, Result, clean_env, request_yaml
from tests.e2e.independent_github import TOKEN, IndependentGitHub, Pull

AT = "2026-12-01T09:00:00Z"
REQ = "requests/alice/inc-4821.yaml"


@pytest.fixture
def gh() -> Iterator[IndependentGitHub]:
    emu = IndependentGitHub()
    try:
        yield emu
    finally:
        emu.stop()


def open_pr(
    repo: GitRepo,
    gh: IndependentGitHub,
    files: dict[str, str | None],
    author: str = "alice",
    number: int = 7,
) -> Pull:
    """A branch off main with ``files`` written (None deletes), registered as PR ``number``."""
    base = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", f"pr-{number}")
    listed = []
    for path, text in files.items():
        if text is None:
            repo.remove(path)
            listed.append(
                {
                    "filename": path,
                    "status": "removed",
                    "sha": "0" * 40,
                    "additions": 0,
                    "deletions": 1,
                    "changes": 1,
                }
            )
        else:
            existed = (repo.path / path).exists()
            repo.write(path, text)
            listed.append(
                {
                    "filename": path,
                    "status": "modified" if existed else "added",
                    "sha": "1" * 40,
                    "additions": 1,
                    "deletions": 0,
                    "changes": 1,
                }
            )
    head = repo.commit(f"PR {number}", "2026-12-01T08:00:00Z", author=author)
    repo.git("checkout", "-q", "main")
    gh.pulls[number] = Pull(number, author, head, base, listed)
    return gh.pulls[number]


def pr_check(
    repo: GitRepo, gh: IndependentGitHub, number: int = 7, action: str = "opened"
) -> Result:
    event = repo.path.parent / f"event-{number}-{len(gh.statuses)}.json"
    event.write_text(
        json.dumps({"action": action, "number": number, "pull_request": {"number": number}})
    )
    summary = repo.path.parent / "summary.md"
    env = clean_env(
        GITHUB_API_URL=gh.url,
        GITHUB_TOKEN=TOKEN,
        GITHUB_REPOSITORY=gh.repo,
        GITHUB_EVENT_PATH=str(event),
        GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_EVENT_NAME="pull_request",
        GITHUB_ACTIONS="true",
    )
    res = repo.run("pr-check", "--at", AT, env=env)
    assert gh.unknown == [], gh.unknown
    return res


def status(gh: IndependentGitHub, pull: Pull) -> str:
    mine = [s for s in gh.statuses.get(pull.head, []) if s["context"] == "accessctl/approval"]
    assert mine, gh.statuses
    return mine[0]["state"]


def test_approved_by_eligible_reviewer_passes_and_comment_is_updated(
    repo: GitRepo, gh: IndependentGitHub
) -> None:
    pull = open_pr(repo, gh, {REQ: request_yaml()})
    first = pr_check(repo, gh)
    assert first.code == 1, first
    assert status(gh, pull) in ("pending", "failure")
    gh.review(7, "dave", "APPROVED", pull.head)
    second = pr_check(repo, gh, action="submitted")
    assert second.code == 0, second
    assert status(gh, pull) == "success"
    assert len(gh.pulls[7].comments) == 1, gh.pulls[7].comments
    body = gh.pulls[7].comments[0]["body"]
    assert "payments-db-read" in body and "dave" in body


@pytest.mark.parametrize(
    "reviews",
    [
        [("alice", "APPROVED", "head", "User")],  # self-approval
        [("carol", "APPROVED", "head", "User")],  # not an eligible approver
        [("dave", "APPROVED", "old", "User")],  # on an older commit
        [("dave", "DISMISSED", "head", "User")],  # dismissed
        [("dave", "APPROVED", "head", "User"), ("dave", "CHANGES_REQUESTED", "head", "User")],
        [("dave[bot]", "APPROVED", "head", "Bot")],
        [("dave", "COMMENTED", "head", "User")],
    ],
    ids=[
        "self",
        "ineligible",
        "older-commit",
        "dismissed",
        "later-changes-requested",
        "bot",
        "comment-only",
    ],
)
def test_reviews_that_never_count(repo: GitRepo, gh: IndependentGitHub, reviews: list) -> None:
    pull = open_pr(repo, gh, {REQ: request_yaml()})
    for login, state, which, kind in reviews:
        gh.review(7, login, state, pull.head if which == "head" else pull.base, kind)
    res = pr_check(repo, gh)
    assert res.code == 1, res
    assert status(gh, pull) != "success"


def test_request_for_someone_else(repo: GitRepo, gh: IndependentGitHub) -> None:
    pull = open_pr(repo, gh, {REQ: request_yaml()}, author="carol")
    gh.review(7, "dave", "APPROVED", pull.head)
    res = pr_check(repo, gh)
    assert res.code == 1, res
    assert status(gh, pull) == "failure"


def test_mixed_pr_fails(repo: GitRepo, gh: IndependentGitHub) -> None:
    loosened = (
        (repo.path / "policies/main.yaml").read_text().replace("approvals: 1", "approvals: 0")
    )
    pull = open_pr(repo, gh, {REQ: request_yaml(), "policies/main.yaml": loosened})
    res = pr_check(repo, gh)
    assert res.code == 1, res
    assert status(gh, pull) == "failure"


def test_policy_from_base_not_head(repo: GitRepo, gh: IndependentGitHub) -> None:
    """The head commit loosens the policy but the API lists only the request (e.g. the
    policy change was sneaked into the branch history): base policies still judge."""
    loosened = (
        (repo.path / "policies/main.yaml").read_text().replace("approvals: 1", "approvals: 0")
    )
    pull = open_pr(repo, gh, {REQ: request_yaml(), "policies/main.yaml": loosened})
    pull.files = [f for f in pull.files if f["filename"] == REQ]
    res = pr_check(repo, gh)
    assert res.code == 1, res


def test_early_revocation_by_requester_and_by_stranger(
    repo: GitRepo, gh: IndependentGitHub
) -> None:
    repo.write(REQ, request_yaml())
    repo.commit("merged earlier", "2026-12-01T07:00:00Z")
    mine = open_pr(repo, gh, {REQ: None}, author="alice", number=8)
    assert pr_check(repo, gh, number=8).code == 0
    assert status(gh, mine) == "success"
    theirs = open_pr(repo, gh, {REQ: None}, author="mallory", number=9)
    assert pr_check(repo, gh, number=9).code == 1
    assert status(gh, theirs) != "success"


def test_hostile_text_rendered_inert(repo: GitRepo, gh: IndependentGitHub) -> None:
    text = request_yaml().replace(
        "Investigate INC-4821, slow checkout queries",
        "'ping @erin <img src=x onerror=alert(1)> [x](javascript:alert(1)) | ::error::boom'",
    )
    pull = open_pr(repo, gh, {REQ: text})
    gh.review(7, "dave", "APPROVED", pull.head)
    res = pr_check(repo, gh)
    assert res.code == 0, res
    body = gh.pulls[7].comments[0]["body"]
    assert "@erin" not in body
    assert "<img" not in body
    assert "](javascript:" not in body
    for line in (res.out + res.err).splitlines():
        assert not line.startswith("::error::boom")


def test_invalid_request_file_fails_with_line(repo: GitRepo, gh: IndependentGitHub) -> None:
    pull = open_pr(repo, gh, {REQ: request_yaml() + "surprise: !!python/object:os.system x\n"})
    gh.review(7, "dave", "APPROVED", pull.head)
    res = pr_check(repo, gh)
    assert res.code == 1, res
    assert status(gh, pull) == "failure"


def test_json_output(repo: GitRepo, gh: IndependentGitHub) -> None:
    pull = open_pr(repo, gh, {REQ: request_yaml()})
    gh.review(7, "erin", "APPROVED", pull.head)
    event = Path(repo.path.parent / "ev.json")
    event.write_text(json.dumps({"pull_request": {"number": 7}}))
    env = clean_env(
        GITHUB_API_URL=gh.url,
        GITHUB_TOKEN=TOKEN,
        GITHUB_REPOSITORY=gh.repo,
        GITHUB_EVENT_PATH=str(event),
    )
    res = repo.run("pr-check", "--at", AT, "--format", "json", env=env)
    assert res.code == 0, res
    json.loads(res.out)


def test_logins_compare_caselessly(repo: GitRepo, gh: IndependentGitHub) -> None:
    pull = open_pr(repo, gh, {REQ: request_yaml()}, author="Alice")
    gh.review(7, "DAVE", "APPROVED", pull.head)
    res = pr_check(repo, gh, action="submitted")
    assert res.code == 0, res
    assert status(gh, pull) == "success"


def test_one_good_one_for_someone_else_fails(repo: GitRepo, gh: IndependentGitHub) -> None:
    carol = request_yaml(
        requester="carol", scope="projects/payments-dev", role="roles/logging.viewer", ticket=None
    )
    pull = open_pr(repo, gh, {REQ: request_yaml(), "requests/carol/logs.yaml": carol})
    gh.review(7, "dave", "APPROVED", pull.head)
    res = pr_check(repo, gh)
    assert res.code == 1, res
    assert status(gh, pull) == "failure"


def test_request_at_wrong_path_fails(repo: GitRepo, gh: IndependentGitHub) -> None:
    pull = open_pr(repo, gh, {"requests/alice/sub/inc.yaml": request_yaml()})
    gh.review(7, "dave", "APPROVED", pull.head)
    res = pr_check(repo, gh)
    assert res.code == 1, res
    assert status(gh, pull) == "failure"


def test_zero_approval_policy_passes_without_reviews(repo: GitRepo, gh: IndependentGitHub) -> None:
    dev = request_yaml(scope="projects/payments-dev", role="roles/logging.viewer", ticket=None)
    pull = open_pr(repo, gh, {"requests/alice/dev.yaml": dev})
    res = pr_check(repo, gh)
    assert res.code == 0, res
    assert status(gh, pull) == "success"


def test_rename_of_someone_elses_request_fails(repo: GitRepo, gh: IndependentGitHub) -> None:
    carol = request_yaml(
        requester="carol", scope="projects/payments-dev", role="roles/logging.viewer", ticket=None
    )
    repo.write("requests/carol/logs.yaml", carol)
    repo.commit("carol's, merged earlier", "2026-12-01T07:00:00Z", author="carol")
    base = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "pr-7")
    repo.remove("requests/carol/logs.yaml")
    repo.write("requests/alice/logs.yaml", carol.replace("requester: carol", "requester: alice"))
    head = repo.commit("take over", "2026-12-01T08:00:00Z")
    repo.git("checkout", "-q", "main")
    gh.pulls[7] = Pull(
        7,
        "alice",
        head,
        base,
        [
            {
                "filename": "requests/alice/logs.yaml",
                "previous_filename": "requests/carol/logs.yaml",
                "status": "renamed",
                "sha": "2" * 40,
                "additions": 1,
                "deletions": 1,
                "changes": 2,
            },
        ],
    )
    res = pr_check(repo, gh)
    assert res.code == 1, res
    assert status(gh, gh.pulls[7]) == "failure"


def test_edit_by_requester_passes_by_stranger_fails(repo: GitRepo, gh: IndependentGitHub) -> None:
    repo.write(REQ, request_yaml())
    repo.commit("merged earlier", "2026-12-01T07:00:00Z")
    mine = open_pr(repo, gh, {REQ: request_yaml(extra="duration: 3h\n")}, author="alice", number=8)
    assert mine.files[0]["status"] == "modified"
    gh.review(8, "erin", "APPROVED", mine.head)
    assert pr_check(repo, gh, number=8).code == 0
    theirs = open_pr(
        repo, gh, {REQ: request_yaml(extra="duration: 4h\n")}, author="carol", number=9
    )
    gh.review(9, "erin", "APPROVED", theirs.head)
    assert pr_check(repo, gh, number=9).code == 1
    assert status(gh, theirs) == "failure"
