"""Revoked means revoked on AWS: a deleted assignment's sessions are denied in the owned
permission set's inline policy until they have all expired, against moto in server mode
behind the sandbox's provisioning layer."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.models import Change, ChangeKind, Grant
from reconciler.providers.aws import DENY_SID_PREFIX, AwsProvider
from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import ACCOUNT_A, ACCOUNT_B, ACCOUNT_C, ALICE, BOB, CAROL, aws_config, provider_for

T = datetime(2026, 12, 1, 9, 10, tzinfo=UTC)
WRITES = (
    "PutInlinePolicyToPermissionSet",
    "DeleteInlinePolicyFromPermissionSet",
    "ProvisionPermissionSet",
)
ADMIN_POLICY = """{
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReadTheBuckets",
            "Effect": "Allow",
            "Action": ["s3:GetObject",   "s3:ListBucket"],
            "Resource": "*"
        }
    ]
}"""
BREAKGLASS_POLICY = (
    '{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"iam:*","Resource":"*"}}'
)


def revoke(seeded: SeededInstance, account: str, role: str, user: str) -> Change:
    held = Grant("aws", account, role, user, principal_id=seeded.users[user])
    return Change(ChangeKind.REVOKE, held, reason="window ended")


def denies(aws: AwsSandbox, seeded: SeededInstance, role: str) -> list[dict]:
    text = aws.inline_policy(seeded, role)
    if not text:
        return []
    statements = json.loads(text)["Statement"]
    return [s for s in statements if str(s.get("Sid", "")).startswith(DENY_SID_PREFIX)]


def deny(seeded: SeededInstance, before: datetime, until: datetime, *users: str) -> dict:
    stamp = "%Y%m%dT%H%M%SZ"
    return {
        "Sid": f"AccessctlRevoke{before:{stamp}}Until{until:{stamp}}",
        "Effect": "Deny",
        "Action": "*",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"identitystore:userId": sorted(seeded.users[u] for u in users)},
            "DateLessThan": {"aws:TokenIssueTime": before.strftime("%Y-%m-%dT%H:%M:%SZ")},
        },
    }


def writes(aws: AwsSandbox) -> dict[str, int]:
    return {op: n for op, n in aws.faults.calls.items() if op in WRITES}


def run(provider: AwsProvider, now: datetime) -> None:
    """What a reconcile run does when it has no change to make: observe, then settle."""
    provider.observe([], now)
    settled = provider.settle(now)
    assert not settled.failures, settled.failures


@pytest.fixture
def revoked(aws: AwsSandbox, seeded: SeededInstance) -> SeededInstance:
    """alice's ReadOnly in A revoked at T; an admin's own statements in ReadOnly and in the
    unowned BreakGlass; Admin (owned) has no inline policy."""
    aws.put_inline_policy(seeded, "ReadOnly", ADMIN_POLICY)
    aws.put_inline_policy(seeded, "BreakGlass", BREAKGLASS_POLICY)
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    aws.assign(seeded, ACCOUNT_A, "BreakGlass", ALICE)
    aws.assign(seeded, ACCOUNT_B, "ReadOnly", BOB)  # another user keeps ReadOnly
    provider = provider_for(aws_config(seeded))
    provider.observe([ACCOUNT_A], T)
    [result] = provider.apply(ACCOUNT_A, [revoke(seeded, ACCOUNT_A, "ReadOnly", ALICE)], T)
    assert result.ok and result.verified, result.message
    assert "sessions issued before 2026-12-01T09:10:00Z denied" in result.message
    return seeded


def test_revoke_denies_exactly_that_users_earlier_sessions(
    aws: AwsSandbox, revoked: SeededInstance
) -> None:
    seeded = revoked
    assert denies(aws, seeded, "ReadOnly") == [deny(seeded, T, T + timedelta(hours=1), ALICE)]
    text = aws.inline_policy(seeded, "ReadOnly")
    statements = json.loads(text)["Statement"]
    assert statements[0] == json.loads(ADMIN_POLICY)["Statement"][0]
    assert (
        ADMIN_POLICY[ADMIN_POLICY.index("{\n            ") : ADMIN_POLICY.rindex("}\n    ]")]
        in text
    )
    assert aws.inline_policy(seeded, "BreakGlass") == BREAKGLASS_POLICY  # not accessctl's
    assert aws.inline_policy(seeded, "Admin") == ""  # owned, but nothing revoked there
    assert aws.assignments(seeded, ACCOUNT_A) == {("BreakGlass", "USER", ALICE)}
    [provisioned] = aws.provisioning.statuses()
    assert provisioned["PermissionSetArn"] == seeded.permission_sets["ReadOnly"]
    assert provisioned["Status"] == "SUCCEEDED"


def test_runs_before_the_horizon_write_nothing_and_the_first_after_removes_it(
    aws: AwsSandbox, revoked: SeededInstance
) -> None:
    seeded = revoked
    aws.faults.calls.clear()
    run(provider_for(aws_config(seeded)), T + timedelta(minutes=59, seconds=59))
    assert writes(aws) == {}
    assert aws.faults.calls["GetInlinePolicyForPermissionSet"] == 2  # one per owned set
    assert len(denies(aws, seeded, "ReadOnly")) == 1

    run(provider_for(aws_config(seeded)), T + timedelta(hours=1))  # ReadOnly: PT1H
    assert denies(aws, seeded, "ReadOnly") == []
    assert aws.inline_policy(seeded, "ReadOnly") == ADMIN_POLICY  # byte for byte
    assert writes(aws) == {"PutInlinePolicyToPermissionSet": 1, "ProvisionPermissionSet": 1}

    aws.faults.calls.clear()
    run(provider_for(aws_config(seeded)), T + timedelta(hours=2))
    assert writes(aws) == {}
    assert aws.inline_policy(seeded, "BreakGlass") == BREAKGLASS_POLICY


def test_a_policy_holding_only_denies_is_deleted_when_they_expire(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    aws.assign(seeded, ACCOUNT_C, "Admin", CAROL)
    provider = provider_for(aws_config(seeded))
    [result] = provider.apply(ACCOUNT_C, [revoke(seeded, ACCOUNT_C, "Admin", CAROL)], T)
    assert result.ok, result.message
    assert denies(aws, seeded, "Admin") == [deny(seeded, T, T + timedelta(hours=8), CAROL)]
    run(provider_for(aws_config(seeded)), T + timedelta(hours=7, minutes=59))  # Admin: PT8H
    assert len(denies(aws, seeded, "Admin")) == 1
    aws.faults.calls.clear()
    later = provider_for(aws_config(seeded))
    later.observe([], T + timedelta(hours=8))
    settled = later.settle(T + timedelta(hours=8))
    assert not settled.failures, settled.failures
    assert aws.inline_policy(seeded, "Admin") == ""
    assert writes(aws) == {"DeleteInlinePolicyFromPermissionSet": 1, "ProvisionPermissionSet": 1}
    # The clean-up is said, not silent.
    assert settled.notes == [
        "removed 1 session deny statement(s) from 'Admin': every session they ended has expired"
    ]


@pytest.mark.parametrize("duration", [None, "banana"], ids=["moto-3600", "unreadable"])
def test_unknown_session_length_keeps_the_deny_twelve_hours(
    aws: AwsSandbox, seeded: SeededInstance, duration: str | None
) -> None:
    """moto answers 3600 (seconds) for an unset SessionDuration: one hour; anything
    accessctl cannot read is taken as AWS's maximum, 12 hours."""
    sso = aws.client("sso-admin")
    arn = seeded.permission_sets["ReadOnly"]
    if duration is not None:
        sso.update_permission_set(
            InstanceArn=seeded.instance_arn, PermissionSetArn=arn, SessionDuration=duration
        )
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    provider = provider_for(aws_config(seeded))
    [result] = provider.apply(ACCOUNT_A, [revoke(seeded, ACCOUNT_A, "ReadOnly", ALICE)], T)
    assert result.ok, result.message
    horizon = timedelta(hours=12) if duration else timedelta(hours=1)
    assert denies(aws, seeded, "ReadOnly") == [deny(seeded, T, T + horizon, ALICE)]
    run(provider_for(aws_config(seeded)), T + horizon - timedelta(seconds=1))
    assert len(denies(aws, seeded, "ReadOnly")) == 1
    run(provider_for(aws_config(seeded)), T + horizon)
    assert denies(aws, seeded, "ReadOnly") == []


def test_a_lowered_session_duration_never_shortens_an_existing_deny(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    """Sessions issued before the revocation lasted the SessionDuration of that time."""
    aws.assign(seeded, ACCOUNT_C, "Admin", CAROL)
    provider = provider_for(aws_config(seeded))
    [result] = provider.apply(ACCOUNT_C, [revoke(seeded, ACCOUNT_C, "Admin", CAROL)], T)
    assert result.ok, result.message
    aws.client("sso-admin").update_permission_set(
        InstanceArn=seeded.instance_arn,
        PermissionSetArn=seeded.permission_sets["Admin"],
        SessionDuration="PT1H",
    )
    run(provider_for(aws_config(seeded)), T + timedelta(hours=2))
    assert len(denies(aws, seeded, "Admin")) == 1  # PT8H at the revocation
    run(provider_for(aws_config(seeded)), T + timedelta(hours=8))
    assert denies(aws, seeded, "Admin") == []


def test_a_regrant_after_the_revocation_is_not_denied(
    aws: AwsSandbox, revoked: SeededInstance
) -> None:
    """The deny compares each session's issue time with the revocation: a session of the
    new grant is issued later, so it is not denied."""
    seeded = revoked
    regrant_at = T + timedelta(minutes=20)
    grant = Change(ChangeKind.GRANT, Grant("aws", ACCOUNT_A, "ReadOnly", ALICE), "approved")
    [result] = provider_for(aws_config(seeded)).apply(ACCOUNT_A, [grant], regrant_at)
    assert result.ok, result.message
    [statement] = denies(aws, seeded, "ReadOnly")
    issued = statement["Condition"]["DateLessThan"]["aws:TokenIssueTime"]
    assert issued == "2026-12-01T09:10:00Z"
    assert datetime.fromisoformat(issued) < regrant_at
    assert ("ReadOnly", "USER", ALICE) in aws.assignments(seeded, ACCOUNT_A)


def test_revokes_in_one_run_share_one_statement_per_time(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    """Accounts revoke in parallel; writes to one permission set wait for each other and
    carry every deny queued meanwhile; provisionings never overlap (the sandbox answers
    ConflictException to an overlapping one, and every call it saw became a provisioning)."""
    aws.faults.slow(2)
    accounts = [f"44440000000{i}" for i in range(6)]
    users = [ALICE, BOB, CAROL]
    for i, account in enumerate(accounts):
        aws.assign(seeded, account, "ReadOnly", users[i % 3])
    provider = provider_for(aws_config(seeded))
    aws.faults.calls.clear()
    results = {}

    def apply(i: int, account: str) -> None:
        change = revoke(seeded, account, "ReadOnly", users[i % 3])
        results[account] = provider.apply(account, [change], T)

    threads = [threading.Thread(target=apply, args=pair) for pair in enumerate(accounts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for batch in results.values() for r in batch), results
    assert denies(aws, seeded, "ReadOnly") == [
        deny(seeded, T, T + timedelta(hours=1), ALICE, BOB, CAROL)
    ]
    assert aws.faults.calls["ProvisionPermissionSet"] == len(aws.provisioning.statuses())
    assert aws.faults.calls["PutInlinePolicyToPermissionSet"] <= len(accounts)


def test_failed_provisioning_fails_the_revoke_with_aws_reason_and_is_redone(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    reason = "Received a 400 status error: policy size exceeded in account 444400000000"
    aws.faults.fail_provisioning(reason, seeded.permission_sets["ReadOnly"])
    aws.faults.slow(1)
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    aws.assign(seeded, ACCOUNT_B, "ReadOnly", BOB)
    provider = provider_for(aws_config(seeded))
    [result] = provider.apply(ACCOUNT_A, [revoke(seeded, ACCOUNT_A, "ReadOnly", ALICE)], T)
    assert not result.ok
    assert f"AWS reported FAILED: {reason}" in result.message
    assert "sessions issued before 2026-12-01T09:10:00Z were not ended" in result.message
    assert aws.assignments(seeded, ACCOUNT_A) == set()  # the assignment is gone all the same

    # The next run finds the deny not provisioned everywhere and provisions it again.
    later = T + timedelta(minutes=10)
    again = provider_for(aws_config(seeded))
    obs = again.observe([], later)
    assert any("not provisioned to every account" in w for w in obs.warnings), obs.warnings
    failed = again.settle(later)
    assert reason in failed.failures["permission-set:ReadOnly"]
    aws.faults.clear()
    healed = provider_for(aws_config(seeded))
    healed.observe([], later)
    assert healed.settle(later).failures == {}
    assert aws.provisioning.statuses()[-1]["Status"] == "SUCCEEDED"
    aws.faults.calls.clear()
    run(provider_for(aws_config(seeded)), later)
    assert writes(aws) == {}


def test_conflicting_provisioning_is_retried(aws: AwsSandbox, revoked: SeededInstance) -> None:
    seeded = revoked
    aws.faults.conflict_provisioning(2)
    aws.assign(seeded, ACCOUNT_C, "ReadOnly", CAROL)
    provider = provider_for(aws_config(seeded))
    aws.faults.calls.clear()
    [result] = provider.apply(ACCOUNT_C, [revoke(seeded, ACCOUNT_C, "ReadOnly", CAROL)], T)
    assert result.ok, result.message
    assert aws.faults.calls["ProvisionPermissionSet"] == 3


def test_a_failing_revoke_adds_no_deny(aws: AwsSandbox, seeded: SeededInstance) -> None:
    """Only an assignment that is gone gets its sessions denied: one still held (the
    deletion failed) is revoked again by the next run, which denies then."""
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    aws.faults.deny_account(ACCOUNT_A)
    aws.faults.calls.clear()
    provider = provider_for(aws_config(seeded))
    [result] = provider.apply(ACCOUNT_A, [revoke(seeded, ACCOUNT_A, "ReadOnly", ALICE)], T)
    assert not result.ok
    assert aws.inline_policy(seeded, "ReadOnly") == ""
    assert writes(aws) == {}


def test_a_full_inline_policy_keeps_the_newest_revocations_and_says_so(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    """Identity Center allows 10,240 non-whitespace characters: an administrator's large
    statement leaves room for two denies; the third revocation drops the oldest, loudly."""
    buckets = [f"arn:aws:s3:::bucket-{i:05d}/*" for i in range(318)]
    big = {"Sid": "Big", "Effect": "Allow", "Action": "s3:GetObject", "Resource": buckets}
    admin = json.dumps({"Version": "2012-10-17", "Statement": [big]})
    aws.put_inline_policy(seeded, "ReadOnly", admin)
    provider = provider_for(aws_config(seeded))
    outcomes = []
    for step, user in enumerate([ALICE, BOB, CAROL]):
        account = [ACCOUNT_A, ACCOUNT_B, ACCOUNT_C][step]
        aws.assign(seeded, account, "ReadOnly", user)
        at = T + timedelta(minutes=step)
        [result] = provider.apply(account, [revoke(seeded, account, "ReadOnly", user)], at)
        outcomes.append(result)
    assert [r.ok for r in outcomes] == [True, True, False]
    assert "is full" in outcomes[2].message and seeded.users[ALICE] in outcomes[2].message
    held = denies(aws, seeded, "ReadOnly")
    assert [s["Condition"]["StringEquals"]["identitystore:userId"] for s in held] == [
        [seeded.users[BOB]],
        [seeded.users[CAROL]],
    ]
    assert json.loads(aws.inline_policy(seeded, "ReadOnly"))["Statement"][0] == big


def test_statements_with_the_prefix_that_accessctl_did_not_write_are_kept(
    aws: AwsSandbox, seeded: SeededInstance
) -> None:
    edited = deny(seeded, T - timedelta(days=2), T - timedelta(days=1), BOB)
    edited["Condition"]["StringEquals"]["aws:PrincipalAccount"] = ACCOUNT_B
    manual = {"Sid": "AccessctlRevokeByHand", "Effect": "Deny", "Action": "*", "Resource": "*"}
    text = json.dumps({"Version": "2012-10-17", "Statement": [edited, manual]}, indent=2)
    aws.put_inline_policy(seeded, "ReadOnly", text)
    aws.assign(seeded, ACCOUNT_A, "ReadOnly", ALICE)
    provider = provider_for(aws_config(seeded))
    obs = provider.observe([], T)
    assert sum("not one accessctl wrote" in w for w in obs.warnings) == 2, obs.warnings
    [result] = provider.apply(ACCOUNT_A, [revoke(seeded, ACCOUNT_A, "ReadOnly", ALICE)], T)
    assert result.ok, result.message
    statements = json.loads(aws.inline_policy(seeded, "ReadOnly"))["Statement"]
    assert statements[:2] == [edited, manual]
    assert statements[2] == deny(seeded, T, T + timedelta(hours=1), ALICE)


def test_an_idle_run_reads_each_owned_policy_once_and_writes_nothing(
    aws: AwsSandbox, revoked: SeededInstance
) -> None:
    seeded = revoked
    aws.faults.calls.clear()
    provider = provider_for(aws_config(seeded))
    obs = provider.observe([ACCOUNT_A, ACCOUNT_B], T + timedelta(minutes=10))
    settled = provider.settle(T + timedelta(minutes=10))
    assert obs.calls["GetInlinePolicyForPermissionSet"] == 2
    # ReadOnly holds a live deny: one look at whether AWS provisioned it everywhere
    assert aws.faults.calls["ListAccountsForProvisionedPermissionSet"] == 2 + 1
    assert settled.calls == {} and writes(aws) == {}
