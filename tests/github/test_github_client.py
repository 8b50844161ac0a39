"""The PyGithub adapter against the emulator: pagination, retries, rate limits, errors, the
pinned API version, comment size."""

from __future__ import annotations

import time

import pytest

from reconciler.errors import ConfigError, GitHubError
from reconciler.github import API_VERSION, COMMENT_LIMIT, GitHubClient, fit_comment
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


# ----------------------------------------------------------------------------- API version
def test_every_request_pins_the_api_version(emulator: GitHubEmulator) -> None:
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    gh = client(emulator)
    gh.pull(n)
    gh.upsert_comment(n, "<!-- m -->", "<!-- m -->\nreport")
    gh.create_status(HEAD, "pending", "waiting", "accessctl/approval")
    assert emulator.api_versions == {API_VERSION: emulator.total_calls}
    assert API_VERSION == "2022-11-28"


def test_an_api_version_github_does_not_serve_is_refused(emulator: GitHubEmulator) -> None:
    gh = client(emulator, api_version="2099-01-01")
    with pytest.raises(GitHubError, match="400"):
        gh.pull(1)


def test_the_2026_api_version_drops_merge_commit_sha(emulator: GitHubEmulator) -> None:
    """What the pinned version protects: approvals read ``merge_commit_sha``, which GitHub
    no longer sends from 2026-03-10 on."""
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    emulator.merge(REPO, n, merge_commit_sha="c" * 40)
    assert client(emulator).pull(n).merge_commit_sha == "c" * 40
    assert client(emulator, api_version="2026-03-10").pull(n).merge_commit_sha is None


# ----------------------------------------------------------------------------- rate limits
def test_429_is_retried_and_every_call_counted(emulator: GitHubEmulator) -> None:
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    emulator.rate_limit(r"^GET /repos/acme/access/pulls/\d+$", times=2, retry_after="0")
    gh = client(emulator)
    assert gh.pull(n).author == "alice"
    assert [s for _, _, s in emulator.log] == [429, 429, 200]
    assert gh.calls == 3 == emulator.total_calls


def test_429_waits_the_retry_after_seconds(emulator: GitHubEmulator) -> None:
    emulator.rate_limit(r"^POST .*/statuses/", retry_after="1")
    started = time.monotonic()
    client(emulator).create_status(HEAD, "pending", "waiting", "accessctl/approval")
    assert time.monotonic() - started >= 1.0
    assert [s for _, _, s in emulator.log] == [429, 201]


def test_429_without_retry_after_waits_for_the_reset(emulator: GitHubEmulator) -> None:
    emulator.rate_limit(r"^GET .*/pulls/", retry_after=None, reset=int(time.time()) + 1)
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    started = time.monotonic()
    assert client(emulator).pull(n).number == n
    assert 0 < time.monotonic() - started < 5
    assert [s for _, _, s in emulator.log] == [429, 200]


def test_429_that_says_nothing_waits_the_secondary_rate_wait(emulator: GitHubEmulator) -> None:
    emulator.rate_limit(r"^GET .*/pulls/", retry_after=None)
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    started = time.monotonic()
    assert client(emulator, secondary_rate_wait=0.2).pull(n).number == n
    assert time.monotonic() - started >= 0.2


def test_a_comment_edit_is_retried_on_a_rate_limit(emulator: GitHubEmulator) -> None:
    n = emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)
    gh = client(emulator)
    ours = gh.upsert_comment(n, "<!-- m -->", "<!-- m -->\none")
    emulator.rate_limit(r"^PATCH ", status=403, retry_after="0")
    assert gh.upsert_comment(n, "<!-- m -->", "<!-- m -->\ntwo") == ours
    assert [s for m, _, s in emulator.log if m == "PATCH"] == [403, 200]


@pytest.mark.parametrize("status", [429, 403])
def test_a_wait_longer_than_allowed_fails_at_once(emulator: GitHubEmulator, status: int) -> None:
    emulator.rate_limit(".", status=status, retry_after="3600", times=5)
    started = time.monotonic()
    with pytest.raises(GitHubError, match="rate limited for 3600s, longer than the 300s"):
        client(emulator).pull(1)
    assert time.monotonic() - started < 5 and len(emulator.log) == 1


def test_a_primary_rate_limit_reset_beyond_the_bound_fails_at_once(
    emulator: GitHubEmulator,
) -> None:
    emulator.rate_limit(".", retry_after=None, reset=int(time.time()) + 3600)
    with pytest.raises(GitHubError, match="rate limited"):
        client(emulator, max_rate_limit_wait=10).pull(1)
    assert len(emulator.log) == 1


# ----------------------------------------------------------------------------- comment size
def test_a_short_comment_is_sent_as_is() -> None:
    assert fit_comment("<!-- m -->\nok", "<!-- m -->") == "<!-- m -->\nok"
    assert fit_comment("ok", "<!-- m -->") == "<!-- m -->\nok"  # the marker always leads


def test_a_huge_comment_is_cut_at_a_line_with_a_pointer_to_the_summary() -> None:
    body = "<!-- m -->\n" + "".join(f"| row {i} | {'x' * 80} |\n" for i in range(2000))
    fitted = fit_comment(body, "<!-- m -->")
    assert len(fitted) <= COMMENT_LIMIT < len(body)
    assert fitted.startswith("<!-- m -->\n| row 0 |")
    kept, _, note = fitted.partition("\n\n---\n")
    assert body.startswith(kept + "\n")  # whole lines only
    assert "job summary" in note


def test_a_cut_inside_a_code_block_closes_it() -> None:
    body = "<!-- m -->\n```\n" + "line\n" * 20_000
    kept = fit_comment(body, "<!-- m -->").split("\n\n---\n")[0]
    assert kept.count("```") == 2 and kept.endswith("\n```")
