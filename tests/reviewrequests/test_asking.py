"""The plan of whom to ask (reconciler.core.asking), table-driven: pure, no GitHub."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reconciler.core.asking import Ask, Asked, ReviewRecord, candidates
from reconciler.core.models import AccessRequest, Policy
from reconciler.core.prcheck import Approval, FileVerdict


def verdict(eligible: tuple[str, ...], teams: tuple[str, ...] = (), state: str = "pending"):
    policy = Policy(
        name="p",
        provider="gcp",
        scopes=("projects/x",),
        roles=("roles/viewer",),
        requesters=("alice",),
        approvers=(),
        approvals=1,
        max_duration=timedelta(hours=1),
        review_teams=teams,
    )
    request = AccessRequest("requests/alice/x.yaml", "alice", "gcp", "projects/x", "r", "why")
    return FileVerdict(
        request.path, "request", state, request, None, Approval(policy, 1, (), eligible)
    )  # type: ignore[arg-type]


def record(reviewed: str = "", open_users: str = "", open_teams: str = "") -> ReviewRecord:
    return ReviewRecord(
        frozenset(reviewed.split()),
        Asked(frozenset(open_users.split()), frozenset(open_teams.split())),
    )


@pytest.mark.parametrize(
    ("eligible", "teams", "rec", "users_out", "teams_out"),
    [
        (("dave", "erin"), (), record(), ("dave", "erin"), ()),
        (("dave", "erin"), (), record(reviewed="dave"), ("erin",), ()),
        (("dave", "erin"), (), record(open_users="erin"), ("dave",), ()),
        (("alice", "dave", "bob"), (), record(), ("dave",), ()),  # author alice, requester alice
        (("dave", "renovate[bot]"), (), record(), ("dave",), ()),
        (("dave",), ("acme/Leads",), record(), ("dave",), ("leads",)),
        (("dave",), ("acme/leads",), record(open_teams="leads"), ("dave",), ()),
        (("dave",), ("other/ops",), record(), ("dave",), ()),
    ],
    ids=["all", "reviewed", "open", "author", "bot", "team", "team-open", "foreign-team"],
)
def test_candidates(eligible, teams, rec, users_out, teams_out) -> None:
    ask = candidates([verdict(eligible, teams)], rec, author="bob", owner="acme")
    assert (ask.users, ask.teams) == (users_out, teams_out)
    assert bool(ask.notes) == any(t.startswith("other/") for t in teams)


def test_only_waiting_requests_ask() -> None:
    ask = candidates([verdict(("dave",), state="success")], record(), "alice", "acme")
    assert not ask and ask.users == ()


@pytest.mark.parametrize(
    ("ask", "made", "rec", "limit", "expected"),
    [
        (Ask(("a", "b"), ("t",)), Asked(frozenset({"a"})), record(), 15, Ask(("b",), ("t",))),
        (Ask(("a", "b"), ("t",)), Asked(teams=frozenset({"t"})), record(), 15, Ask(("a", "b"))),
        (Ask(("a", "b", "c"), ("t",)), Asked(), record(), 2, Ask(("a",), ("t",), ("b", "c"))),
        (Ask(("a", "b")), Asked(), record(open_users="x y"), 3, Ask(("a",), (), ("b",))),
        (Ask(("a",)), Asked(), record(open_users="x y z"), 3, Ask((), (), ("a",))),
    ],
    ids=["asked-before", "team-asked-before", "teams-first", "room-left", "no-room"],
)
def test_without_what_was_asked_and_within_the_limit(ask, made, rec, limit, expected) -> None:
    assert ask.without(made, rec, limit) == expected
