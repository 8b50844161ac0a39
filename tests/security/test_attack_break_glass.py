"""Attacks on break-glass by someone who can push branches and open pull requests: burying
the follow-up review (deleting or editing the file, chaining windows), settling it with a
review that is not an eligible approver's approval of the merged pull request, and taking
break-glass where it should not be had (a suspended requester, a policy found by a glob,
unsigned commits). Each is refused where a user sees it: pr-check's verdict, what the GCP
emulator holds, status and audit. Real git, the GitHub and GCP emulators over HTTP, the
CLI in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.github_emulator import GitHubEmulator
from tests.breakglass.conftest import POLICY, REPO, T0, Access, GitRepo, H, M, request
from tests.notifications.conftest import Receiver, receiver

__all__ = ["receiver"]  # the webhook receiver fixture, found by name

ALICE = "requests/alice/inc-4821.yaml"
AGAIN = "requests/alice/inc-4821-more.yaml"
ALICE_GCP = "user:alice@example.com"


def world(tmp: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver, policy: str):
    return Access(tmp, github, gcp, receiver, policy=policy)


@pytest.fixture
def access(tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver) -> Access:
    return world(tmp_path, github, gcp, receiver, POLICY)


def audit_entries(access: Access, *, at, path: str = ALICE) -> list[dict]:
    """Every audit entry of ``path``, oldest version first."""
    result = access.run("audit", "--format", "json", at=at)
    assert result.code == 0, result.output
    return [e for e in result.json["requests"] if e["file"] == path]


def codes(entry: dict) -> list[str]:
    return [a["code"] for a in entry["anomalies"]]


def test_deleting_the_file_never_hides_the_review_it_owes(access: Access) -> None:
    """alice takes break-glass, then deletes her file (no approval needed to give access
    back): once the window would have ended, the owed review must still show in status."""
    access.ask({ALICE: request()}, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0
    number, branch = access.open_pr({ALICE: None}, at=T0 + 30 * M)
    assert access.pr_check(number, at=T0 + 30 * M).code == 0
    access.merge(number, branch, at=T0 + 30 * M)
    assert access.apply(at=T0 + 35 * M).code == 0
    assert access.members() == set()

    assert access.status(at=T0 + 2 * H)[ALICE]["state"] == "break-glass-unreviewed"
    assert access.status(at=T0 + 25 * H)[ALICE]["state"] == "break-glass-review-overdue"
    [entry] = audit_entries(access, at=T0 + 25 * H)
    assert codes(entry) == ["break-glass-review-overdue"]
    strict = access.run("audit", "--fail-on-anomaly", at=T0 + 25 * H)
    assert strict.code == 1, strict.output


def test_editing_the_file_never_resets_the_review_clock(access: Access) -> None:
    """A second break-glass version of the same file, merged just before the first one's
    review falls due, owes its own review; the first stays overdue, and a review of the
    second pull request never settles the first."""
    first = access.ask({ALICE: request()}, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0
    edit = request().replace("INC-4821, need", "INC-4821 (again), need")
    second = access.ask({ALICE: edit}, at=T0 + 23 * H)
    assert access.apply(at=T0 + 23 * H + 5 * M).code == 0
    access.review(second, "dave", at=T0 + 23 * H + 10 * M)

    old, new = audit_entries(access, at=T0 + 25 * H)
    assert (old["pr"], new["pr"]) == (first, second)
    assert codes(old) == ["break-glass-review-overdue"]
    assert old["reviewed_after_by"] is None
    assert new["reviewed_after_by"] == "dave" and codes(new) == []
    assert access.run("audit", "--fail-on-anomaly", at=T0 + 25 * H).code == 1

    # Flipping the file back to a normal request (merged without approval) is refused and
    # buries nothing either.
    normal = request(duration="4h", break_glass=False)
    access.ask({ALICE: normal}, at=T0 + 26 * H)
    assert access.apply(at=T0 + 26 * H + 5 * M).code == 1
    assert access.members() == set()
    entries = audit_entries(access, at=T0 + 27 * H)
    assert codes(entries[0]) == ["break-glass-review-overdue"]
    assert entries[-1]["state"] == "rejected"


def test_status_shows_a_superseded_versions_owed_review(access: Access) -> None:
    access.ask({ALICE: request()}, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0
    edit = request().replace("INC-4821, need", "INC-4821 (again), need")
    access.ask({ALICE: edit}, at=T0 + 23 * H)
    result = access.run("status", "--format", "json", at=T0 + 25 * H)
    states = [r["state"] for r in result.json["requests"] if r["file"] == ALICE]
    assert "break-glass-review-overdue" in states


def test_reviews_that_are_no_follow_up_leave_it_owed(access: Access) -> None:
    """After the merge: a comment, an approval later dismissed, an approval by a bot account
    named like an approver, an approval given before the merge, and an approval of another
    pull request of the same requester. None settles it; erin's approval does."""
    number, branch = access.open_pr({ALICE: request()}, at=T0)
    access.review(number, "dave", at=T0 - 5 * M)  # before the merge
    access.merge(number, branch, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0
    other = access.ask({AGAIN: request(role="roles/logging.viewer", break_glass=False)}, at=T0)

    access.review(number, "dave", at=T0 + 10 * M, state="COMMENTED")
    dismissed = access.review(number, "erin", at=T0 + 11 * M)
    access.github.dismiss_review(REPO, number, dismissed, message="wrong pull request")
    access.github.add_review(
        REPO, number, "dave", "APPROVED", user_type="Bot", submitted_at=T0 + 12 * M
    )
    access.review(other, "dave", at=T0 + 13 * M)
    assert access.status(at=T0 + 20 * M)[ALICE]["state"] == "break-glass-unreviewed"
    [entry] = audit_entries(access, at=T0 + 20 * M)
    assert entry["reviewed_after_by"] is None and entry["approvers"] == ["dave"]  # before
    assert codes(entry) == ["break-glass-unreviewed"]

    access.review(number, "erin", at=T0 + 30 * M)
    assert access.status(at=T0 + 40 * M)[ALICE]["state"] == "active"
    [entry] = audit_entries(access, at=T0 + 40 * M)
    assert entry["reviewed_after_by"] == "erin" and codes(entry) == []


TEAM_POLICY = POLICY.replace(
    "approvers: [team:leads]\n    approvals: 1\n    max_duration: 8h\n    break_glass",
    "approvers: [team:leads, github_team:acme/reviewers]\n    approvals: 1\n"
    "    max_duration: 8h\n    break_glass",
)


def test_a_github_team_member_cannot_do_the_follow_up(
    tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver
) -> None:
    """``github_team:`` only says whom to ask: carol, in that team and nowhere else, is
    asked for reviews but her approval is no follow-up."""
    assert "github_team:acme/reviewers" in TEAM_POLICY
    access = world(tmp_path, github, gcp, receiver, TEAM_POLICY)
    github.add_team(REPO, "reviewers", "carol")
    number = access.ask({ALICE: request()}, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0

    access.review(number, "carol", at=T0 + 10 * M)
    assert access.status(at=T0 + 20 * M)[ALICE]["state"] == "break-glass-unreviewed"
    [entry] = audit_entries(access, at=T0 + 20 * M)
    assert codes(entry) == ["break-glass-unreviewed"]
    assert "carol" not in entry["anomalies"][0]["message"]


def test_back_to_back_windows_each_owe_their_own_review(access: Access) -> None:
    """Two break-glass files chained (the second merged as the first ends) stay two loud
    grants, each announced and each owing its review; one review settles only its own."""
    first = access.ask({ALICE: request()}, at=T0)
    assert access.apply(at=T0 + 5 * M).code == 0
    second = access.ask({AGAIN: request()}, at=T0 + 55 * M)
    assert access.apply(at=T0 + 1 * H).code == 0
    assert access.members() == {ALICE_GCP}
    loud = [b for b in access.webhook_bodies() if b["event"] == "break-glass"]
    assert [(b["request"], b["pr"]) for b in loud] == [(ALICE, first), (AGAIN, second)]

    access.review(second, "erin", at=T0 + 2 * H)
    states = access.status(at=T0 + 3 * H)
    assert states[ALICE]["state"] == "break-glass-unreviewed"
    assert states[AGAIN]["state"] == "expired"
    assert access.apply(at=T0 + 3 * H).code == 0
    assert access.members() == set()


def test_a_suspended_requester_gets_no_break_glass(
    tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver
) -> None:
    suspended = POLICY.replace(
        "providers:", "suspended:\n  - who: alice\n    reason: laptop stolen, SEC-123\nproviders:"
    )
    access = world(tmp_path, github, gcp, receiver, suspended)
    number, branch = access.open_pr({ALICE: request()}, at=T0)
    gate = access.pr_check(number, at=T0)
    assert gate.code == 1 and gate.json["state"] == "failure", gate.output
    assert "E-SUSPENDED" in gate.output and "laptop stolen" in gate.output

    access.merge(number, branch, at=T0)  # past the gate
    applied = access.apply(at=T0 + 5 * M)
    assert access.members() == set(), applied.output
    assert not [b for b in access.webhook_bodies() if b["event"] == "break-glass"]
    assert access.status(at=T0 + 10 * M)[ALICE]["state"] == "suspended"


GLOB_POLICY = POLICY.replace(
    "  - name: logs-read",
    """\
  - name: payments-any
    provider: gcp
    scopes: ['projects/payments-*']
    roles: [roles/cloudsql.viewer]
    requesters: [team:oncall]
    approvers: [frank]
    approvals: 1
    max_duration: 4h
    break_glass: {max_duration: 30m, review_within: 12h}
  - name: logs-read""",
).replace("    break_glass: {max_duration: 2h, review_within: 24h}\n", "")


def test_break_glass_found_through_a_glob_scope_keeps_that_policys_limits(
    tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver
) -> None:
    """db-read (exact scope) allows no break-glass; payments-any reaches the same project
    through a glob and allows 30 minutes, reviewed by frank within 12h. Its limits are the
    ones that hold: no longer window, and db-read's approvers cannot settle the review."""
    assert "break_glass: {max_duration: 2h" not in GLOB_POLICY
    access = world(tmp_path, github, gcp, receiver, GLOB_POLICY)
    longer, _ = access.open_pr({ALICE: request(duration="1h")}, at=T0)
    gate = access.pr_check(longer, at=T0)
    assert gate.code == 1 and gate.json["state"] == "failure"
    assert "allows break-glass access for at most 30m" in gate.output

    number = access.ask({AGAIN: request(duration="30m")}, at=T0)
    applied = access.apply(at=T0 + 5 * M)
    assert applied.code == 0, applied.output
    assert access.members() == {ALICE_GCP}
    access.review(number, "dave", at=T0 + 10 * M)  # db-read's approver, not payments-any's
    [loud] = [b for b in access.webhook_bodies() if b["event"] == "break-glass"]
    assert loud["policy"] == "payments-any" and loud["end"] == "2026-12-01T09:30:00Z"
    [entry] = audit_entries(access, at=T0 + 13 * H, path=AGAIN)
    assert codes(entry) == ["break-glass-review-overdue"]
    assert "frank" in entry["anomalies"][0]["message"]
    assert "dave" not in entry["anomalies"][0]["message"]


SIGNED_POLICY = POLICY.replace(
    "    break_glass: {max_duration: 2h",
    "    require_signed_commits: true\n    break_glass: {max_duration: 2h",
)


def test_break_glass_under_require_signed_commits_needs_the_requesters_signature(
    tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver
) -> None:
    """A stolen session could open alice's break-glass pull request and merge it (no
    approval needed): under require_signed_commits only her signature lets it through."""
    access = world(tmp_path, github, gcp, receiver, SIGNED_POLICY)
    github.add_signing_key("alice")
    origin = GitRepo(tmp_path / "origin.git", init=False)

    def opened(path: str, signed_by: str | None) -> tuple[int, str]:
        base = access.repo.head()
        head = github.commit(
            REPO, parent=base, files={path: request()}, author="alice", signed_by=signed_by
        )
        access.branches += 1
        branch = f"pr{access.branches}"
        origin.git("branch", branch, head)
        access.repo.git("fetch", "-q", "origin", f"{branch}:{branch}")
        files = origin.diff(base, head)
        return github.add_pull(
            REPO, author="alice", head_sha=head, base_sha=base, files=files
        ), branch

    unsigned, branch = opened(ALICE, None)
    gate = access.pr_check(unsigned, at=T0)
    assert gate.code == 1 and gate.json["state"] == "failure", gate.output
    assert "E-PR-UNSIGNED" in gate.output
    access.merge(unsigned, branch, at=T0)  # past the gate
    applied = access.apply(at=T0 + 5 * M)
    assert applied.code == 1 and "E-PR-UNSIGNED" in applied.output
    assert access.members() == set()

    signed, branch = opened(AGAIN, "alice")
    assert access.pr_check(signed, at=T0 + 10 * M).code == 0
    access.merge(signed, branch, at=T0 + 10 * M)
    assert access.apply(at=T0 + 15 * M).code == 1  # the unsigned one is still refused
    assert access.members() == {ALICE_GCP}
