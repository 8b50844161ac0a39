"""SPEC §3's approval rule, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.reviews import Review, approvers

HEAD = "h" * 40
OLD = "o" * 40
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def r(
    i: int, login: str, state: str, commit: str = HEAD, kind: str = "User", at: int | None = None
) -> Review:
    when = T0 + timedelta(minutes=i if at is None else at)
    return Review(
        id=i, login=login, state=state, commit_id=commit, submitted_at=when, user_type=kind
    )


CASES = [
    ("single approval on head", [r(1, "dave", "APPROVED")], {"dave"}),
    ("approval on an older commit", [r(1, "dave", "APPROVED", OLD)], set()),
    (
        "approval on old, then on head",
        [r(1, "dave", "APPROVED", OLD), r(2, "dave", "APPROVED")],
        {"dave"},
    ),
    ("self-approval by the PR author", [r(1, "Alice", "APPROVED")], set()),
    ("approval by the requester", [r(1, "carol", "APPROVED")], set()),
    ("dismissed approval", [r(1, "dave", "DISMISSED")], set()),
    ("approved, then dismissed", [r(1, "dave", "APPROVED"), r(2, "dave", "DISMISSED")], set()),
    (
        "approved, then changes requested",
        [r(1, "dave", "APPROVED"), r(2, "dave", "CHANGES_REQUESTED")],
        set(),
    ),
    (
        "changes requested, then approved",
        [r(1, "dave", "CHANGES_REQUESTED"), r(2, "dave", "APPROVED")],
        {"dave"},
    ),
    (
        "a comment after approval leaves it",
        [r(1, "dave", "APPROVED"), r(2, "dave", "COMMENTED")],
        {"dave"},
    ),
    (
        "pending review ignored",
        [Review(5, "dave", "PENDING", HEAD, None), r(1, "dave", "APPROVED")],
        {"dave"},
    ),
    ("bot by type", [r(1, "dependabot", "APPROVED", kind="Bot")], set()),
    ("bot by login suffix", [r(1, "renovate[bot]", "APPROVED")], set()),
    (
        "login case folded, latest wins",
        [r(1, "Dave", "APPROVED"), r(2, "dave", "CHANGES_REQUESTED")],
        set(),
    ),
    (
        "same time: id orders",
        [r(2, "dave", "APPROVED", at=0), r(1, "dave", "CHANGES_REQUESTED", at=0)],
        {"dave"},
    ),
    ("two approvers", [r(1, "dave", "APPROVED"), r(2, "erin", "APPROVED")], {"dave", "erin"}),
    ("listed out of order", [r(2, "dave", "CHANGES_REQUESTED"), r(1, "dave", "APPROVED")], set()),
]


@pytest.mark.parametrize(("reviews", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_approvers(reviews: list[Review], expected: set[str]) -> None:
    assert approvers(reviews, HEAD, pr_author="alice", requester="Carol") == frozenset(expected)
