"""pr-check on break-glass requests: may merge with no approval only under a policy that
allows break-glass and only within its break-glass max_duration, with a ticket; every
other break-glass request cannot merge (failure, never waiting). The comment and the
commit status say it is break-glass and that a review is owed after the merge."""

from __future__ import annotations

import pytest

from reconciler.core.prcheck import MARKER, STATUS_CONTEXT

from .conftest import REPO, T0, Access, M, request

ALICE = "requests/alice/inc-4821.yaml"


def status_of(access: Access, number: int) -> dict:
    pull = access.github.repos[REPO].pulls[number]
    found = access.github.latest_status(REPO, pull.head_sha, STATUS_CONTEXT)
    assert found is not None
    return found


def test_passes_with_no_approval_and_says_so(access: Access) -> None:
    number, _ = access.open_pr({ALICE: request(duration="2h")})

    run = access.pr_check(number)

    assert run.code == 0, run.output
    assert run.json["state"] == "success"
    status = status_of(access, number)
    assert status["state"] == "success"
    assert "BREAK-GLASS" in status["description"] and "1d" in status["description"]
    [comment] = access.github.comments(REPO, number)
    body = comment["body"]
    assert body.startswith(MARKER)
    assert "break-glass: review required after the merge" in body
    assert "**BREAK-GLASS**" in body and "**without approval**" in body
    assert "must approve this pull request within 1d" in body
    assert "`dave`, `erin`" in body  # who may do the follow-up review
    assert "none before the merge (break-glass)" in body


FAILURES = {
    "over the break-glass max_duration": (
        {ALICE: request(duration="3h")},
        "alice",
        "E-POLICY-TOO-LONG",
        "allows break-glass access for at most 2h",
    ),
    "without a ticket": (
        {ALICE: request(ticket=None)},
        "alice",
        "E-POLICY-TICKET-MISSING",
        "a break-glass request needs a ticket",
    ),
    "by someone the policy does not list": (
        {"requests/mallory/inc-4821.yaml": request("mallory")},
        "mallory",
        "E-POLICY-NOT-REQUESTER",
        "does not list mallory",
    ),
    "with a start of its own (scheduled, not an emergency)": (
        {ALICE: request() + "start: 2026-12-02T09:00:00Z\n"},
        "alice",
        "E-POLICY-BREAK-GLASS-START",
        "begins when it is merged",
    ),
    "under a policy without break_glass": (
        {ALICE: request(role="roles/logging.viewer")},
        "alice",
        "E-POLICY-NO-BREAK-GLASS",
        "does not allow break-glass requests",
    ),
}


@pytest.mark.parametrize(("files", "author", "code", "words"), FAILURES.values(), ids=FAILURES)
def test_each_refusal_is_a_failure_never_waiting(
    access: Access, files: dict[str, str], author: str, code: str, words: str
) -> None:
    number, _ = access.open_pr(files, author=author)
    # An approval does not turn a refused break-glass request into anything else.
    access.review(number, "dave", at=T0 - 5 * M)

    run = access.pr_check(number)

    assert run.code == 1, run.output
    assert run.json["state"] == "failure"
    assert code in [f["code"] for f in run.json["findings"]]
    assert words in run.output
    assert status_of(access, number)["state"] == "failure"
    [comment] = access.github.comments(REPO, number)
    assert "cannot merge" in comment["body"] and "**BREAK-GLASS**" not in comment["body"]


def test_the_same_request_without_break_glass_waits_for_its_approval(access: Access) -> None:
    number, _ = access.open_pr({ALICE: request(break_glass=False)})
    run = access.pr_check(number)
    assert run.code == 1
    assert run.json["state"] == "pending"
    assert status_of(access, number)["state"] == "pending"
