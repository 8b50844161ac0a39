"""Review requests as a use case: pr-check asks the approvers of a waiting request, once.

Whom to ask is planned by ``reconciler.core.asking`` from what the gate already read (the
pull request's open requests and its reviews). Who was asked before comes from GitHub's own
record, the pull request's ``review_requested`` events, read only when someone is left to
ask: never from anything the pull request could write. A request GitHub refuses (403 for
a token without ``pull-requests: write``, 422 for someone who is not a collaborator) is a
warning; it never changes the gate's verdict or its exit code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from reconciler.core import asking
from reconciler.core.asking import Ask, Asked, Outcome
from reconciler.core.prcheck import Report
from reconciler.errors import AccessctlError
from reconciler.github import GitHubClient, GitHubRefusal

HINTS = {
    403: "the check job's token needs `pull-requests: write` (a pull request from a fork "
    "never gets it)",
    422: "GitHub asks only collaborators of the repository: give them (or the team) access to it",
}


def request_reviews(client: GitHubClient, report: Report) -> Outcome:
    """Ask whoever a waiting request still needs and nobody asked yet on this pull request."""
    owner = client.repository.split("/")[0]
    done = Outcome(open=report.reviews.requested, owner=owner)
    if report.state != "pending":
        return done
    plan = asking.candidates(report.verdicts, report.reviews, report.author, owner)
    done = replace(done, notes=plan.notes)
    if not plan:
        return done
    try:
        made = client.review_requests_made(report.pr)
    except AccessctlError as exc:
        # Without the record, asking could repeat on every push: ask nobody this time.
        warning = f"no review requested: could not read who was asked before: {exc}"
        return replace(done, warnings=(warning,))
    plan = plan.without(made, report.reviews)
    done = replace(done, left_out=plan.left_out)
    if not plan:
        return done
    asked, warnings = _ask(client, report.pr, plan)
    return replace(done, asked=asked, warnings=warnings)


def _ask(client: GitHubClient, number: int, plan: Ask) -> tuple[Asked, tuple[str, ...]]:
    """One request for everyone; when GitHub refuses it with 422 (one of them cannot be
    asked, and then nobody is), one request each, so that the others are still asked."""
    try:
        client.request_reviewers(number, plan.users, plan.teams)
    except AccessctlError as exc:
        several = len(plan.users) + len(plan.teams) > 1
        if not (several and isinstance(exc, GitHubRefusal) and exc.status == 422):
            return Asked(), (_warning(plan.users, plan.teams, exc),)
    else:
        return Asked(frozenset(plan.users), frozenset(plan.teams)), ()
    users: set[str] = set()
    teams: set[str] = set()
    warnings = []
    for user, team in [*((u, None) for u in plan.users), *((None, t) for t in plan.teams)]:
        try:
            client.request_reviewers(number, [user] if user else [], [team] if team else [])
        except AccessctlError as exc:
            warnings.append(_warning([user] if user else [], [team] if team else [], exc))
        else:
            (users if user else teams).add(user or team or "")
    return Asked(frozenset(users), frozenset(teams)), tuple(warnings)


def _warning(users: Sequence[str], teams: Sequence[str], exc: AccessctlError) -> str:
    who = ", ".join([*users, *(f"team {t}" for t in teams)])
    hint = HINTS.get(exc.status, "") if isinstance(exc, GitHubRefusal) else ""
    return f"could not request a review from {who}: {exc}" + (f"; {hint}" if hint else "")
