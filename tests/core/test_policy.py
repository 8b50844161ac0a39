"""Policy evaluation: a table of decisions, and properties of windows and durations."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.models import AccessRequest, Approvals, Config, Policy, Reason
from reconciler.core.policy import TicketPattern, compute_window, evaluate
from reconciler.core.timeutil import format_duration, parse_duration

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)


def pol(name: str, **kw: object) -> Policy:
    base: dict[str, object] = {
        "provider": "gcp",
        "scopes": ("projects/payments-prod",),
        "roles": ("roles/cloudsql.viewer",),
        "requesters": ("team:oncall", "bob"),
        "approvers": ("team:leads",),
        "approvals": 1,
        "max_duration": 4 * H,
    }
    base.update(kw)
    return Policy(name=name, **base)  # type: ignore[arg-type]


CONFIG = Config(
    policies=(
        pol("db-read", ticket=TicketPattern.compile(r"(INC|CHG)-[0-9]+")),
        pol(
            "nonprod",
            scopes=("projects/payments-*",),
            roles=("roles/logging.viewer",),
            approvals=0,
            max_duration=24 * H,
        ),
        pol(
            "aws",
            provider="aws",
            scopes=("111122223333",),
            roles=("ReadOnlyAccess",),
            max_duration=8 * H,
        ),
    ),
    teams={"oncall": frozenset({"alice", "carol"}), "leads": frozenset({"dave", "erin"})},
    identities={
        "alice": {"gcp": "user:alice@example.com", "aws": "alice@example.com"},
        "bob": {"gcp": "user:bob@example.com"},
        "carol": {"gcp": "user:carol@example.com"},
        "dave": {"gcp": "user:dave@example.com"},
    },
)


# a second policy over the same scope and role, for one requester, longer, two approvals
WITH_LONG = replace(
    CONFIG,
    policies=(
        *CONFIG.policies,
        pol(
            "db-read-long",
            requesters=("carol",),
            max_duration=12 * H,
            approvers=("dave", "erin"),
            approvals=2,
        ),
    ),
)


def req(**kw: object) -> AccessRequest:
    base: dict[str, object] = {
        "path": "requests/alice/inc-1.yaml",
        "requester": "alice",
        "provider": "gcp",
        "scope": "projects/payments-prod",
        "role": "roles/cloudsql.viewer",
        "reason": "Investigate INC-1 slow queries",
        "ticket": "INC-1",
        "duration": 2 * H,
    }
    base.update(kw)
    return AccessRequest(**base)  # type: ignore[arg-type]


# (id, request changes, approvals, allowed policy or None, expected refusal reasons)
DECISIONS: list[tuple[str, dict[str, object], Approvals | None, str | None, set[Reason]]] = [
    ("allowed-no-approvals-checked", {}, None, "db-read", set()),
    (
        "allowed-with-approval",
        {},
        Approvals(frozenset({"Dave"}), pr_author="alice"),
        "db-read",
        set(),
    ),
    (
        "requester-case-insensitive",
        {"requester": "ALICE", "path": "requests/Alice/x.yaml"},
        None,
        "db-read",
        set(),
    ),
    (
        "glob-scope",
        {"scope": "projects/payments-staging", "role": "roles/logging.viewer", "ticket": None},
        None,
        "nonprod",
        set(),
    ),
    (
        "glob-is-not-prefix-only",
        {"scope": "projects/other-payments-x", "role": "roles/logging.viewer"},
        None,
        None,
        {Reason.NO_POLICY},
    ),
    ("role-exact", {"role": "roles/cloudsql.viewerX"}, None, None, {Reason.NO_POLICY}),
    ("wrong-provider", {"provider": "aws"}, None, None, {Reason.NO_POLICY}),
    (
        "not-requester",
        {"requester": "dave", "path": "requests/dave/x.yaml"},
        None,
        None,
        {Reason.NOT_REQUESTER},
    ),
    ("too-long", {"duration": 5 * H}, None, None, {Reason.TOO_LONG}),
    ("exactly-max", {"duration": 4 * H}, None, "db-read", set()),
    ("empty-window", {"duration": None, "expires": T0 - H}, None, None, {Reason.EMPTY_WINDOW}),
    ("ticket-missing", {"ticket": None}, None, None, {Reason.TICKET_MISSING}),
    ("ticket-fullmatch", {"ticket": "INC-1x"}, None, None, {Reason.TICKET_MISMATCH}),
    (
        "no-identity",
        {
            "provider": "aws",
            "scope": "111122223333",
            "role": "ReadOnlyAccess",
            "requester": "carol",
            "path": "requests/carol/x.yaml",
        },
        None,
        None,
        {Reason.NO_IDENTITY},
    ),
    ("wrong-directory", {"path": "requests/bob/x.yaml"}, None, None, {Reason.WRONG_DIRECTORY}),
    ("basic-role", {"role": "roles/owner"}, None, None, {Reason.BASIC_ROLE, Reason.NO_POLICY}),
    ("approvals-missing", {}, Approvals(frozenset()), None, {Reason.APPROVALS_MISSING}),
    (
        "self-approval-ignored",
        {},
        Approvals(frozenset({"alice"}), pr_author="alice"),
        None,
        {Reason.APPROVALS_MISSING},
    ),
    (
        "author-approval-ignored",
        {},
        Approvals(frozenset({"dave"}), pr_author="DAVE"),
        None,
        {Reason.APPROVALS_MISSING},
    ),
    ("ineligible-approver", {}, Approvals(frozenset({"bob"})), None, {Reason.APPROVALS_MISSING}),
    (
        "zero-approvals-merge-alone",
        {"scope": "projects/payments-dev", "role": "roles/logging.viewer"},
        Approvals(frozenset()),
        "nonprod",
        set(),
    ),
    # carol is listed by db-read (team) and db-read-long; the long one needs 2 approvals
    (
        "second-policy-allows",
        {
            "_config": WITH_LONG,
            "requester": "carol",
            "path": "requests/carol/x.yaml",
            "duration": 8 * H,
            "ticket": None,
        },
        Approvals(frozenset({"dave", "erin"})),
        "db-read-long",
        set(),
    ),
    (
        "every-refusal-kept",
        {
            "_config": WITH_LONG,
            "requester": "carol",
            "path": "requests/carol/x.yaml",
            "duration": 13 * H,
            "ticket": None,
        },
        None,
        None,
        {Reason.TOO_LONG, Reason.TICKET_MISSING},
    ),
    (
        "other-policy-not-listing",
        {"_config": WITH_LONG, "duration": 5 * H},
        None,
        None,
        {Reason.TOO_LONG, Reason.NOT_REQUESTER},
    ),
]


@pytest.mark.parametrize(
    ("changes", "approvals", "policy", "reasons"),
    [(dict(d[1]), *d[2:]) for d in DECISIONS],
    ids=[d[0] for d in DECISIONS],
)
def test_decision(
    changes: dict[str, object],
    approvals: Approvals | None,
    policy: str | None,
    reasons: set[Reason],
) -> None:
    config = changes.pop("_config", CONFIG)
    assert isinstance(config, Config)
    decision = evaluate(req(**changes), config, approved_at=T0, approvals=approvals)
    assert decision.policy == policy
    assert decision.allowed == (policy is not None)
    assert {r.reason for r in decision.refusals} == reasons
    if not decision.allowed:
        assert decision.reason in reasons


def test_allowed_decision_carries_window_principal_and_approvers() -> None:
    approvals = Approvals(frozenset({"erin", "Dave", "mallory"}), pr_author="alice", pr_number=7)
    decision = evaluate(req(start=T0 + H), CONFIG, approved_at=T0, approvals=approvals)
    assert decision.allowed and decision.policy == "db-read"
    assert decision.window is not None
    assert (decision.window.begin, decision.window.end) == (T0 + H, T0 + 3 * H)
    assert decision.principal == "user:alice@example.com"
    assert decision.approvals_needed == 1
    assert decision.approvers_counted == ("dave", "erin")
    assert decision.approvers_eligible == ("dave", "erin")


def test_refused_decision_names_what_is_missing() -> None:
    decision = evaluate(
        req(), CONFIG, approved_at=T0, approvals=Approvals(frozenset(), pr_author="erin")
    )
    assert not decision.allowed
    assert decision.approvals_needed == 1
    assert decision.approvers_eligible == ("dave",)  # erin wrote the PR
    (refusal,) = decision.refusals
    assert refusal.policy == "db-read" and "dave" in refusal.message


def test_refusal_keys_point_at_request_lines() -> None:
    request = replace(
        req(duration=9 * H, ticket="nope"), lines={"duration": 7, "ticket": 6, "requester": 1}
    )
    decision = evaluate(request, CONFIG, approved_at=T0, approvals=None)
    keys = {r.reason: r.key for r in decision.refusals}
    assert keys[Reason.TOO_LONG] == "duration" and keys[Reason.TICKET_MISMATCH] == "ticket"
    assert request.line_of("duration") == 7


def test_unknown_team_expands_to_nobody() -> None:
    config = replace(CONFIG, policies=(pol("p", requesters=("team:ghosts",)),))
    decision = evaluate(req(ticket=None), config, approved_at=T0, approvals=None)
    assert {r.reason for r in decision.refusals} == {Reason.NOT_REQUESTER}


def test_index_follows_a_new_config() -> None:
    first = evaluate(req(), CONFIG, approved_at=T0, approvals=None)
    other = replace(CONFIG, policies=())
    second = evaluate(req(), other, approved_at=T0, approvals=None)
    assert first.allowed and not second.allowed


# --- properties -------------------------------------------------------------------------------

times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
spans = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=60))


@given(
    approved=times, start=st.none() | times, duration=st.none() | spans, expires=st.none() | times
)
def test_window_arithmetic(
    approved: datetime, start: datetime | None, duration: timedelta | None, expires: datetime | None
) -> None:
    request = req(start=start, duration=duration, expires=expires)
    window = compute_window(request, approved)
    begin = max(start, approved) if start else approved
    assert window.begin == begin
    ends = [e for e in (begin + duration if duration else None, expires) if e is not None]
    assert window.end == (min(ends) if ends else begin)
    assert window.begin >= approved
    if duration is not None:
        assert window.end - window.begin <= duration
    if expires is not None:
        assert window.end <= expires
    assert window.contains(window.begin) == (window.end > window.begin)
    assert not window.contains(window.end)


@given(approved=times, duration=spans, late=spans)
def test_later_approval_never_lengthens_or_moves_back(
    approved: datetime, duration: timedelta, late: timedelta
) -> None:
    request = req(duration=duration, expires=approved + duration)
    early = compute_window(request, approved)
    later = compute_window(request, approved + late)
    assert later.begin >= early.begin
    assert later.end <= early.end or later.end <= later.begin


@given(approved=times, duration=spans)
def test_policy_admits_exactly_windows_up_to_max(approved: datetime, duration: timedelta) -> None:
    decision = evaluate(req(duration=duration), CONFIG, approved_at=approved, approvals=None)
    assert decision.allowed == (duration <= 4 * H)


@given(st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3650)))
def test_duration_format_round_trip(value: timedelta) -> None:
    value = timedelta(seconds=int(value.total_seconds()))
    if value <= timedelta(0):
        return
    text = format_duration(value)
    assert re.fullmatch(r"(\d+d)?(\d+h)?(\d+m)?(\d+s)?", text)
    total = sum(
        int(n) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[u]
        for n, u in re.findall(r"(\d+)([dhms])", text)
    )
    assert total == value.total_seconds()


@given(st.integers(1, 999_999), st.sampled_from("smhdw"))
def test_short_and_iso_durations_agree(n: int, unit: str) -> None:
    seconds = n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    if seconds > 3660 * 86400:
        with pytest.raises(ValueError):
            parse_duration(f"{n}{unit}")
        return
    short = parse_duration(f"{n}{unit}")
    iso = {"s": f"PT{n}S", "m": f"PT{n}M", "h": f"PT{n}H", "d": f"P{n}D", "w": f"P{n}W"}[unit]
    assert short == parse_duration(iso) == timedelta(seconds=seconds)
    assert (
        parse_duration(format_duration(short)) == short
        if len(format_duration(short)) <= 8 and re.fullmatch(r"\d+[smhd]", format_duration(short))
        else True
    )


@given(st.text(max_size=12))
def test_duration_parser_never_crashes(text: str) -> None:
    try:
        value = parse_duration(text)
    except ValueError:
        return
    assert timedelta(0) < value <= timedelta(days=3660)
