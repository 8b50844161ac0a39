"""The emulator's review requests answer as GitHub does (shapes from GitHub's REST
description; the 422 messages GitHub sends), through PyGithub and accessctl's client."""

from __future__ import annotations

import pytest
from github import GithubException

from reconciler.github import GitHubClient, GitHubRefusal
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests.reviewrequests.conftest import REPO, person

HEAD, BASE = "a" * 40, "b" * 40


@pytest.fixture
def number(emulator: GitHubEmulator) -> int:
    return emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)


def client(emulator: GitHubEmulator) -> GitHubClient:
    env = {"GITHUB_API_URL": emulator.url, "GITHUB_TOKEN": DEFAULT_TOKEN, "GITHUB_REPOSITORY": REPO}
    return GitHubClient.from_env(env)


def test_request_list_remove_and_the_record(emulator: GitHubEmulator, number: int) -> None:
    emulator.add_team(REPO, "leads", "dave")
    gh = client(emulator)
    gh.request_reviewers(number, ["dave", "erin"], ["leads"])
    pull = person(emulator, "erin").get_pull(number)
    users, teams = pull.get_review_requests()
    assert [u.login for u in users] == ["dave", "erin"] and [t.slug for t in teams] == ["leads"]
    pull.delete_review_request(["erin"])
    info = gh.pull(number)
    assert info.requested_reviewers == ("dave",) and info.requested_teams == ("leads",)
    made = gh.review_requests_made(number)
    assert made.users == {"dave", "erin"} and made.teams == {"leads"}  # removed, still asked
    [removed] = [e for e in emulator.events(REPO, number) if e["event"] == "review_request_removed"]
    assert removed["actor"]["login"] == "erin" and removed["requested_reviewer"]["login"] == "erin"
    requested = [e for e in emulator.events(REPO, number) if e["event"] == "review_requested"]
    assert all(e["performed_via_github_app"]["slug"] == "github-actions" for e in requested)
    assert all(e["review_requester"]["login"] == "github-actions[bot]" for e in requested)


def test_a_submitted_review_answers_the_request(emulator: GitHubEmulator, number: int) -> None:
    client(emulator).request_reviewers(number, ["dave", "erin"])
    emulator.add_review(REPO, number, "dave", "PENDING")  # not submitted yet
    emulator.add_review(REPO, number, "erin", "COMMENTED")
    assert emulator.requested_reviewers(REPO, number) == (["dave"], [])


@pytest.mark.parametrize(
    ("reviewers", "teams", "message"),
    [
        (["Alice"], [], "Review cannot be requested from pull request author."),
        (["dave", "zoe"], [], "Reviews may only be requested from collaborators."),
        ([], ["nobody"], "Reviews may only be requested from collaborators."),
        ([f"p{i}" for i in range(16)], [], "Validation Failed"),
    ],
    ids=["the-author", "a-stranger", "a-team-without-access", "over-the-limit"],
)
def test_refusals_are_422_and_ask_nobody(
    emulator: GitHubEmulator, number: int, reviewers: list[str], teams: list[str], message: str
) -> None:
    emulator.add_collaborator(REPO, "alice", "dave", *(f"p{i}" for i in range(16)))
    with pytest.raises(GitHubRefusal) as caught:
        client(emulator).request_reviewers(number, reviewers, teams)
    assert caught.value.status == 422 and message in str(caught.value)
    assert emulator.requested_reviewers(REPO, number) == ([], [])
    assert emulator.events(REPO, number) == []


def test_a_body_without_reviewers_is_refused(emulator: GitHubEmulator, number: int) -> None:
    pull = person(emulator, "dave").get_pull(number)
    with pytest.raises(GithubException) as caught:
        pull._requester.requestJsonAndCheck("POST", f"{pull.url}/requested_reviewers", input={})
    assert caught.value.status == 422
