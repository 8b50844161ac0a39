"""The asynchronous paths AWS has and moto lacks (IN_PROGRESS, FAILED, throttling, slow
operations), on real botocore clients answered by botocore's Stubber."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from reconciler.core.models import Change, ChangeKind, Grant
from reconciler.providers.aws import AwsProvider, AwsSettings, Tuning

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
INSTANCE = "arn:aws:sso:::instance/ssoins-1111111111111111"
STORE = "d-1111111111"
PS_ARN = "arn:aws:sso:::permissionSet/ssoins-1111111111111111/ps-1111111111111111"
ACCOUNT = "111111111111"
USER_ID = "u-alice"
REQUEST_ID = "8a9f1c6e-0000-4000-8000-000000000001"


class FakeTime:
    """A clock that moves only when the provider sleeps, so no test waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def _client(service: str) -> Any:
    return boto3.session.Session().client(
        service,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def stubs() -> Iterator[tuple[Stubber, Stubber, AwsProvider, FakeTime]]:
    sso, ids = _client("sso-admin"), _client("identitystore")
    fake = FakeTime()
    provider = AwsProvider(
        AwsSettings(INSTANCE, STORE, "us-east-1"),
        {"ReadOnly"},
        sso,
        ids,
        tuning=Tuning(workers=1, poll_first=1.0, poll_max=4.0, poll_timeout=10.0, retry_base=0.5),
        sleep=fake.sleep,
        clock=fake.clock,
    )
    with Stubber(sso) as sso_stub, Stubber(ids) as ids_stub:
        yield sso_stub, ids_stub, provider, fake
        sso_stub.assert_no_pending_responses()
        ids_stub.assert_no_pending_responses()


def _permission_sets(sso: Stubber) -> None:
    sso.add_response(
        "list_permission_sets", {"PermissionSets": [PS_ARN]}, {"InstanceArn": INSTANCE}
    )
    sso.add_response(
        "describe_permission_set",
        {
            "PermissionSet": {
                "Name": "ReadOnly",
                "PermissionSetArn": PS_ARN,
                "SessionDuration": "PT1H",
            }
        },
    )


def _user(ids: Stubber) -> None:
    ids.add_response(
        "get_user_id",
        {
            "UserId": USER_ID,
            "IdentityStoreId": STORE,
            "UserArn": "arn:aws:identitystore::111111111111:identitystore/d-1111111111/user/u-alice",
        },
    )


def _status(key: str, status: str, reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"Status": status, "RequestId": REQUEST_ID}
    if reason:
        body["FailureReason"] = reason
    return {key: body}


def _listing(sso: Stubber, *user_ids: str) -> None:
    rows = [
        {
            "AccountId": ACCOUNT,
            "PermissionSetArn": PS_ARN,
            "PrincipalType": "USER",
            "PrincipalId": u,
        }
        for u in user_ids
    ]
    sso.add_response("list_account_assignments", {"AccountAssignments": rows})


CREATE = "AccountAssignmentCreationStatus"
DELETE = "AccountAssignmentDeletionStatus"
PROVISION = "PermissionSetProvisioningStatus"


def _sessions_denied(sso: Stubber) -> None:
    """A revoke's session deny: read the inline policy (none), write it, provision it."""
    where = {"InstanceArn": INSTANCE, "PermissionSetArn": PS_ARN}
    sso.add_response("get_inline_policy_for_permission_set", {}, where)
    sso.add_response("put_inline_policy_to_permission_set", {})
    sso.add_response(
        "provision_permission_set",
        _status(PROVISION, "SUCCEEDED"),
        {**where, "TargetType": "ALL_PROVISIONED_ACCOUNTS"},
    )


def _grant(kind: ChangeKind = ChangeKind.GRANT) -> Change:
    return Change(kind, Grant("aws", ACCOUNT, "ReadOnly", "alice@example.com"), "test")


def _revoke() -> Change:
    """A revoke as the planner makes it: from an observed assignment, with its user id."""
    observed = Grant("aws", ACCOUNT, "ReadOnly", "alice@example.com", principal_id=USER_ID)
    return Change(ChangeKind.REVOKE, observed, "test")


def test_in_progress_then_succeeded_is_polled_with_backoff(stubs: Any) -> None:
    sso, ids, provider, fake = stubs
    _permission_sets(sso)
    _user(ids)
    sso.add_response("create_account_assignment", _status(CREATE, "IN_PROGRESS"))
    sso.add_response(
        "describe_account_assignment_creation_status",
        _status(CREATE, "IN_PROGRESS"),
        {"InstanceArn": INSTANCE, "AccountAssignmentCreationRequestId": REQUEST_ID},
    )
    sso.add_response("describe_account_assignment_creation_status", _status(CREATE, "SUCCEEDED"))
    _listing(sso, USER_ID)
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert result.ok and result.verified, result.message
    assert result.cloud_request_id == REQUEST_ID
    assert fake.sleeps == [1.0, 2.0]


def test_failed_creation_is_a_failure_with_aws_reason(stubs: Any) -> None:
    sso, ids, provider, _ = stubs
    _permission_sets(sso)
    _user(ids)
    sso.add_response("create_account_assignment", _status(CREATE, "IN_PROGRESS"))
    sso.add_response(
        "describe_account_assignment_creation_status",
        _status(CREATE, "FAILED", "Received a 404 status error: Not supported account"),
    )
    _listing(sso)
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert not result.ok
    assert "FAILED: Received a 404 status error: Not supported account" in result.message
    assert result.cloud_request_id == REQUEST_ID


def test_succeeded_but_absent_on_read_back_is_a_failure(stubs: Any) -> None:
    sso, ids, provider, _ = stubs
    _permission_sets(sso)
    _user(ids)
    sso.add_response("create_account_assignment", _status(CREATE, "SUCCEEDED"))
    _listing(sso)  # nothing there
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert not result.ok and not result.verified
    assert "absent on read-back" in result.message


def test_throttling_is_retried(stubs: Any) -> None:
    sso, ids, provider, fake = stubs
    _permission_sets(sso)
    ids.add_client_error("get_user_id", "ThrottlingException", "Rate exceeded")
    _user(ids)
    sso.add_client_error("create_account_assignment", "ThrottlingException", "Rate exceeded")
    sso.add_client_error("create_account_assignment", "ThrottlingException", "Rate exceeded")
    sso.add_response("create_account_assignment", _status(CREATE, "SUCCEEDED"))
    _listing(sso, USER_ID)
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert result.ok and result.verified, result.message
    assert len(fake.sleeps) == 3  # one retry of the lookup, two of the creation


def test_throttling_without_end_fails_the_change_only(stubs: Any) -> None:
    sso, ids, provider, _ = stubs
    _permission_sets(sso)
    _user(ids)
    for _ in range(provider.tuning.retry_attempts):
        sso.add_client_error("create_account_assignment", "ThrottlingException", "Rate exceeded")
    _listing(sso)
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert not result.ok
    assert "ThrottlingException: Rate exceeded" in result.message


def test_conflict_on_deletion_is_retried_then_polled(stubs: Any) -> None:
    sso, _, provider, fake = stubs
    _permission_sets(sso)  # no user lookup: the revoke carries the observed user id
    sso.add_client_error("delete_account_assignment", "ConflictException", "operation in progress")
    sso.add_response("delete_account_assignment", _status(DELETE, "IN_PROGRESS"))
    sso.add_response(
        "describe_account_assignment_deletion_status",
        _status(DELETE, "SUCCEEDED"),
        {"InstanceArn": INSTANCE, "AccountAssignmentDeletionRequestId": REQUEST_ID},
    )
    _listing(sso)
    _sessions_denied(sso)
    [result] = provider.apply(ACCOUNT, [_revoke()], NOW)
    assert result.ok and result.verified, result.message
    assert "sessions issued before 2026-12-01T09:00:00Z denied" in result.message
    assert len(fake.sleeps) == 2  # one jittered retry of the conflict, one poll
    assert 0.25 <= fake.sleeps[0] <= 0.5  # Tuning(retry_base=0.5): attempt 0 waits base/2..base


def test_slow_operation_times_out_as_a_failure(stubs: Any) -> None:
    sso, ids, provider, fake = stubs
    _permission_sets(sso)
    _user(ids)
    sso.add_response("create_account_assignment", _status(CREATE, "IN_PROGRESS"))
    for _ in range(3):  # polls at t=1, 3, 7; the next (t=11) would pass the 10 s timeout
        sso.add_response(
            "describe_account_assignment_creation_status", _status(CREATE, "IN_PROGRESS")
        )
    _listing(sso)
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert not result.ok
    assert "still IN_PROGRESS after 10s" in result.message
    assert fake.sleeps == [1.0, 2.0, 4.0]


def test_observe_discovers_provisioned_accounts_and_pages(stubs: Any) -> None:
    """AWS's own discovery path (moto does not implement it faithfully): accounts where an
    owned permission set is provisioned; listings followed across pages; groups dropped."""
    sso, ids, provider, _ = stubs
    _permission_sets(sso)
    sso.add_response("get_inline_policy_for_permission_set", {})
    sso.add_response(
        "list_accounts_for_provisioned_permission_set",
        {"AccountIds": ["444444444444"]},
        {"InstanceArn": INSTANCE, "PermissionSetArn": PS_ARN},
    )
    sso.add_response(
        "list_account_assignments",
        {
            "AccountAssignments": [
                {
                    "AccountId": "444444444444",
                    "PermissionSetArn": PS_ARN,
                    "PrincipalType": "GROUP",
                    "PrincipalId": "g-1",
                }
            ],
            "NextToken": "page-2",
        },
    )
    sso.add_response(
        "list_account_assignments",
        {
            "AccountAssignments": [
                {
                    "AccountId": "444444444444",
                    "PermissionSetArn": PS_ARN,
                    "PrincipalType": "USER",
                    "PrincipalId": "u-9",
                }
            ]
        },
        {
            "InstanceArn": INSTANCE,
            "AccountId": "444444444444",
            "PermissionSetArn": PS_ARN,
            "NextToken": "page-2",
        },
    )
    ids.add_response(
        "describe_user",
        {
            "UserName": "Mallory@Example.com",
            "UserId": "u-9",
            "IdentityStoreId": STORE,
            "UserArn": "arn:aws:identitystore::111111111111:identitystore/d-1111111111/user/u-9",
            "Revision": "1",
        },
    )
    obs = provider.observe([], NOW)
    mallory = Grant("aws", "444444444444", "ReadOnly", "Mallory@Example.com", principal_id="u-9")
    assert obs.grants == {"444444444444": frozenset({mallory})}
    assert obs.calls["ListAccountAssignments"] == 2


def test_timeout_that_the_read_back_shows_done_is_a_success(stubs: Any) -> None:
    sso, ids, provider, _ = stubs
    _permission_sets(sso)
    _user(ids)
    sso.add_response("create_account_assignment", _status(CREATE, "IN_PROGRESS"))
    for _ in range(3):
        sso.add_response(
            "describe_account_assignment_creation_status", _status(CREATE, "IN_PROGRESS")
        )
    _listing(sso, USER_ID)  # it finished after all
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert result.ok and result.verified, result.message
    assert "read-back shows it done" in result.message


def test_aws_failed_stays_a_failure_whatever_the_listing_says(stubs: Any) -> None:
    sso, ids, provider, _ = stubs
    _permission_sets(sso)
    _user(ids)
    sso.add_response("create_account_assignment", _status(CREATE, "FAILED", "Quota exceeded"))
    _listing(sso, USER_ID)
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert not result.ok
    assert "FAILED: Quota exceeded" in result.message


@pytest.mark.parametrize(
    "code",
    [
        "ConflictException",
        "ThrottlingException",
        "TooManyRequestsException",
        "InternalServerException",
    ],
)
def test_transient_errors_are_retried(stubs: Any, code: str) -> None:
    _, ids, provider, fake = stubs
    ids.add_client_error("get_user_id", code, "try again")
    _user(ids)
    assert provider.user_id("alice@example.com") == USER_ID
    assert len(fake.sleeps) == 1


def test_other_errors_are_not_retried(stubs: Any) -> None:
    sso, ids, provider, fake = stubs
    _permission_sets(sso)
    _user(ids)
    sso.add_client_error("create_account_assignment", "AccessDeniedException", "no")
    _listing(sso)
    [result] = provider.apply(ACCOUNT, [_grant()], NOW)
    assert not result.ok and "AccessDeniedException: no" in result.message
    assert fake.sleeps == []


def test_retries_wait_the_shared_jittered_backoff_up_to_its_cap() -> None:
    """Attempt n waits a random time in [c/2, c], c = min(retry_cap, retry_base * 2**n)."""
    sso = _client("sso-admin")
    fake = FakeTime()
    tuning = Tuning(retry_attempts=4, retry_base=1.0, retry_cap=2.0)
    provider = AwsProvider(
        AwsSettings(INSTANCE, STORE, "us-east-1"),
        {"ReadOnly"},
        sso,
        _client("identitystore"),
        tuning=tuning,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    with Stubber(sso) as stub:
        for _ in range(3):
            stub.add_client_error("list_permission_sets", "ThrottlingException", "Rate exceeded")
        _permission_sets(stub)
        assert provider.permission_sets() == {"ReadOnly": PS_ARN}
        stub.assert_no_pending_responses()
    assert len(fake.sleeps) == 3
    assert 0.5 <= fake.sleeps[0] <= 1.0
    assert all(1.0 <= s <= 2.0 for s in fake.sleeps[1:]), fake.sleeps
