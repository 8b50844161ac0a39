"""The session denies in an inline policy, as pure values: which statements accessctl owns,
what it writes, what it keeps byte for byte, when a deny goes, and the quota."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.providers.aws import (
    INLINE_POLICY_MAX_NONBLANK,
    InlinePolicy,
    SessionDeny,
    policy_fits,
    revise,
    revocation_time,
)
from reconciler.sandbox.aws import policy_problem

T = datetime(2026, 12, 1, 9, 10, tzinfo=UTC)
H = timedelta(hours=1)


def deny(*users: str, at: datetime = T, session: timedelta = H) -> SessionDeny:
    return SessionDeny(at, at + session, frozenset(users))


ADMIN = '{\n  "Sid": "Mine",\n  "Effect": "Allow",\n  "Action": "s3:Get*",  "Resource": "*"\n}'


def test_the_statement_accessctl_writes() -> None:
    assert deny("u-2", "u-1").statement() == {
        "Sid": "AccessctlRevoke20261201T091000ZUntil20261201T101000Z",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"identitystore:userId": ["u-1", "u-2"]},
            "DateLessThan": {"aws:TokenIssueTime": "2026-12-01T09:10:00Z"},
        },
    }


def _edited(change: str) -> dict:
    statement = deny("u-1").statement()
    if change == "effect":
        statement["Effect"] = "Allow"
    elif change == "extra-key":
        statement["Condition"]["StringEquals"]["aws:PrincipalAccount"] = "111111111111"
    elif change == "time":
        statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"] = "2026-12-01T09:00:00Z"
    elif change == "extra-condition":
        statement["Condition"]["Bool"] = {"aws:MultiFactorAuthPresent": "true"}
    elif change == "bad-date":
        statement["Sid"] = "AccessctlRevoke20261341T091000ZUntil20261201T101000Z"
    elif change == "no-users":
        statement["Condition"]["StringEquals"]["identitystore:userId"] = []
    return statement


@pytest.mark.parametrize(
    ("change", "ours"),
    [
        ("none", True),
        ("effect", False),
        ("extra-key", False),
        ("time", False),
        ("extra-condition", False),
        ("bad-date", False),
        ("no-users", False),
    ],
    ids=lambda v: str(v),
)
def test_only_an_exact_statement_is_accessctls(change: str, ours: bool) -> None:
    assert (SessionDeny.parse(_edited(change)) is not None) == ours


def test_a_single_user_id_string_is_read_too() -> None:
    statement = deny("u-1").statement()
    statement["Condition"]["StringEquals"]["identitystore:userId"] = "u-1"
    assert SessionDeny.parse(statement) == deny("u-1")


def test_other_statements_are_kept_as_written_and_in_order() -> None:
    ours = json.dumps(deny("u-1").statement())
    text = f'{{"Version": "2012-10-17",\n "Statement": [ {ADMIN} ,{ours},  {{"Effect":"Deny","Action":"ec2:*","Resource":"*"}}]}}'
    policy = InlinePolicy.parse(text)
    assert policy.kept == (ADMIN, '{"Effect":"Deny","Action":"ec2:*","Resource":"*"}')
    assert policy.denies == (deny("u-1"),)
    rendered = policy.render([deny("u-2", at=T + H)])
    assert rendered is not None and ADMIN in rendered
    again = InlinePolicy.parse(rendered)
    assert again.kept == policy.kept and again.denies == (deny("u-2", at=T + H),)
    assert rendered.startswith('{"Version": "2012-10-17",\n "Statement": [')


def test_a_single_statement_object_becomes_a_list() -> None:
    text = f'{{"Version":"2012-10-17","Statement":{ADMIN}}}'
    rendered = InlinePolicy.parse(text).render([deny("u-1")])
    assert rendered is not None
    assert json.loads(rendered)["Statement"] == [json.loads(ADMIN), deny("u-1").statement()]


def test_removing_every_deny_gives_back_the_original_text() -> None:
    original = InlinePolicy.parse(
        f'{{\n  "Statement": [\n    {ADMIN}\n  ],\n  "Version": "2012-10-17"\n}}'
    )
    added = original.render([deny("u-1")])
    assert added is not None
    assert InlinePolicy.parse(added).render([]) == original.text


def test_no_statement_left_means_no_inline_policy() -> None:
    assert InlinePolicy.parse("").render([]) is None
    only_ours = InlinePolicy().render([deny("u-1")])
    assert only_ours is not None and policy_problem(only_ours) is None
    assert InlinePolicy.parse(only_ours).render([]) is None


@pytest.mark.parametrize(
    "text",
    ["not json", "[1, 2]", '{"Version": "2012-10-17"}', '{"Statement": "Allow"}'],
    ids=["not-json", "not-an-object", "no-statement", "statement-not-a-list"],
)
def test_a_document_accessctl_cannot_edit_safely_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="it is not"):
        InlinePolicy.parse(text)


@pytest.mark.parametrize(
    ("now", "session", "expired"),
    [
        (T + H - timedelta(seconds=1), H, False),
        (T + H, H, True),
        (T + H, 2 * H, False),  # the permission set's duration grew since: wait for it
        (T + 2 * H, 2 * H, True),
        (T + H, H / 2, True),  # it shrank: the duration at the revocation still holds
        (T + H / 2, H / 2, False),
    ],
    ids=["before", "at-horizon", "grown", "grown-passed", "shrunk-passed", "shrunk"],
)
def test_a_deny_lasts_as_long_as_any_session_it_covers(
    now: datetime, session: timedelta, expired: bool
) -> None:
    assert deny("u-1").expired(now, session) is expired


def test_revise_merges_one_time_and_drops_the_expired() -> None:
    old = deny("u-0", at=T - 2 * H)
    policy = InlinePolicy.parse(InlinePolicy().render([old, deny("u-1")]) or "")
    revision = revise(policy, [deny("u-2"), deny("u-3", at=T + H)], T + H / 2, H)
    assert revision.changed and revision.expired == 1 and not revision.dropped
    assert revision.denies == (deny("u-1", "u-2"), deny("u-3", at=T + H))


def test_nothing_new_and_nothing_expired_writes_nothing() -> None:
    text = InlinePolicy().render([deny("u-1")]) or ""
    revision = revise(InlinePolicy.parse(text), [deny("u-1")], T, H)
    assert not revision.changed and revision.text == text


def test_over_the_quota_the_oldest_denies_go_first() -> None:
    users = [f"{i:08d}-1111-2222-3333-444455556666" for i in range(400)]
    old = [deny(*users[i * 100 : (i + 1) * 100], at=T + i * timedelta(minutes=1)) for i in range(3)]
    newest = deny(*users[300:], at=T + timedelta(minutes=5))
    policy = InlinePolicy.parse(InlinePolicy().render(old[:2]) or "")
    revision = revise(policy, [old[2], newest], T + timedelta(minutes=5), H)
    assert revision.dropped == (old[0], old[1])
    assert revision.denies == (old[2], newest)
    assert revision.text is not None and policy_fits(revision.text)


def test_the_quota_counts_non_whitespace_characters() -> None:
    assert policy_fits("x" * INLINE_POLICY_MAX_NONBLANK + " " * 20_000)
    assert not policy_fits("x" * (INLINE_POLICY_MAX_NONBLANK + 1))
    assert not policy_fits(" " * 32_769)


def test_the_revocation_time_rounds_up_to_the_second() -> None:
    assert revocation_time(T) == T
    assert revocation_time(T + timedelta(microseconds=1)) == T + timedelta(seconds=1)


_ids = st.text("abcdef0123456789-", min_size=1, max_size=40)
_admin = st.fixed_dictionaries(
    {
        "Effect": st.sampled_from(["Allow", "Deny"]),
        "Action": st.lists(st.sampled_from(["s3:Get*", "ec2:*", "iam:List*"]), min_size=1),
        "Resource": st.just("*"),
    },
    optional={"Sid": st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True)},
)


@given(
    admin=st.lists(_admin, max_size=4),
    before=st.lists(st.frozensets(_ids, min_size=1, max_size=3), max_size=3),
    added=st.frozensets(_ids, min_size=1, max_size=3),
    indent=st.sampled_from([None, 1, 4]),
    minutes=st.integers(0, 180),
)
def test_any_admin_statement_survives_any_revision(
    admin: list[dict],
    before: list[frozenset[str]],
    added: frozenset[str],
    indent: int | None,
    minutes: int,
) -> None:
    """Whatever accessctl adds or removes, every statement it does not own comes back as
    the same text, in the same order, and the result is a policy IAM accepts."""
    sids = [s.get("Sid") for s in admin if s.get("Sid")]
    if len(sids) != len(set(sids)):
        return
    text = json.dumps({"Version": "2012-10-17", "Statement": admin}, indent=indent)
    start = InlinePolicy.parse(text)
    earlier = [deny(*users, at=T - (i + 1) * H / 2) for i, users in enumerate(before)]
    seeded = InlinePolicy.parse(start.render(earlier) or "") if admin or earlier else start
    now = T + timedelta(minutes=minutes)
    revision = revise(seeded, [deny(*added, at=now)], now, H)
    assert revision.text is not None
    result = InlinePolicy.parse(revision.text)
    assert result.kept == start.kept
    assert [json.loads(k) for k in result.kept] == admin
    assert result.denies == revision.denies
    assert any(d.before == now and added <= d.users for d in result.denies)
    assert all(not d.expired(now, H) for d in result.denies)
    assert policy_problem(revision.text) is None
