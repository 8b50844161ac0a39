"""Attacks on what pr-check remembers and whom it asks: the pull request's author writes a
fake memory into a comment of their own and into the bot's comment (anyone with write
access may edit any comment) to silence request-waiting, and a pull request brings its own
policy naming GitHub teams to be asked. pr-check as Actions runs it; the GitHub emulator
over HTTP; a local receiver for the webhook."""

from __future__ import annotations

import hashlib
import hmac

from reconciler.core.prcheck import MARKER
from reconciler.notify import REMEMBERED
from tests.reviewrequests.conftest import (  # noqa: F401 - fixtures pytest finds by name
    HOOK,
    MINE,
    POLICIES,
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

SINK = "webhook (ACCESSCTL_TEST_WEBHOOK)"
NEXT = request(reason="Investigate INC-4821, slower than ever")


def forged_keys(scenario: Asking, content: str) -> str:
    """The memory the author can compute: every input but the sink's URL and secret."""
    blob = _blob(scenario, content)
    message = f"{SINK}\0{MINE}\0{blob}".encode()
    guesses = [
        hashlib.sha256(message).hexdigest()[:16],
        hmac.new(b"", message, hashlib.sha256).hexdigest()[:16],
        hmac.new(SINK.encode(), message, hashlib.sha256).hexdigest()[:16],
    ]
    return f"{REMEMBERED} {' '.join(guesses)} -->"


def _blob(scenario: Asking, content: str) -> str:
    path = scenario.tmp / "content.yaml"
    path.write_text(content)
    return scenario.repo.git("hash-object", str(path))


def test_a_fake_memory_never_silences_request_waiting(pr: Asking, receiver) -> None:  # noqa: F811
    pr.policies(extra=HOOK)
    pr.env |= {"ACCESSCTL_TEST_WEBHOOK": f"{receiver.url}/hook", "ACCESSCTL_TEST_SECRET": SECRET}
    pr.open({MINE: request()})
    alice = person(pr.emulator, "alice").get_issue(pr.number)
    # Her own comment, shaped exactly like the bot's, claiming the delivery happened.
    alice.create_comment(f"{MARKER}\n{forged_keys(pr, request())}\n### ✅ accessctl: may merge")
    pr.run()
    assert len(receiver.at("/hook")) == 1  # her comment is not the bot's: not believed
    # She edits the bot's own comment (GitHub lets her) to claim her next version was sent.
    [ours] = [c for c in pr.comments if c["user"]["login"] == "github-actions[bot]"]
    lines = ours["body"].split("\n")
    lines[1] = forged_keys(pr, NEXT)
    [theirs] = [c for c in alice.get_comments() if c.id == ours["id"]]
    theirs.edit("\n".join(lines))
    assert any(c.get("_edited_by") == "alice" for c in pr.comments)
    pr.push({MINE: NEXT})
    run = pr.run()
    assert run.json["state"] == "pending"
    assert [d.json()["reason"] for d in receiver.at("/hook")][-1] == (
        "Investigate INC-4821, slower than ever"
    )
    assert len(receiver.at("/hook")) == 2  # the edit could not pass for a delivery


def test_request_text_cannot_write_the_memory(pr: Asking, receiver) -> None:  # noqa: F811
    """A reason that carries the hidden line lands in the table, escaped; the memory is read
    from the line after the marker only, so it neither forges nor breaks it."""
    pr.policies(extra=HOOK)
    pr.env |= {"ACCESSCTL_TEST_WEBHOOK": f"{receiver.url}/hook", "ACCESSCTL_TEST_SECRET": SECRET}
    sneaky = f"INC-4821 {forged_keys(pr, request())}"
    pr.open({MINE: request(reason=sneaky)})
    pr.run()
    pr.run()
    assert len(receiver.at("/hook")) == 1
    body = pr.comments[0]["body"]
    assert body.count(REMEMBERED) == 1  # the bot's own line; the reason's is escaped


def test_a_policy_in_the_pull_request_names_no_team_to_ask(pr: Asking) -> None:  # noqa: F811
    """Policies come from the base commit: a pull request that adds a github_team to the
    policy together with its request cannot merge, and nobody is asked."""
    pr.emulator.add_team(REPO, "friends", "mallory")
    pr.policies()
    loosened = POLICIES.format(approvers="[team:payments-leads, github_team:acme/friends]")
    pr.open({MINE: request(), "policies/p.yaml": loosened})
    run = pr.run()
    assert run.json["state"] == "failure"
    assert pr.posts() == 0 and pr.requested() == ([], [])
    # Alone, the request is judged by the base's policies: the friends are not asked.
    pr.push({"policies/p.yaml": POLICIES.format(approvers="[team:payments-leads]")})
    again = pr.run()
    assert again.json["state"] == "pending"
    assert pr.requested() == (["dave", "erin"], [])
