"""The AWS provider against moto in server mode, through AWS_ENDPOINT_URL and real boto3."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from reconciler.core.models import Change, ChangeKind, Grant
from reconciler.providers.base import make
from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import (
    ACCOUNT_A,
    ACCOUNT_B,
    ACCOUNT_C,
    ALICE,
    BOB,
    CAROL,
    SlowCreations,
    aws_config,
    fail_account,
    provider_for,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def grant(account: str, role: str, user: str, uid: str | None = None) -> Grant:
    return Grant(provider="aws", scope=account, role=role, principal=user, principal_id=uid)


def change(kind: ChangeKind, account: str, role: str, user: str, uid: str | None = None) -> Change:
    return Change(kind, grant(account, role, user, uid), reason="test")


def held(seeded: SeededInstance, account: str, role: str, user: str) -> Grant:
    """An assignment as observe() reports it: the user id, and the user name to show."""
    return grant(account, role, user, seeded.users[user])


def revoke(seeded: SeededInstance, account: str, role: str, user: str) -> Change:
    """A revoke as the planner makes it, from an observed assignment."""
    return Change(ChangeKind.REVOKE, held(seeded, account, role, user), reason="test")


def test_registered_factory_builds_the_provider_from_policies(seeded: SeededInstance) -> None:
    provider = make("aws", aws_config(seeded), {})
    assert provider.name == "aws"
    assert provider.observe([ACCOUNT_A], NOW).grants == {ACCOUNT_A: frozenset()}


def test_grant_creates_and_verifies_the_assignment(aws: AwsSandbox, seeded: SeededInstance) -> None:
    provider = provider_for(aws_config(seeded))
    [result] = provider.apply(
        ACCOUNT_A, [change(ChangeKind.GRANT, ACCOUNT_A, "ReadOnly", ALICE)], NOW
    )
    assert result.ok, result.message
    assert result.verified
    assert result.cloud_request_id
    assert aws.assignments(seeded, ACCOUNT_A) == {("ReadOnly", "USER", ALICE)}


def test_observe_is_idempotent_and_names_users(aws: AwsSandbox, seeded: SeededInstance) -> None:
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    aws.assign(seeded, ACCOUNT_A, "Admin", BOB)
    provider = provider_for(aws_config(seeded))
    first = provider.observe([ACCOUNT_A], NOW)
    second = provider.observe([ACCOUNT_A], NOW)
    expected = frozenset(
        {held(seeded, ACCOUNT_A, "ReadOnly", ALICE), held(seeded, ACCOUNT_A, "Admin", BOB)}
    )
    assert first.grants[ACCOUNT_A] == expected
    assert second.grants == first.grants
    assert not first.failures
    # one listing per (account, owned permission set); names resolved once per run
    assert first.calls["ListAccountAssignments"] >= 2
    assert "DescribeUser" not in second.calls
    assert "ListPermissionSets" not in second.calls


def test_revoke_deletes_and_verifies(aws: AwsSandbox, seeded: SeededInstance) -> None:
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", BOB)
    provider = provider_for(aws_config(seeded))
    [result] = provider.apply(ACCOUNT_A, [revoke(seeded, ACCOUNT_A, "ReadOnly", ALICE)], NOW)
    assert result.ok and result.verified, result.message
    assert aws.assignments(seeded, ACCOUNT_A) == {("ReadOnly", "USER", BOB)}


def test_revoke_is_issued_only_when_asked(aws: AwsSandbox, seeded: SeededInstance) -> None:
    """The planner collapses overlapping requests by key; the provider never revokes on
    its own initiative: granting one user leaves the other assignments alone."""
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    provider = provider_for(aws_config(seeded))
    results = provider.apply(ACCOUNT_A, [change(ChangeKind.GRANT, ACCOUNT_A, "ReadOnly", BOB)], NOW)
    assert all(r.ok for r in results)
    assert aws.assignments(seeded, ACCOUNT_A) == {
        ("ReadOnly", "USER", ALICE),
        ("ReadOnly", "USER", BOB),
    }
    keep = provider.apply(ACCOUNT_A, [change(ChangeKind.KEEP, ACCOUNT_A, "ReadOnly", ALICE)], NOW)
    assert keep[0].ok
    assert ("ReadOnly", "USER", ALICE) in aws.assignments(seeded, ACCOUNT_A)


def test_unowned_permission_set_and_groups_are_invisible_and_untouched(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    aws.assign(seeded, ACCOUNT_A, "BreakGlass", ALICE)  # not named by any policy
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", "ops")  # a group holds an owned set
    provider = provider_for(aws_config(seeded))
    obs = provider.observe([ACCOUNT_A], NOW)
    assert obs.grants[ACCOUNT_A] == frozenset()
    refused = provider.apply(ACCOUNT_A, [revoke(seeded, ACCOUNT_A, "BreakGlass", ALICE)], NOW)
    assert not refused[0].ok
    assert "not named in any aws policy" in refused[0].message
    assert aws.assignments(seeded, ACCOUNT_A) == {
        ("BreakGlass", "USER", ALICE),
        ("ReadOnly", "GROUP", "ops"),
    }


def test_owned_assignment_nobody_asked_about_is_discovered(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    """An owned USER assignment in an account no request names is observed (so the
    planner revokes it), even through a glob policy scope."""
    aws.assign(seeded, ACCOUNT_C, "Admin", CAROL)
    provider = provider_for(aws_config(seeded))
    obs = provider.observe([ACCOUNT_A], NOW)
    assert obs.grants[ACCOUNT_C] == frozenset({held(seeded, ACCOUNT_C, "Admin", CAROL)})
    assert obs.grants[ACCOUNT_A] == frozenset()


def test_exact_policy_accounts_are_always_observed(aws: AwsSandbox, seeded: SeededInstance) -> None:
    aws.assign(seeded, ACCOUNT_B, "ReadOnly", "ops")
    config = aws_config(seeded, scopes=(ACCOUNT_B,), identities={})
    obs = provider_for(config).observe([], NOW)
    assert obs.grants == {ACCOUNT_B: frozenset()}


def test_unknown_user_is_a_failed_change_not_a_crash(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    provider = provider_for(aws_config(seeded))
    results = provider.apply(
        ACCOUNT_A,
        [
            change(ChangeKind.GRANT, ACCOUNT_A, "ReadOnly", "nobody@example.com"),
            change(ChangeKind.GRANT, ACCOUNT_A, "ReadOnly", BOB),
        ],
        NOW,
    )
    assert not results[0].ok
    assert "'nobody@example.com' not found" in results[0].message
    assert results[1].ok and results[1].verified
    assert aws.assignments(seeded, ACCOUNT_A) == {("ReadOnly", "USER", BOB)}


def test_missing_permission_set_is_a_failed_change(aws: AwsSandbox, seeded: SeededInstance) -> None:
    config = aws_config(seeded, roles=("ReadOnly", "Ghost"))
    [result] = provider_for(config).apply(
        ACCOUNT_A, [change(ChangeKind.GRANT, ACCOUNT_A, "Ghost", ALICE)], NOW
    )
    assert not result.ok
    assert "'Ghost' does not exist" in result.message


def test_one_failing_account_while_others_converge(aws: AwsSandbox, seeded: SeededInstance) -> None:
    aws.assign(seeded, ACCOUNT_B, "ReadOnly", BOB)
    provider = provider_for(aws_config(seeded))
    fail_account(provider.sso, ACCOUNT_B)
    obs = provider.observe([ACCOUNT_A, ACCOUNT_B], NOW)
    assert ACCOUNT_B in obs.failures and "AccessDeniedException" in obs.failures[ACCOUNT_B]
    assert ACCOUNT_B not in obs.grants  # unknown, so the planner must not act on it
    ok = provider.apply(ACCOUNT_A, [change(ChangeKind.GRANT, ACCOUNT_A, "ReadOnly", ALICE)], NOW)
    bad = provider.apply(ACCOUNT_B, [revoke(seeded, ACCOUNT_B, "ReadOnly", BOB)], NOW)
    assert ok[0].ok and ok[0].verified
    assert not bad[0].ok and "AccessDeniedException" in bad[0].message
    assert aws.assignments(seeded, ACCOUNT_A) == {("ReadOnly", "USER", ALICE)}
    assert aws.assignments(seeded, ACCOUNT_B) == {("ReadOnly", "USER", BOB)}


def test_in_progress_creations_are_polled_and_bounded_across_threads(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    users = [f"user{i}@example.com" for i in range(12)]
    for user in users:
        aws.add_user(seeded, user)
    provider = provider_for(aws_config(seeded, identities={}))
    slow = SlowCreations(provider.sso, polls=3)
    accounts = [ACCOUNT_A, ACCOUNT_B, ACCOUNT_C]
    results: dict[str, list] = {}

    def run(account: str) -> None:
        changes = [change(ChangeKind.GRANT, account, "ReadOnly", u) for u in users]
        results[account] = provider.apply(account, changes, NOW)

    threads = [threading.Thread(target=run, args=(a,)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok and r.verified for rs in results.values() for r in rs)
    assert 1 < slow.max_outstanding <= 10
    assert provider.calls.counts["DescribeAccountAssignmentCreationStatus"] == 3 * 12 * 3
    for account in accounts:
        assert len(aws.assignments(seeded, account)) == 12


def test_revoking_an_absent_assignment_is_verified(aws: AwsSandbox, seeded: SeededInstance) -> None:
    provider = provider_for(aws_config(seeded))
    [result] = provider.apply(ACCOUNT_A, [revoke(seeded, ACCOUNT_A, "ReadOnly", ALICE)], NOW)
    assert result.ok and result.verified, result.message


def test_assignment_of_a_deleted_user_is_observed_and_revocable(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    ghost = "90c1d2e3-0000-4000-8000-00000000dead"  # no longer in the identity store
    aws.client("sso-admin").create_account_assignment(
        InstanceArn=seeded.instance_arn,
        TargetId=ACCOUNT_A,
        TargetType="AWS_ACCOUNT",
        PermissionSetArn=seeded.permission_sets["ReadOnly"],
        PrincipalType="USER",
        PrincipalId=ghost,
    )
    provider = provider_for(aws_config(seeded))
    obs = provider.observe([ACCOUNT_A], NOW)
    assert obs.grants[ACCOUNT_A] == frozenset({grant(ACCOUNT_A, "ReadOnly", ghost, ghost)})
    [result] = provider.apply(
        ACCOUNT_A, [Change(ChangeKind.REVOKE, *obs.grants[ACCOUNT_A], "")], NOW
    )
    assert result.ok and result.verified, result.message
    assert aws.assignments(seeded, ACCOUNT_A) == set()
