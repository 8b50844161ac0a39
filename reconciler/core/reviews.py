"""SPEC §3's approval rule: which pull request reviews count as approvals.

A reviewer counts when their latest state-bearing review is ``APPROVED`` and was
submitted on the pull request's current head commit. ``COMMENTED`` and ``PENDING``
reviews carry no state (as on GitHub, a comment after an approval leaves it standing);
``DISMISSED`` and ``CHANGES_REQUESTED`` cancel an earlier approval. The PR author, the
requester and bots never count. Eligibility against a policy is ``evaluate()``'s job.

A break-glass request's follow-up review (``follow_up``) is the other side of the merge:
an approval submitted after it, which never counts toward ``approvers``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# Review states that say nothing about approval; they never supersede an earlier verdict.
_STATELESS = frozenset({"COMMENTED", "PENDING"})


@dataclass(frozen=True)
class Review:
    """One pull request review as GitHub reports it."""

    id: int
    login: str
    state: str  # APPROVED | CHANGES_REQUESTED | COMMENTED | DISMISSED | PENDING
    commit_id: str | None
    submitted_at: datetime | None = None
    user_type: str = "User"  # "Bot" for apps

    @property
    def is_bot(self) -> bool:
        return self.user_type == "Bot" or self.login.lower().endswith("[bot]")


def _order(review: Review) -> tuple[float, int]:
    # Unsubmitted (pending) reviews have no time; they sort first and carry no state anyway.
    stamp = review.submitted_at.timestamp() if review.submitted_at else float("-inf")
    return (stamp, review.id)


def latest_verdicts(reviews: Iterable[Review]) -> dict[str, Review]:
    """Lowercased login -> that reviewer's latest state-bearing review."""
    latest: dict[str, Review] = {}
    for review in sorted(reviews, key=_order):
        if review.state.upper() in _STATELESS:
            continue
        latest[review.login.lower()] = review
    return latest


def approvers(
    reviews: Iterable[Review],
    head_sha: str,
    *,
    pr_author: str | None,
    requester: str | None = None,
    before: datetime | None = None,
) -> frozenset[str]:
    """Lowercased logins whose approval counts on ``head_sha`` (before policy eligibility).
    ``before`` (the merge time): a review submitted after it never counts, since GitHub
    lets anyone approve a pull request that is already merged."""
    excluded = {x.lower() for x in (pr_author, requester) if x}
    if before is not None:
        reviews = [r for r in reviews if r.submitted_at is not None and r.submitted_at <= before]
    return frozenset(
        login
        for login, review in latest_verdicts(reviews).items()
        if review.state.upper() == "APPROVED"
        and review.commit_id == head_sha
        and not review.is_bot
        and login not in excluded
    )


def follow_up(
    reviews: Iterable[Review],
    merged_at: datetime,
    *,
    eligible: frozenset[str],
    excluded: Iterable[str] = (),
) -> Review | None:
    """The review that settles a break-glass request after its merge: the earliest approval,
    submitted after ``merged_at``, by an ``eligible`` reviewer (lowercased logins) who is
    not ``excluded`` (the requester, the PR author) nor a bot, and whose verdict since then
    still stands (a later dismissal or change request takes it back). Approvals given
    before the merge never count here, and this never counts toward ``approvers``."""
    out = {x.lower() for x in excluded}
    standing: dict[str, Review | None] = {}
    after = (r for r in reviews if r.submitted_at is not None and r.submitted_at > merged_at)
    for review in sorted(after, key=_order):
        state, login = review.state.upper(), review.login.lower()
        if state in _STATELESS or review.is_bot or login in out or login not in eligible:
            continue
        if state != "APPROVED":
            standing[login] = None
        elif standing.get(login) is None:
            standing[login] = review
    approvals = [r for r in standing.values() if r is not None]
    return min(approvals, key=_order, default=None)
