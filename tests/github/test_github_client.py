"""The PyGithub adapter against the emulator: pagination, retries, rate limits, errors."""

from __future__ import annotations

import pytest

from reconciler.errors import ConfigError, GitHubError
from reconciler.github import GitHubClient
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator

from .conftest import REPO

HEAD, BASE = "a" * 40, "b" * 40


def client(emulator: GitHubEmulator, **kw: object) -> GitHubClient:
    return GitHubClient(emulator.url, DEFAULT_TOKEN, REPO, retries=3, backoff=0, **kw)  # type: ignore[arg-type]


def test_files_and_reviews_are_paginated(emulator: GitHubEmulator) -> None:
    files = [{"filename": f"requests/alice/f{i}.yaml", "status": "added"} for i in range(250)]
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE, files=files)
    for i in range(120):
        emulator.add_review(REPO, n, f"user{i}", "COMMENTED")
    gh = client(emulator)

    assert [f.path for f in gh.pull_files(n)] == [f["filename"] for f in files]
    assert len(gh.pull_reviews(n)) == 120
    assert emulator.calls["GET /repos/{o}/{r}/pulls/{n}/files"] == 3
    assert emulator.calls["GET /repos/{o}/{r}/pulls/{n}/reviews"] == 2
    assert gh.calls == 5 == emulator.total_calls


def test_renames_carry_the_previous_path(emulator: GitHubEmulator) -> None:
    files = [
        {
            "filename": "requests/alice/b.yaml",
            "status": "renamed",
            "previous_filename": "requests/alice/a.yaml",
        }
    ]
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE, files=files)
    [f] = client(emulator).pull_files(n)
    assert (f.path, f.status, f.previous) == (
        "requests/alice/b.yaml",
        "renamed",
        "requests/alice/a.yaml",
    )


def test_server_errors_are_retried(emulator: GitHubEmulator) -> None:
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    emulator.fail(r"GET /repos/acme/access/pulls/\d+$", 502, times=2)
    assert client(emulator).pull(n).author == "alice"
    assert [s for _, _, s in emulator.log] == [502, 502, 200]


def test_secondary_rate_limit_is_waited_out(emulator: GitHubEmulator) -> None:
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    emulator.secondary_rate_limit(r"POST .*/statuses/", times=1)
    client(emulator).create_status(HEAD, "pending", "waiting", "accessctl/approval")
    assert [s for _, _, s in emulator.log] == [403, 201]
    assert emulator.latest_status(REPO, HEAD, "accessctl/approval")["state"] == "pending"  # type: ignore[index]
    assert n


def test_persistent_failure_is_a_github_error(emulator: GitHubEmulator) -> None:
    emulator.fail(".", 503, times=10)
    with pytest.raises(GitHubError, match="reading pull request #1 failed"):
        client(emulator).pull(1)


def test_bad_token_is_a_configuration_error(emulator: GitHubEmulator) -> None:
    gh = GitHubClient(emulator.url, "wrong", REPO, retries=0)
    with pytest.raises(ConfigError, match="401"):
        gh.pull(1)


def test_from_env_requires_token_and_repository() -> None:
    with pytest.raises(ConfigError, match="GITHUB_TOKEN"):
        GitHubClient.from_env({"GITHUB_REPOSITORY": REPO})
    with pytest.raises(ConfigError, match="OWNER/NAME"):
        GitHubClient.from_env({"GITHUB_TOKEN": "t", "GITHUB_REPOSITORY": "nope"})


def test_long_status_descriptions_are_cut_to_fit(emulator: GitHubEmulator) -> None:
    client(emulator).create_status(HEAD, "failure", "x" * 500, "accessctl/approval")
    status = emulator.latest_status(REPO, HEAD, "accessctl/approval")
    assert status is not None and len(status["description"]) == 140


def test_a_persons_token_finds_its_own_comment(emulator: GitHubEmulator) -> None:
    emulator.add_token("pat", "CI-User")  # a person's token: GET /user answers its login
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    gh = GitHubClient(emulator.url, "pat", REPO, retries=0)
    first = gh.upsert_comment(n, "<!-- m -->", "<!-- m -->\none")
    second = gh.upsert_comment(n, "<!-- m -->", "<!-- m -->\ntwo")
    [comment] = emulator.comments(REPO, n)
    assert first == second == comment["id"] and comment["body"].endswith("two")
    assert gh.identity() == "CI-User" and emulator.calls["GET /user"] == 1
