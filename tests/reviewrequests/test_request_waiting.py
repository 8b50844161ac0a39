"""request-waiting reaches each sink once per version (path and content) of a waiting
request file, across pr-check runs: pr-check remembers what it delivered in its own PR
comment. A local HTTP receiver stands for the webhook; GitHub is the emulator."""

from __future__ import annotations

import hashlib
import hmac

from reconciler.notify import REMEMBERED, SIGNATURE_HEADER
from tests.reviewrequests.conftest import HOOK, MINE, SECRET, Asking, request


def _wire(pr: Asking, receiver) -> None:
    pr.policies(extra=HOOK)
    pr.env |= {"ACCESSCTL_TEST_WEBHOOK": f"{receiver.url}/hook", "ACCESSCTL_TEST_SECRET": SECRET}


def _requests(receiver) -> list[str]:
    return [d.json()["request"] for d in receiver.at("/hook")]


def test_sent_once_then_again_when_the_file_changes(pr: Asking, receiver) -> None:
    _wire(pr, receiver)
    pr.open({MINE: request()})
    first, second = pr.run(), pr.run()
    assert first.code == second.code == 1  # waiting, both times
    assert _requests(receiver) == [MINE]
    assert "was sent to webhook (ACCESSCTL_TEST_WEBHOOK) before; not sent again" in second.stderr
    [comment] = pr.comments
    assert comment["body"].splitlines()[1].startswith(REMEMBERED)
    assert REMEMBERED not in second.summary  # the hidden line is the comment's alone
    pr.push({})  # a new head commit, the same content: nothing new to announce
    pr.run()
    assert _requests(receiver) == [MINE]
    pr.push({MINE: request(reason="Investigate INC-4821, the queries got slower")})
    pr.run()
    pr.run()
    deliveries = receiver.at("/hook")
    assert _requests(receiver) == [MINE, MINE]
    assert deliveries[1].json()["reason"] == "Investigate INC-4821, the queries got slower"
    for d in deliveries:
        expected = "sha256=" + hmac.new(SECRET.encode(), d.raw, hashlib.sha256).hexdigest()
        assert d.headers[SIGNATURE_HEADER] == expected


def test_a_failed_delivery_is_tried_again_at_the_next_run(pr: Asking, receiver) -> None:
    _wire(pr, receiver)
    pr.open({MINE: request()})
    receiver.status = 503
    down = pr.run()
    assert (down.code, down.json["state"]) == (1, "pending")  # the gate does not care
    assert "notification webhook (ACCESSCTL_TEST_WEBHOOK) not delivered" in down.stderr
    attempts = len(receiver.at("/hook"))
    receiver.status = 200
    pr.run()
    pr.run()
    assert len(receiver.at("/hook")) == attempts + 1  # delivered once, at the next run
    assert receiver.url not in down.stdout + down.stderr and SECRET not in down.stderr


def test_each_sink_remembers_for_itself(pr: Asking, receiver) -> None:
    """A sink the check job gets the variable of only later receives the waiting request
    then; the sink that had it does not receive it twice."""
    other = HOOK.replace("notifications:\n", "").replace("TEST_WEBHOOK", "OTHER_WEBHOOK")
    pr.policies(extra=HOOK + other)
    pr.env |= {"ACCESSCTL_TEST_WEBHOOK": f"{receiver.url}/hook", "ACCESSCTL_TEST_SECRET": SECRET}
    pr.open({MINE: request()})
    first = pr.run()
    assert "ACCESSCTL_OTHER_WEBHOOK is not set" in first.stderr
    pr.env |= {"ACCESSCTL_OTHER_WEBHOOK": f"{receiver.url}/other"}
    pr.run()
    pr.run()
    assert len(receiver.at("/hook")) == 1 and len(receiver.at("/other")) == 1
