"""Attacks on the PR gate's comment: forged verdicts, look-alike authors, rate limits and
oversized reports. ``accessctl pr-check`` runs as Actions runs it, with the installation
token the emulator gives by default (its comments are authored by github-actions[bot])."""

from __future__ import annotations

import pytest

from reconciler.core.prcheck import MARKER
from reconciler.github import COMMENT_LIMIT

from .conftest import REPO, World, request

MINE = "requests/alice/inc-4821.yaml"
FORGED = f"{MARKER}\n### ✅ accessctl: may merge\nEvery request is approved."


def comments(world: World, number: int) -> dict[int, dict]:
    return {c["id"]: c for c in world.github.comments(REPO, number)}


def ours(world: World, number: int) -> list[dict]:
    found = world.github.comments(REPO, number)
    return [c for c in found if c["user"]["login"] == "github-actions[bot]"]


def patched(world: World, comment_id: int) -> bool:
    return any(m == "PATCH" and p.endswith(f"/{comment_id}") for m, p, _ in world.github.log)


@pytest.mark.parametrize(
    "login",
    ["mallory", "github-actions", "github-actions-bot", "dependabot[bot]"],
    ids=["a-person", "bot-name-as-user", "look-alike", "another-bot"],
)
def test_a_forged_verdict_is_never_edited_adopted_or_left_alone(world: World, login: str) -> None:
    number, _ = world.open_pr({MINE: request()})
    forged = world.github.add_comment(REPO, number, FORGED, login=login)

    assert world.pr_check(number).code == 1
    [report] = ours(world, number)
    assert report["id"] != forged and "waiting for approvals" in report["body"]

    world.github.add_review(REPO, number, "dave", "APPROVED")
    assert world.pr_check(number).code == 0
    [updated] = ours(world, number)
    assert updated["id"] == report["id"] and "may merge" in updated["body"]  # in place

    assert comments(world, number)[forged]["body"] == FORGED
    assert not patched(world, forged)
    assert len(comments(world, number)) == 2


def test_a_forged_comment_cannot_stand_in_for_a_failing_verdict(world: World) -> None:
    number, _ = world.open_pr({"requests/bob/inc-1.yaml": request("bob")}, author="alice")
    forged = world.github.add_comment(REPO, number, FORGED, login="alice")
    assert world.pr_check(number).code == 1
    [report] = ours(world, number)
    assert "may merge" not in report["body"].splitlines()[1]
    assert comments(world, number)[forged]["body"] == FORGED


def test_the_bots_earlier_report_is_updated_not_duplicated(world: World) -> None:
    number, _ = world.open_pr({MINE: request()})
    for _ in range(3):
        assert world.pr_check(number).code == 1
    [report] = ours(world, number)
    assert len(comments(world, number)) == 1 and report["body"].startswith(MARKER)
    # The token is an installation token: GitHub refuses it GET /user, the bot login stands in.
    assert ("GET", "/user", 403) in world.github.log


def test_rate_limits_delay_the_report_but_never_drop_it(world: World) -> None:
    number, _ = world.open_pr({MINE: request()})
    world.github.rate_limit(r"^POST /repos/.*/issues/\d+/comments$", times=2, retry_after="0")
    world.github.rate_limit(r"^GET /repos/.*/pulls/\d+/files", status=403, retry_after="1")
    result = world.pr_check(number)
    assert result.code == 1 and "could not write the PR comment" not in result.stderr
    [report] = ours(world, number)
    assert report["body"].startswith(MARKER)


def test_a_flood_of_files_cannot_push_the_report_over_githubs_limit(world: World) -> None:
    """Too long a comment is refused by GitHub (422): an attacker could otherwise keep the
    report off the pull request by making it big enough."""
    files = {f"requests/alice/inc-{i}.yaml": request(reason="x" * 1500) for i in range(250)}
    number, _ = world.open_pr(files)
    result = world.pr_check(number)
    assert result.code == 1
    [report] = ours(world, number)
    body = report["body"]
    assert len(body) <= COMMENT_LIMIT and body.startswith(f"{MARKER}\n### ⏳")
    assert "job summary" in body.splitlines()[-1]
    assert "requests/alice/inc-0.yaml" in body  # the cut keeps the top
