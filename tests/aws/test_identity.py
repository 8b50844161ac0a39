"""Users are who their identity store user id says: resolve() looks exact user names up,
observe() reports ids, apply() acts on ids; a case twin is another user (moto server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.core.models import Change, ChangeKind, Grant
from reconciler.core.plan import plan
from reconciler.providers.aws import AwsProvider
from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import ACCOUNT_A, ACCOUNT_B, ALICE, BOB, _error_response, aws_config, provider_for

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TWIN = "Alice@example.com"  # another Identity Center user: same letters, other case


@pytest.fixture
def twin(aws: AwsSandbox, seeded: SeededInstance) -> str:
    return aws.add_user(seeded, TWIN)


def desired(account: str, role: str, user: str, request: str = "requests/x/a.yaml") -> Grant:
    return Grant("aws", account, role, user, request=request, begin=NOW, end=NOW.replace(hour=11))


def fail_identitystore(provider: AwsProvider, code: str = "AccessDeniedException") -> Any:
    """Every identity store call fails until the returned function is called."""

    def handler(**_: Any) -> Any:
        return _error_response(code, "not allowed to read the identity store")

    events = provider.ids.meta.events
    events.register("before-call.identitystore.*", handler)
    return lambda: events.unregister("before-call.identitystore.*", handler)


def test_moto_keeps_case_twins_apart(aws: AwsSandbox, seeded: SeededInstance, twin: str) -> None:
    """The premise of every test here: the identity store holds both spellings."""
    assert seeded.users[ALICE] != twin


def test_resolve_looks_up_exact_names_once(seeded: SeededInstance, twin: str) -> None:
    provider = provider_for(aws_config(seeded))
    gcp = Grant("gcp", "projects/p", "roles/viewer", "user:alice@example.com")
    grants = [
        desired(ACCOUNT_A, "ReadOnly", ALICE),
        desired(ACCOUNT_B, "Admin", ALICE),
        desired(ACCOUNT_A, "ReadOnly", TWIN),
        desired(ACCOUNT_A, "ReadOnly", "ALICE@example.com"),  # no such user
        gcp,
    ]
    resolved = provider.resolve(grants)
    assert [g.principal_id for g in resolved] == [
        seeded.users[ALICE],
        seeded.users[ALICE],
        twin,
        None,
        None,
    ]
    assert resolved[4] is gcp  # not ours: untouched
    assert [g.principal for g in resolved] == [g.principal for g in grants]
    assert provider.calls.counts["GetUserId"] == 3  # one per distinct name
    provider.resolve(grants)
    assert provider.calls.counts["GetUserId"] == 3  # cached for the run


def test_resolve_never_raises_on_a_failed_lookup(seeded: SeededInstance) -> None:
    provider = provider_for(aws_config(seeded))
    heal = fail_identitystore(provider)
    [resolved] = provider.resolve([desired(ACCOUNT_A, "ReadOnly", ALICE)])
    assert resolved.principal_id is None
    heal()  # a failure is not remembered as "no such user": the next lookup asks again
    [resolved] = provider.resolve([desired(ACCOUNT_A, "ReadOnly", ALICE)])
    assert resolved.principal_id == seeded.users[ALICE]


def test_observe_reports_user_ids_and_names(
    aws: AwsSandbox, seeded: SeededInstance, twin: str
) -> None:
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", TWIN)
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    obs = provider_for(aws_config(seeded)).observe([ACCOUNT_A], NOW)
    assert {(g.principal, g.principal_id) for g in obs.grants[ACCOUNT_A]} == {
        (TWIN, twin),
        (ALICE, seeded.users[ALICE]),
    }


def test_an_unreadable_user_name_is_shown_by_id_not_a_failed_account(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", BOB)
    provider = provider_for(aws_config(seeded), sweep_users=False)
    fail_identitystore(provider)
    obs = provider.observe([ACCOUNT_A], NOW)
    uid = seeded.users[BOB]
    assert not obs.failures
    assert obs.grants[ACCOUNT_A] == frozenset(
        {Grant("aws", ACCOUNT_A, "ReadOnly", uid, None, principal_id=uid)}
    )
    assert any(uid in w and "AccessDeniedException" in w for w in obs.warnings), obs.warnings


def test_the_planner_revokes_the_twin_and_grants_the_real_user(
    aws: AwsSandbox, seeded: SeededInstance, twin: str
) -> None:
    """The attack: a case twin holds the owned permission set; alice's request must not
    be taken for it (and so leave alice without access and the twin with it)."""
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", TWIN)
    provider = provider_for(aws_config(seeded))
    wanted = provider.resolve([desired(ACCOUNT_A, "ReadOnly", ALICE)])
    observed = provider.observe([ACCOUNT_A], NOW).grants[ACCOUNT_A]
    the_plan = plan(wanted, observed, NOW)
    assert [(c.grant.principal, c.grant.principal_id) for c in the_plan.revoke] == [(TWIN, twin)]
    assert [c.grant.principal for c in the_plan.grant] == [ALICE]
    assert the_plan.keep == ()
    results = provider.apply(ACCOUNT_A, [*the_plan.revoke, *the_plan.grant], NOW)
    assert all(r.ok and r.verified for r in results), results
    assert aws.assignments(seeded, ACCOUNT_A) == {("ReadOnly", "USER", ALICE)}
    # the next run keeps alice's assignment and does nothing else
    again = provider_for(aws_config(seeded))
    rerun = plan(
        again.resolve([desired(ACCOUNT_A, "ReadOnly", ALICE)]),
        again.observe([ACCOUNT_A], NOW).grants[ACCOUNT_A],
        NOW,
    )
    assert (rerun.grant, rerun.revoke) == ((), ())
    assert [c.grant.principal for c in rerun.keep] == [ALICE]


def test_a_revoke_without_a_user_id_is_refused(aws: AwsSandbox, seeded: SeededInstance) -> None:
    """A revoke names the observed assignment's id; a name is never looked up to delete."""
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    provider = provider_for(aws_config(seeded))
    by_name = Change(ChangeKind.REVOKE, Grant("aws", ACCOUNT_A, "ReadOnly", ALICE), "test")
    [result] = provider.apply(ACCOUNT_A, [by_name], NOW)
    assert not result.ok and "user id" in result.message
    assert "DeleteAccountAssignment" not in provider.calls.counts
    assert "GetUserId" not in provider.calls.counts
    assert aws.assignments(seeded, ACCOUNT_A) == {("ReadOnly", "USER", ALICE)}


def test_a_grant_with_a_resolved_id_needs_no_lookup(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    provider = provider_for(aws_config(seeded))
    resolved = Grant("aws", ACCOUNT_A, "ReadOnly", ALICE, principal_id=seeded.users[ALICE])
    [result] = provider.apply(ACCOUNT_A, [Change(ChangeKind.GRANT, resolved, "test")], NOW)
    assert result.ok and result.verified, result.message
    assert "GetUserId" not in provider.calls.counts
    assert aws.assignments(seeded, ACCOUNT_A) == {("ReadOnly", "USER", ALICE)}


def test_grant_and_revoke_of_one_assignment_send_nothing(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    """A name that resolves only at apply time to an observed id (the lookup failed while
    planning): the delete and the create would race, so neither is sent; the assignment
    stays, the grant is verified by the read-back and the revoke is reported failed."""
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    provider = provider_for(aws_config(seeded))
    observed = Grant("aws", ACCOUNT_A, "ReadOnly", ALICE, principal_id=seeded.users[ALICE])
    grant = Change(ChangeKind.GRANT, desired(ACCOUNT_A, "ReadOnly", ALICE), "test")
    revoke = Change(ChangeKind.REVOKE, observed, "test")
    revoked, granted = provider.apply(ACCOUNT_A, [revoke, grant], NOW)
    assert granted.ok and granted.verified, granted.message
    assert not revoked.ok and "requests/x/a.yaml" in revoked.message
    assert "CreateAccountAssignment" not in provider.calls.counts
    assert "DeleteAccountAssignment" not in provider.calls.counts
    assert aws.assignments(seeded, ACCOUNT_A) == {("ReadOnly", "USER", ALICE)}
