"""Whom pr-check asks to review a waiting request: a plan from GitHub's record, no calls.

The eligible approvers of the policy a waiting request is judged under who have not
reviewed the pull request, are not asked right now and were never asked on it before, plus
the policy's ``github_team:ORG/SLUG`` entries (teams of the repository's owner), within
GitHub's limit. Never the author or the requester (GitHub answers 422 for the author). The
use case (``reconciler.reviewing``) reads the record and makes the one request.

```python
ask = candidates(report.verdicts, report.reviews, report.author, owner="acme")
ask = ask.without(client.review_requests_made(report.pr), report.reviews)
```
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.core.escape import markdown_code, markdown_text

if TYPE_CHECKING:
    from reconciler.core.prcheck import FileVerdict

# GitHub accepts at most 15 requested reviewers on a pull request (reported by the
# maintainers of mergify, cilium and zephyr; the REST description sets no maxItems).
MAX_REVIEW_REQUESTS = 15


@dataclass(frozen=True)
class Asked:
    """Logins (lowercased) and team slugs (lowercased) asked for a review."""

    users: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.users) + len(self.teams)

    def __or__(self, other: Asked) -> Asked:
        return Asked(self.users | other.users, self.teams | other.teams)


@dataclass(frozen=True)
class ReviewRecord:
    """What the pull request says about its reviews at this run, as the gate read it (no
    extra call): who submitted a review, whose review is requested now."""

    reviewed: frozenset[str] = frozenset()
    requested: Asked = field(default_factory=Asked)


@dataclass(frozen=True)
class Ask:
    """Whom to ask now: ``users`` (logins) and ``teams`` (slugs); ``left_out`` did not fit
    GitHub's limit; ``notes`` name github_team entries that cannot be asked."""

    users: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    left_out: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.users or self.teams)

    def without(self, made: Asked, record: ReviewRecord, limit: int = MAX_REVIEW_REQUESTS) -> Ask:
        """Minus everyone ``made`` says was ever asked; teams first, then people, up to the
        room GitHub leaves next to the requests open now."""
        teams = [t for t in self.teams if t not in made.teams]
        users = [u for u in self.users if u not in made.users]
        room = max(limit - len(record.requested), 0)
        fits_teams = teams[:room]
        fits_users = users[: room - len(fits_teams)]
        left = [*teams[len(fits_teams) :], *users[len(fits_users) :]]
        return Ask(tuple(fits_users), tuple(fits_teams), tuple(left), self.notes)


def candidates(
    verdicts: Iterable[FileVerdict], record: ReviewRecord, author: str, owner: str
) -> Ask:
    """Everyone the waiting requests' policies would have asked, minus who reviewed, who is
    asked now, the author and the requesters. A github_team entry of another organisation
    than ``owner`` cannot be asked (GitHub takes only the repository owner's teams)."""
    users: set[str] = set()
    teams: set[str] = set()
    notes: list[str] = []
    excluded = {author.lower()} | record.reviewed | record.requested.users
    for v in verdicts:
        if v.state != "pending" or v.approval is None:
            continue
        requester = v.request.requester.lower() if v.request else ""
        users |= {u for u in v.approval.eligible if not u.endswith("[bot]")} - {requester}
        for entry in v.approval.policy.review_teams:
            org, _, slug = entry.partition("/")
            if org.lower() != owner.lower():
                notes.append(
                    f"github_team:{entry} (policy {v.approval.policy.name}) was not asked: "
                    f"only teams of {owner}, which owns this repository, can review here"
                )
            elif slug.lower() not in record.requested.teams:
                teams.add(slug.lower())
    return Ask(
        tuple(sorted(users - excluded)), tuple(sorted(teams)), (), tuple(dict.fromkeys(notes))
    )


@dataclass(frozen=True)
class Outcome:
    """What pr-check did about review requests in one run."""

    asked: Asked = field(default_factory=Asked)  # in this run
    open: Asked = field(default_factory=Asked)  # requested before this run and still open
    left_out: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    owner: str = ""

    def json(self) -> dict[str, object]:
        return {
            "requested": sorted(self.asked.users),
            "requested_teams": sorted(self.asked.teams),
            "open": sorted(self.open.users),
            "open_teams": sorted(self.open.teams),
            "left_out": list(self.left_out),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """Plain text (escaped by the caller), one thing per line."""
        out = []
        if self.asked:
            out.append(f"review requested from {_who(self.asked, self.owner)}")
        if self.left_out:
            out.append(
                f"not asked (GitHub takes {MAX_REVIEW_REQUESTS} review requests per pull "
                f"request): {', '.join(self.left_out)}"
            )
        return out + list(self.notes)

    def markdown(self) -> list[str]:
        """Lines for the PR comment and the job summary."""
        waiting = self.asked | self.open
        out = []
        if waiting:
            names = [markdown_code(u) for u in sorted(waiting.users)]
            names += [
                f"the team {markdown_code(f'{self.owner}/{t}')}" for t in sorted(waiting.teams)
            ]
            out.append(f"- 👀 Review requested from {_and(names)}.")
        if self.left_out:
            out.append(
                f"- Not asked, GitHub takes {MAX_REVIEW_REQUESTS} review requests per pull "
                f"request: {_and([markdown_code(x) for x in self.left_out])}."
            )
        out += [f"- {markdown_text(n)}" for n in self.notes]
        out += [f"- ⚠️ {markdown_text(w)}" for w in self.warnings]
        return out


def _who(asked: Asked, owner: str) -> str:
    return _and([*sorted(asked.users), *(f"team {owner}/{t}" for t in sorted(asked.teams))])


def _and(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
