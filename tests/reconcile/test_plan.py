"""The planner: table-driven cases and Hypothesis properties over sets of grants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.models import ChangeKind, Grant
from reconciler.core.plan import plan

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def gcp(request="requests/alice/a.yaml", end=NOW + H, begin=NOW - H, **kw) -> Grant:
    base = {
        "provider": "gcp",
        "scope": "projects/p",
        "role": "roles/viewer.x",
        "principal": "user:alice@example.com",
        "request": request,
        "begin": begin,
        "end": end,
    }
    return Grant(**{**base, **kw})


def aws(request=None, end=None, begin=None, principal="alice@example.com", **kw) -> Grant:
    base = {
        "provider": "aws",
        "scope": "111111111111",
        "role": "ReadOnly",
        "principal": principal,
        "request": request,
        "begin": begin,
        "end": end,
    }
    return Grant(**{**base, **kw})


CASES = [
    # id, desired, actual, grants, revokes, keeps, revoke reason fragment
    ("nothing", [], [], 0, 0, 0, None),
    ("new-grant", [gcp()], [], 1, 0, 0, None),
    ("in-place", [gcp()], [gcp()], 0, 0, 1, None),
    ("begin-bound-kept-after-begin", [gcp(begin=NOW - H)], [gcp(begin=NOW - 2 * H)], 0, 0, 1, None),
    ("expired-binding", [], [gcp(end=NOW - H)], 0, 1, 0, "expired at"),
    ("expired-desired-not-granted", [gcp(end=NOW)], [], 0, 0, 0, None),
    ("deleted-file", [], [gcp()], 0, 1, 0, "request file deleted"),
    ("edited-new-end", [gcp(end=NOW + 2 * H)], [gcp(end=NOW + H)], 1, 1, 0, "superseded"),
    ("unreadable-end-replaced", [gcp()], [gcp(end=None)], 1, 1, 0, "unreadable"),
    ("future-gcp-granted", [gcp(begin=NOW + H, end=NOW + 2 * H)], [], 1, 0, 0, None),
    ("future-aws-waits", [aws(request="r", begin=NOW + H, end=NOW + 2 * H)], [], 0, 0, 0, None),
    ("aws-standing-revoked", [], [aws()], 0, 1, 0, "standing assignment"),
    (
        "aws-kept-same-user-id",
        [aws(request="r", end=NOW + H, principal="Alice@Example.com", principal_id="u-1")],
        [aws(principal_id="u-1")],
        0,
        0,
        1,
        None,
    ),
    (
        "aws-case-twin-is-another-user",
        [aws(request="r", end=NOW + H, principal="Alice@Example.com", principal_id="u-2")],
        [aws(principal_id="u-1")],
        1,
        1,
        0,
        "standing assignment",
    ),
    (
        "gcp-start-moved-later-is-a-new-grant",
        [gcp(begin=NOW + H, end=NOW + 2 * H)],
        [gcp(end=NOW + 2 * H)],
        1,
        1,
        0,
        "superseded",
    ),
    (
        "aws-overlap-one-assignment",
        [aws(request="r1", end=NOW + H), aws(request="r2", end=NOW + 3 * H)],
        [],
        1,
        0,
        0,
        None,
    ),
    (
        "aws-overlap-one-ended",
        [aws(request="r1", end=NOW - H), aws(request="r2", end=NOW + 3 * H)],
        [aws()],
        0,
        0,
        1,
        None,
    ),
    ("request-moved-scope", [gcp(scope="projects/q")], [gcp()], 1, 1, 0, "superseded"),
]


@pytest.mark.parametrize(
    ("desired", "actual", "n_grant", "n_revoke", "n_keep", "why"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_table(desired, actual, n_grant, n_revoke, n_keep, why) -> None:
    p = plan(desired, actual, NOW)
    assert (len(p.grant), len(p.revoke), len(p.keep)) == (n_grant, n_revoke, n_keep)
    for change in (*p.grant, *p.revoke, *p.keep):
        assert change.reason, "every change says why"
    if why:
        assert any(why in c.reason for c in p.revoke), [c.reason for c in p.revoke]


def test_overlapping_aws_requests_keep_the_longest() -> None:
    p = plan([aws(request="r1", end=NOW + H), aws(request="r2", end=NOW + 3 * H)], [], NOW)
    (change,) = p.grant
    assert change.grant.request == "r2"
    assert change.grant.end == NOW + 3 * H
    assert "r1" in change.reason and "r2" in change.reason


def test_notes_explain_revocations() -> None:
    p = plan([], [gcp()], NOW, notes={"requests/alice/a.yaml": "refused: not a requester"})
    assert p.revoke[0].reason == "refused: not a requester"
    assert p.revoke[0].kind is ChangeKind.REVOKE


def test_future_binding_carries_its_begin() -> None:
    g = gcp(begin=NOW + H, end=NOW + 2 * H)
    (change,) = plan([g], [], NOW).grant
    assert change.grant.begin == NOW + H


# -- properties -------------------------------------------------------------------------

times = st.sampled_from([NOW - 2 * H, NOW - H, NOW + H, NOW + 2 * H, None])
gcp_grants = st.builds(
    Grant,
    provider=st.just("gcp"),
    scope=st.sampled_from(["projects/a", "projects/b", "folders/1"]),
    role=st.sampled_from(["roles/x.a", "roles/x.b"]),
    principal=st.sampled_from(["user:a@x.io", "user:b@x.io"]),
    request=st.sampled_from(["requests/a/1.yaml", "requests/b/2.yaml", "requests/b/3.yaml"]),
    begin=times,
    end=times,
)
aws_grants = st.builds(
    Grant,
    provider=st.just("aws"),
    scope=st.sampled_from(["111111111111", "222222222222"]),
    role=st.sampled_from(["ReadOnly", "Admin"]),
    principal=st.sampled_from(["a@x.io", "A@x.io", "b@x.io"]),
    request=st.sampled_from([None, "requests/a/1.yaml", "requests/b/2.yaml"]),
    begin=times,
    end=times,
)
grant_sets = st.frozensets(st.one_of(gcp_grants, aws_grants), max_size=8)


def _desired_now(desired):
    keep = set()
    for g in desired:
        if g.end is not None and g.end <= NOW:
            continue
        if g.provider == "aws" and g.begin is not None and g.begin > NOW:
            continue
        keep.add(g.key(NOW))
    return keep


def _applied(p, actual):
    state = {g.key(NOW): g for g in actual}
    for c in p.revoke:
        state.pop(c.grant.key(NOW), None)
    for c in p.grant:
        state[c.grant.key(NOW)] = c.grant
    return set(state.values())


@settings(max_examples=300, deadline=None)
@given(desired=grant_sets, actual=grant_sets)
def test_applying_the_plan_converges(desired, actual) -> None:
    p = plan(desired, actual, NOW)
    after = _applied(p, actual)
    assert {g.key(NOW) for g in after} == _desired_now(desired)


@settings(max_examples=300, deadline=None)
@given(desired=grant_sets, actual=grant_sets)
def test_plan_is_idempotent(desired, actual) -> None:
    after = _applied(plan(desired, actual, NOW), actual)
    again = plan(desired, after, NOW)
    assert again.empty, (again.grant, again.revoke)


@settings(max_examples=200, deadline=None)
@given(desired=grant_sets, actual=grant_sets)
def test_plan_only_touches_observed_or_desired(desired, actual) -> None:
    p = plan(desired, actual, NOW)
    actual_keys = {g.key(NOW) for g in actual}
    assert all(c.grant.key(NOW) in actual_keys for c in p.revoke)
    assert all(c.grant.key(NOW) not in actual_keys for c in p.grant)
    assert all(c.reason for c in (*p.grant, *p.revoke, *p.keep))


def test_aws_revoke_names_the_request_it_ends() -> None:
    """An AWS assignment holds no request; the revoke is traced to the expired request."""
    t0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
    expired = Grant(
        "aws",
        "111111111111",
        "ReadOnly",
        "alice",
        "requests/alice/a.yaml",
        t0 - timedelta(hours=3),
        t0 - timedelta(hours=1),
    )
    observed = Grant("aws", "111111111111", "ReadOnly", "alice")
    result = plan(
        [], [observed], t0, notes={"requests/alice/a.yaml": "expired at X"}, former=[expired]
    )
    (change,) = result.revoke
    assert change.grant.request == "requests/alice/a.yaml"
    assert change.grant.end == expired.end
    assert change.reason.startswith("expired at")
    # an assignment no request ever held stays anonymous: a standing assignment
    other = Grant("aws", "111111111111", "ReadOnly", "bob")
    (anon,) = plan([], [other], t0, former=[expired]).revoke
    assert anon.grant.request is None
    assert "standing assignment" in anon.reason
