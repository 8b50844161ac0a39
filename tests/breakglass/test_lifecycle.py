"""Break-glass from the merge to its follow-up review: apply grants it without approval and
says so (the break-glass event to a signed webhook, break_glass: true in the ledger);
status and audit show it unreviewed, then reviewed by an eligible approver's approval of
the merged pull request, or overdue. A normal request's post-merge review never becomes
an approval. The GitHub and GCP emulators over HTTP, real git, the CLI."""

from __future__ import annotations

from .conftest import T0, Access, H, M, request

ALICE = "requests/alice/inc-4821.yaml"


def test_granted_without_approval_loudly_then_cleared_by_a_follow_up_review(
    access: Access,
) -> None:
    pr = access.ask({ALICE: request()}, at=T0)

    planned = access.run("plan", at=T0 + 5 * M)
    assert "BREAK-GLASS: allowed by policy db-read without approval" in planned.output
    applied = access.apply(at=T0 + 5 * M)
    assert applied.code == 0, applied.output
    assert access.members() == {"user:alice@example.com"}
    [line] = [x for x in access.ledger_lines() if x["action"] == "grant"]
    assert line["request"] == ALICE and line["break_glass"] is True and line["ok"] is True
    events = {b["event"]: b for b in access.webhook_bodies()}
    assert set(events) == {"granted", "break-glass"}
    loud = events["break-glass"]
    assert (loud["request"], loud["requester"], loud["pr"]) == (ALICE, "alice", pr)
    assert loud["policy"] == "db-read" and loud["end"] == "2026-12-01T10:00:00Z"
    assert "without approval" in loud["summary"]
    assert f"pull request #{pr} by 2026-12-02T09:00:00Z" in loud["message"]

    # Until an eligible approver approves the merged pull request: unreviewed.
    assert access.status(at=T0 + 10 * M)[ALICE]["state"] == "break-glass-unreviewed"
    entry = access.audit(at=T0 + 10 * M)[ALICE]
    assert entry["state"] == "active" and entry["break_glass"] is True
    assert entry["approvers"] == [] and entry["reviewed_after_by"] is None
    assert [a["code"] for a in entry["anomalies"]] == ["break-glass-unreviewed"]
    assert "dave, erin" in entry["anomalies"][0]["message"]

    # The requester's own review, and an ineligible reviewer's, settle nothing.
    access.review(pr, "alice", at=T0 + 15 * M)
    access.review(pr, "bob", at=T0 + 16 * M)
    assert access.status(at=T0 + 20 * M)[ALICE]["state"] == "break-glass-unreviewed"

    access.review(pr, "dave", at=T0 + 30 * M)
    assert access.status(at=T0 + 40 * M)[ALICE]["state"] == "active"
    entry = access.audit(at=T0 + 40 * M)[ALICE]
    assert (entry["reviewed_after_by"], entry["reviewed_after_at"]) == (
        "dave",
        "2026-12-01T09:30:00Z",
    )
    assert entry["approvers"] == []  # the follow-up is never an approval
    assert entry["anomalies"] == []
    text = access.run("audit", at=T0 + 40 * M).stdout
    assert f"{ALICE} @" in text and "[active]  BREAK-GLASS" in text
    assert "approved    by nobody: break-glass" in text
    assert "2026-12-01T09:30:00Z  reviewed    after the merge by dave" in text
    markdown = access.run("audit", "--format", "markdown", at=T0 + 40 * M).stdout
    assert "reviewed after the merge by dave at 2026-12-01T09:30:00Z" in markdown
    assert "🚨 break-glass" in markdown
    # As of a time before the review, the trail still shows it owed.
    before = access.audit(at=T0 + 20 * M)[ALICE]
    assert [a["code"] for a in before["anomalies"]] == ["break-glass-unreviewed"]


def test_the_recorded_approval_never_hides_the_later_review(access: Access) -> None:
    """apply keeps the approvals it verified on its ledger branch (no review yet); the
    follow-up given afterwards is still seen, by status and audit alike."""
    pr = access.ask({ALICE: request()}, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0
    assert access.apply(at=T0 + 10 * M).code == 0  # idle: reads the recorded approval
    access.github.reset_calls()
    access.review(pr, "erin", at=T0 + 12 * M)
    assert access.status(at=T0 + 20 * M)[ALICE]["state"] == "active"
    assert access.audit(at=T0 + 20 * M)[ALICE]["reviewed_after_by"] == "erin"
    # One look at the reviews per run, for the one break-glass pull request.
    assert access.github.calls["GET /repos/{o}/{r}/pulls/{n}/reviews"] == 2


def test_overdue_after_review_within_and_a_late_review_stays_on_the_record(
    access: Access,
) -> None:
    pr = access.ask({ALICE: request()}, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0
    assert access.apply(at=T0 + 2 * H).code == 0  # revoked at its end
    assert access.members() == set()

    assert access.status(at=T0 + 23 * H)[ALICE]["state"] == "break-glass-unreviewed"
    assert access.status(at=T0 + 25 * H)[ALICE]["state"] == "break-glass-review-overdue"
    entry = access.audit(at=T0 + 25 * H)[ALICE]
    assert entry["state"] == "expired"
    assert [a["code"] for a in entry["anomalies"]] == ["break-glass-review-overdue"]

    access.review(pr, "dave", at=T0 + 26 * H)
    assert access.status(at=T0 + 27 * H)[ALICE]["state"] == "expired"
    entry = access.audit(at=T0 + 27 * H)[ALICE]
    assert entry["reviewed_after_by"] == "dave"
    [late] = entry["anomalies"]
    assert late["code"] == "break-glass-review-overdue" and "came 2h after" in late["message"]


def test_a_normal_requests_post_merge_review_is_never_an_approval(access: Access) -> None:
    """Merged past the gate without its approval; an approver approves afterwards."""
    normal = request(duration="4h", break_glass=False)
    pr = access.ask({ALICE: normal}, at=T0)
    access.review(pr, "dave", at=T0 + 1 * M)

    applied = access.apply(at=T0 + 5 * M)
    assert applied.code == 1
    assert access.members() == set()
    assert "E-REFUSED-APPROVALS-MISSING" in applied.output
    entry = access.audit(at=T0 + 10 * M)[ALICE]
    assert (entry["state"], entry["approvers"]) == ("rejected", [])
    assert (entry["break_glass"], entry["reviewed_after_by"]) == (False, None)
    assert access.status(at=T0 + 10 * M)[ALICE]["state"] == "rejected"
    assert access.webhook_bodies() == []


def test_github_down_leaves_the_follow_up_unverified_not_accused(access: Access) -> None:
    access.ask({ALICE: request()}, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0
    access.github.fail(r"GET /repos/.*/pulls/\d+/reviews", 502, times=50)

    status = access.run("status", "--format", "json", at=T0 + 25 * H)
    assert status.code == 1
    assert "GitHub could not be read" in status.stderr
    [row] = status.json["requests"]
    assert row["state"] == "expired"  # not "overdue": unknown is not an accusation
    audit = access.run("audit", "--format", "json", at=T0 + 25 * H)
    assert audit.code == 1
    [entry] = audit.json["requests"]
    codes = [a["code"] for a in entry["anomalies"]]
    assert "unverified" in codes and not any(c.startswith("break-glass") for c in codes)
