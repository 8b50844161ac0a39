"""pr-check asks the eligible approvers of a waiting request for a review, once per pull
request, through GitHub's requested-reviewers API (the emulator, over HTTP, through
PyGithub); a refusal is a warning that changes neither the verdict nor the exit code."""

from __future__ import annotations

from tests.reviewrequests.conftest import MINE, REPO, Asking, person, request


def test_approvers_are_asked_once_across_pushes_and_runs(pr: Asking) -> None:
    pr.policies()
    pr.open({MINE: request()})
    first = pr.run()
    assert (first.code, first.json["state"]) == (1, "pending")  # waiting, as documented
    assert pr.requested() == (["dave", "erin"], [])
    assert first.json["review_requests"]["requested"] == ["dave", "erin"]
    [comment] = pr.comments
    assert "Review requested from `dave` and `erin`" in comment["body"]
    assert "Review requested from `dave` and `erin`" in first.summary
    # erin takes herself off; dave's request stays open; alice pushes twice more.
    person(pr.emulator, "erin").get_pull(pr.number).delete_review_request(["erin"])
    pr.push({MINE: request(reason="Investigate INC-4821, slow queries at night")})
    second = pr.run()
    pr.push({MINE: request(reason="Investigate INC-4821, slow queries on Mondays")})
    third = pr.run()
    assert pr.posts() == 1  # one request in three runs
    assert pr.requested() == (["dave"], [])  # erin is not asked again
    assert second.json["review_requests"]["requested"] == []
    assert third.json["state"] == "pending" and third.code == 1
    # GitHub's record: exactly one review_requested event per approver.
    events = [e for e in pr.emulator.events(REPO, pr.number) if e["event"] == "review_requested"]
    assert sorted(e["requested_reviewer"]["login"] for e in events) == ["dave", "erin"]
    assert {e["actor"]["login"] for e in events} == {"github-actions[bot]"}


def test_the_record_is_read_only_when_someone_is_left_to_ask(pr: Asking) -> None:
    pr.policies()
    pr.open({MINE: request()})
    pr.emulator.reset_calls()
    first = pr.run()
    # pull, files, reviews, status, events (one page), POST, list comments, create comment
    assert first.json["github_calls"] == 8 == pr.emulator.total_calls
    assert (pr.event_reads(), pr.posts()) == (1, 1)
    pr.emulator.reset_calls()
    again = pr.run()  # both requests are open: nobody to ask, nothing read
    assert pr.event_reads() == 0 and pr.posts() == 0
    # pull, files, reviews, status, list comments, GET /user (whose comment), edit comment
    assert again.json["github_calls"] == 7 == pr.emulator.total_calls


def test_a_review_answers_the_request_and_is_not_asked_again(pr: Asking) -> None:
    pr.policies()
    pr.open({MINE: request()})
    pr.run()
    pr.review("dave", "CHANGES_REQUESTED")
    assert pr.requested() == (["erin"], [])  # GitHub takes dave off on his review
    pr.push({MINE: request(reason="Investigate INC-4821, slow queries, take two")})
    run = pr.run()
    assert run.json["state"] == "pending"
    assert pr.posts() == 1 and pr.event_reads() == 1  # dave reviewed: no record read
    assert pr.requested() == (["erin"], [])


def test_who_already_reviewed_is_not_asked(pr: Asking) -> None:
    pr.policies()
    pr.open({MINE: request()})
    old_head = pr.head
    pr.review("dave", commit_id=old_head)  # an approval of a commit that is no longer the head
    pr.push({MINE: request(reason="Investigate INC-4821, slow queries, updated")})
    run = pr.run()
    assert run.json["files"][0]["approvals"]["present"] == []  # a stale approval
    assert pr.requested() == (["erin"], [])


def test_the_author_and_the_requester_are_never_asked(pr: Asking) -> None:
    # alice may approve others' requests; on her own she is neither eligible nor asked
    # (GitHub answers 422 to a request for the author).
    pr.policies("[alice, carol, team:payments-leads]")
    pr.open({MINE: request()})
    run = pr.run()
    assert run.json["state"] == "pending"
    assert pr.requested() == (["carol", "dave", "erin"], [])
    assert not [entry for entry in pr.emulator.log if entry[2] == 422]


def test_github_teams_are_asked_as_teams_and_never_approve(pr: Asking) -> None:
    pr.emulator.add_team(REPO, "security", "sam")
    pr.policies("[team:payments-leads, github_team:acme/security, github_team:other/ops]")
    pr.open({MINE: request()})
    first = pr.run()
    assert pr.requested() == (["dave", "erin"], ["security"])
    assert first.json["review_requests"]["requested_teams"] == ["security"]
    assert "the team `acme/security`" in pr.comments[0]["body"]
    # A team of another organisation cannot review here: a note, not a request.
    assert any("github_team:other/ops" in n for n in first.json["review_requests"]["notes"])
    [event] = [e for e in pr.emulator.events(REPO, pr.number) if "requested_team" in e]
    assert event["requested_team"]["slug"] == "security"
    # sam, a member of the GitHub team but not of payments-leads, approves: not eligible.
    pr.review("sam")
    second = pr.run()
    assert (second.code, second.json["state"]) == (1, "pending")
    assert second.json["files"][0]["approvals"]["present"] == []
    assert pr.posts() == 1  # the team is not asked again either
    pr.review("erin")
    assert pr.run().json["state"] == "success"


def test_a_token_without_write_access_is_a_warning(pr: Asking) -> None:
    """A fork's token (or a job without pull-requests: write) gets 403: the gate still
    waits, with the same exit code, the same status and the warning where people look."""
    pr.policies()
    pr.open({MINE: request()})
    pr.emulator.fail(
        r"POST /repos/.*/requested_reviewers", 403, message="Resource not accessible by integration"
    )
    run = pr.run(fmt="github")
    assert run.code == 1  # what a waiting request always exits with
    assert pr.status and pr.status["state"] == "pending"
    assert pr.requested() == ([], [])
    assert "could not request a review from dave, erin" in run.stderr
    assert "pull-requests: write" in run.stderr
    assert "::warning::could not request a review from dave, erin" in run.stdout
    assert "⚠️ could not request a review from dave, erin" in run.summary
    assert "⚠️ could not request a review" in pr.comments[0]["body"]


def test_a_non_collaborator_is_a_warning_and_the_others_are_asked(pr: Asking) -> None:
    pr.emulator.add_collaborator(REPO, "alice", "dave")  # erin has no access to the repo
    pr.policies()
    pr.open({MINE: request()})
    run = pr.run()
    assert (run.code, run.json["state"]) == (1, "pending")
    assert pr.requested() == (["dave"], [])
    [warning] = run.json["review_requests"]["warnings"]
    assert warning.startswith("could not request a review from erin: GitHub:")
    assert "422: Reviews may only be requested from collaborators" in warning
    assert "give them (or the team) access" in warning


def test_a_failed_request_does_not_change_a_verdict_that_may_merge(pr: Asking) -> None:
    pr.policies()
    pr.open({MINE: request()})
    pr.review("dave")
    pr.emulator.fail(r"/requested_reviewers|/events", 403, times=5)
    run = pr.run()
    assert (run.code, run.json["state"]) == (0, "success")  # nothing to ask: no call
    assert pr.posts() == 0 and pr.event_reads() == 0


def test_no_comment_asks_nobody(pr: Asking) -> None:
    pr.policies()
    pr.open({MINE: request()})
    run = pr.run(extra=("--no-comment",))
    assert run.json["state"] == "pending" and pr.posts() == 0
    assert "--no-comment: no review requested" in run.stderr


def test_over_githubs_limit_the_rest_are_named(pr: Asking) -> None:
    people = [f"lead{i:02d}" for i in range(20)]
    pr.policies(f"[{', '.join(people)}]")
    pr.open({MINE: request()})
    run = pr.run()
    users, _ = pr.requested()
    assert users == people[:15]
    assert run.json["review_requests"]["left_out"] == people[15:]
    assert "GitHub takes 15 review requests per pull request" in pr.comments[0]["body"]
