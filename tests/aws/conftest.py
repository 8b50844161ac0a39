"""Fixtures for the AWS tests: one moto server per worker process, reset per test."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from reconciler.core.models import Config, Policy
from reconciler.providers.aws import AwsProvider, Tuning, make_provider
from reconciler.sandbox.aws import AwsSandbox, SeededInstance

ALICE = "alice@example.com"
BOB = "bob@example.com"
CAROL = "carol@example.com"
ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"
ACCOUNT_C = "333333333333"
FAST = Tuning(workers=4, poll_first=0.01, poll_max=0.05, poll_timeout=5, retry_base=0.01)


@pytest.fixture(scope="session")
def aws_sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def aws(aws_sandbox: AwsSandbox, monkeypatch: pytest.MonkeyPatch) -> AwsSandbox:
    aws_sandbox.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_sandbox.env().items():
        monkeypatch.setenv(name, value)
    return aws_sandbox


@pytest.fixture
def seeded(aws: AwsSandbox) -> SeededInstance:
    """Three users, an `ops` group; ReadOnly and Admin are owned, BreakGlass is not."""
    return aws.seed(
        users=[ALICE, BOB, CAROL],
        permission_sets={"ReadOnly": "PT1H", "Admin": "PT8H", "BreakGlass": "PT1H"},
        groups=["ops"],
    )


def aws_config(
    seeded: SeededInstance,
    *,
    scopes: tuple[str, ...] = ("1111*", "2222*", "3333*"),
    roles: tuple[str, ...] = ("ReadOnly", "Admin"),
    max_duration: timedelta = timedelta(hours=4),
    identities: dict[str, str] | None = None,
) -> Config:
    """A Config as the loader builds it from policies/ (one aws policy)."""
    policy = Policy(
        name="aws-oncall",
        provider="aws",
        scopes=scopes,
        roles=roles,
        requesters=("alice", "bob", "carol", "dave"),
        approvers=("erin",),
        approvals=0,
        max_duration=max_duration,
        file="policies/aws.yaml",
        line=2,
    )
    if identities is None:
        identities = {"alice": ALICE, "bob": BOB, "carol": CAROL}
    return Config(
        policies=(policy,),
        identities={login: {"aws": user} for login, user in identities.items()},
        providers={"aws": seeded.provider_settings()},
    )


def provider_for(config: Config, **options: Any) -> AwsProvider:
    """The provider exactly as the app builds it (clients from boto3's usual chain)."""
    return make_provider(config, {"tuning": FAST, **options})


def _error_response(
    code: str, message: str, status: int = 400
) -> tuple[AWSResponse, dict[str, Any]]:
    parsed = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return AWSResponse("http://fault", status, {}, None), parsed  # type: ignore[arg-type]


def fail_account(client: Any, account: str, code: str = "AccessDeniedException") -> None:
    """Make every call about ``account`` fail on this (real) client, as AWS would for an
    account the reconciler's role cannot reach. The rest goes to moto untouched."""

    def handler(params: dict[str, Any], **_: Any) -> Any:
        body = json.loads(params.get("body") or b"{}")
        if account in (body.get("AccountId"), body.get("TargetId")):
            return _error_response(code, f"not authorized for account {account}")
        return None

    client.meta.events.register("before-call.sso-admin.*", handler)


class SlowCreations:
    """Make moto behave like AWS: creations answer IN_PROGRESS, then SUCCEEDED after
    ``polls`` status checks. Counts how many creations are outstanding at once."""

    def __init__(self, client: Any, polls: int = 2) -> None:
        self.polls = polls
        self.lock = threading.Lock()
        self.pending: dict[str, int] = {}
        self.outstanding = 0
        self.max_outstanding = 0
        client.meta.events.register("after-call.sso-admin.CreateAccountAssignment", self._created)
        client.meta.events.register(
            "after-call.sso-admin.DescribeAccountAssignmentCreationStatus", self._described
        )

    def _created(self, parsed: dict[str, Any], **_: Any) -> None:
        status = parsed["AccountAssignmentCreationStatus"]
        status["Status"] = "IN_PROGRESS"
        with self.lock:
            self.pending[status["RequestId"]] = self.polls
            self.outstanding += 1
            self.max_outstanding = max(self.max_outstanding, self.outstanding)

    def _described(self, parsed: dict[str, Any], **_: Any) -> None:
        status = parsed["AccountAssignmentCreationStatus"]
        with self.lock:
            left = self.pending[status["RequestId"]] - 1
            self.pending[status["RequestId"]] = left
            if left > 0:
                status["Status"] = "IN_PROGRESS"
            else:
                self.outstanding -= 1


Hook = Callable[..., Any]
