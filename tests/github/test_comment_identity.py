"""Which PR comment is ours: written by this token's identity and starting with the marker.

Against the GitHub emulator over HTTP. The default emulator token is an installation token
(Actions' GITHUB_TOKEN): GitHub refuses it ``GET /user`` and its comments are authored by
``github-actions[bot]``. Other tokens are a person's (``GET /user`` answers) or another
GitHub App's installation token.
"""

from __future__ import annotations

import pytest

from reconciler.errors import ConfigError, GitHubError
from reconciler.github import GitHubClient
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator

from .conftest import REPO

HEAD, BASE = "a" * 40, "b" * 40
MARKER = "<!-- accessctl:pr-check -->"
FORGED = f"{MARKER}\n### ✅ accessctl: may merge\nAll requests are approved."


def client(emulator: GitHubEmulator, token: str = DEFAULT_TOKEN, **env: str) -> GitHubClient:
    base = {"GITHUB_API_URL": emulator.url, "GITHUB_TOKEN": token, "GITHUB_REPOSITORY": REPO}
    return GitHubClient.from_env({**base, **env})


def pull(emulator: GitHubEmulator) -> int:
    return emulator.add_pull(REPO, author="alice", head_sha=HEAD, base_sha=BASE)


def by_id(emulator: GitHubEmulator, number: int) -> dict[int, dict]:
    return {c["id"]: c for c in emulator.comments(REPO, number)}


def patched(emulator: GitHubEmulator, comment_id: int) -> bool:
    return any(m == "PATCH" and p.endswith(f"/{comment_id}") for m, p, _ in emulator.log)


def test_a_forged_verdict_is_neither_edited_nor_adopted(emulator: GitHubEmulator) -> None:
    n = pull(emulator)
    forged = emulator.add_comment(REPO, n, FORGED, login="mallory")
    gh = client(emulator)

    ours = gh.upsert_comment(n, MARKER, f"{MARKER}\n### ⏳ waiting for approvals")
    again = gh.upsert_comment(n, MARKER, f"{MARKER}\n### ❌ may not merge")

    comments = by_id(emulator, n)
    assert ours == again != forged and set(comments) == {forged, ours}
    assert comments[forged]["body"] == FORGED and not patched(emulator, forged)
    assert comments[ours]["user"]["login"] == "github-actions[bot]"
    assert comments[ours]["body"].endswith("may not merge")  # updated in place


def test_installation_token_finds_its_bot_comment(emulator: GitHubEmulator) -> None:
    n = pull(emulator)
    first = client(emulator).upsert_comment(n, MARKER, f"{MARKER}\none")
    emulator.reset_calls()
    gh = client(emulator)  # a later run: a new client, the same bot

    assert gh.upsert_comment(n, MARKER, f"{MARKER}\ntwo") == first
    assert gh.upsert_comment(n, MARKER, f"{MARKER}\nthree") == first
    [comment] = emulator.comments(REPO, n)
    assert comment["body"].endswith("three")
    assert ("GET", "/user", 403) in emulator.log
    assert emulator.calls["GET /user"] == 1  # asked once per client
    assert gh.identity() == "github-actions[bot]"


def test_no_marked_comment_means_no_identity_lookup(emulator: GitHubEmulator) -> None:
    n = pull(emulator)
    emulator.add_comment(REPO, n, "LGTM, and " + MARKER, login="mallory")  # not at the top
    client(emulator).upsert_comment(n, MARKER, f"{MARKER}\nreport")
    assert emulator.calls["GET /user"] == 0
    assert len(emulator.comments(REPO, n)) == 2


def test_our_own_comment_without_the_marker_at_the_top_is_not_the_report(
    emulator: GitHubEmulator,
) -> None:
    n = pull(emulator)
    note = emulator.add_comment(REPO, n, f"see {MARKER}", login="github-actions[bot]")
    created = client(emulator).upsert_comment(n, MARKER, f"{MARKER}\nreport")
    assert created != note and by_id(emulator, n)[note]["body"] == f"see {MARKER}"


def test_a_persons_token_compares_logins_case_insensitively(emulator: GitHubEmulator) -> None:
    emulator.add_token("pat", "CI-User")
    n = pull(emulator)
    earlier = emulator.add_comment(REPO, n, f"{MARKER}\nold", login="ci-user")
    bot = emulator.add_comment(REPO, n, f"{MARKER}\nold", login="github-actions[bot]")

    assert client(emulator, "pat").upsert_comment(n, MARKER, f"{MARKER}\nnew") == earlier
    comments = by_id(emulator, n)
    assert comments[earlier]["body"].endswith("new") and comments[bot]["body"].endswith("old")
    assert ("GET", "/user", 200) in emulator.log


def test_an_apps_installation_token_uses_the_configured_bot_login(
    emulator: GitHubEmulator,
) -> None:
    emulator.add_token("ghs_app", "acme-access[bot]", integration=True)
    n = pull(emulator)
    actions = emulator.add_comment(REPO, n, f"{MARKER}\nold", login="github-actions[bot]")
    gh = client(emulator, "ghs_app", ACCESSCTL_BOT_LOGIN="acme-access[bot]")

    first = gh.upsert_comment(n, MARKER, f"{MARKER}\none")
    second = gh.upsert_comment(n, MARKER, f"{MARKER}\ntwo")

    comments = by_id(emulator, n)
    assert first == second != actions and comments[first]["user"]["login"] == "acme-access[bot]"
    assert comments[actions]["body"].endswith("old") and not patched(emulator, actions)


def test_a_bot_login_that_is_no_login_is_a_configuration_error(
    emulator: GitHubEmulator,
) -> None:
    with pytest.raises(ConfigError, match="ACCESSCTL_BOT_LOGIN"):
        client(emulator, ACCESSCTL_BOT_LOGIN="not a login")


def test_a_failed_edit_is_raised_not_swallowed(emulator: GitHubEmulator) -> None:
    n = pull(emulator)
    gh = client(emulator)
    ours = gh.upsert_comment(n, MARKER, f"{MARKER}\none")
    emulator.fail(r"^PATCH /repos/.*/issues/comments/", 404, message="Not Found")
    with pytest.raises(GitHubError, match=f"editing comment {ours}"):
        gh.upsert_comment(n, MARKER, f"{MARKER}\ntwo")
    assert len(emulator.comments(REPO, n)) == 1  # no second comment behind the caller's back


def test_an_identity_lookup_refused_for_another_reason_is_an_error(
    emulator: GitHubEmulator,
) -> None:
    n = pull(emulator)
    emulator.add_comment(REPO, n, FORGED, login="mallory")
    emulator.fail(
        r"^GET /user$", 403, message="Resource protected by organization SAML enforcement."
    )
    with pytest.raises(GitHubError, match="who the token is"):
        client(emulator).upsert_comment(n, MARKER, f"{MARKER}\nreport")
    assert [c["body"] for c in emulator.comments(REPO, n)] == [FORGED]
