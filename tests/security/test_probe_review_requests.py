"""Probes of review requests and the request-waiting memory by a pull request's author
(write access: branches, pull requests, comments, anybody's comment edits): a memory line
replayed from another pull request's bot comment, review requests removed and pushes
repeated to have the approvers asked again and again, and GitHub and the sinks down while
pr-check runs. pr-check as Actions runs it, the GitHub emulator over HTTP (PyGithub on
both sides), a real git clone, a local receiver for the webhook."""

from __future__ import annotations

import json

from reconciler.core.prcheck import MARKER
from reconciler.notify import REMEMBERED
from tests.reviewrequests.conftest import (  # noqa: F401 - fixtures pytest finds by name
    HOOK,
    MINE,
    REPO,
    SECRET,
    Asking,
    emulator,
    git_repo,
    github_env,
    person,
    pr,
    receiver,
    request,
)


def _wire(pr: Asking, receiver) -> None:  # noqa: F811
    pr.policies(extra=HOOK)
    pr.env |= {"ACCESSCTL_TEST_WEBHOOK": f"{receiver.url}/hook", "ACCESSCTL_TEST_SECRET": SECRET}


def _ours(pr: Asking) -> dict:  # noqa: F811
    [ours] = [c for c in pr.comments if c["user"]["login"] == "github-actions[bot]"]
    return ours


def _second_pull(pr: Asking, files: dict[str, str | None]) -> None:  # noqa: F811
    """Another pull request by alice from a new branch off the same base."""
    pr.repo.run_git("checkout", "-q", "-b", "again", pr.base)
    pr.head = pr.repo.commit(files, "request again", author="alice")
    pr.number = pr.emulator.add_pull(
        REPO, author="alice", head_sha=pr.head, base_sha=pr.base, files=pr.diff()
    )


def test_a_memory_replayed_from_another_pull_request_stands_for_nothing(
    pr: Asking,  # noqa: F811
    receiver,  # noqa: F811
) -> None:
    """Found a bug (fixed): a key stood for a sink, a path and a content only, so the line
    of a closed pull request's bot comment, copied into a new pull request's bot comment
    before the same request file arrives there, silenced request-waiting for it. Keys now
    also name the repository and the pull request."""
    _wire(pr, receiver)
    pr.open({MINE: request()})
    pr.run()
    assert len(receiver.at("/hook")) == 1
    replayed = _ours(pr)["body"].split("\n")[1]
    assert replayed.startswith(REMEMBERED)
    first = pr.number
    pr.emulator.close(REPO, first)
    # A second pull request: first a version that cannot merge (the bot comments, nothing is
    # sent), then alice writes the old line into the bot's comment, then pushes the content
    # the closed pull request announced.
    _second_pull(pr, {MINE: request(ticket="none")})
    assert pr.run().json["state"] == "failure"
    assert len(receiver.at("/hook")) == 1
    ours = _ours(pr)
    lines = ours["body"].split("\n")
    assert lines[0] == MARKER
    [theirs] = [
        c for c in person(pr.emulator, "alice").get_issue(pr.number).get_comments()
        if c.id == ours["id"]
    ]  # fmt: skip
    theirs.edit("\n".join([lines[0], replayed, *lines[1:]]))
    pr.push({MINE: request()})
    run = pr.run()
    assert run.json["state"] == "pending"
    deliveries = receiver.at("/hook")
    assert len(deliveries) == 2, run.stderr  # announced for this pull request too
    assert deliveries[-1].json()["pr"] == pr.number != first


def test_removing_the_request_and_pushing_again_never_asks_twice(pr: Asking) -> None:  # noqa: F811
    """Refused already: who was asked comes from GitHub's own record of the pull request
    (its review_requested events), which a removal does not erase, so an author who takes
    the requests off and pushes again and again cannot make pr-check ask the approvers
    (or spam them) a second time."""
    pr.policies()
    pr.open({MINE: request()})
    pr.run()
    assert pr.requested() == (["dave", "erin"], [])
    alice = person(pr.emulator, "alice").get_pull(pr.number)
    for n in range(4):
        alice.delete_review_request(reviewers=["dave", "erin"])
        assert pr.requested() == ([], [])
        pr.push({MINE: request(reason=f"Investigate INC-4821, attempt {n}")})
        run = pr.run()
        assert run.json["state"] == "pending"
    assert pr.posts() == 1  # one request, at the first run
    assert pr.requested() == ([], [])


def test_github_and_the_sinks_down_never_change_the_verdict(
    pr: Asking,  # noqa: F811
    receiver,  # noqa: F811
    tmp_path,
) -> None:
    """Refused already: with the review-request routes, the issue events and the webhook
    failing on every attempt, a waiting request is still judged pending (exit 1, the
    status and --json-out say so), an approved one success (exit 0); each failure is a
    warning, with no URL or secret in it."""
    _wire(pr, receiver)
    receiver.status = 503
    pr.open({MINE: request()})
    pr.emulator.fail(r"/requested_reviewers|/issues/\d+/events", 502, times=200)
    out = tmp_path / "state.json"
    run = pr.run(extra=("--json-out", str(out)))
    assert (run.code, run.json["state"]) == (1, "pending")
    assert json.loads(out.read_text())["state"] == "pending"
    assert pr.status and pr.status["state"] == "pending"
    assert "warning:" in run.stderr and "not delivered" in run.stderr
    assert receiver.url not in run.stdout + run.stderr and SECRET not in run.stderr
    pr.review("dave")
    approved = pr.run(extra=("--json-out", str(out)))
    assert (approved.code, approved.json["state"]) == (0, "success")
    assert json.loads(out.read_text())["state"] == "success"
    assert pr.status and pr.status["state"] == "success"
