"""How long after a grant's end ``activity`` reads AWS: the permission set's session length
(its SessionDuration, read once per set), counted from the revocation the ledger records;
12 hours only when it is unknown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.core.timeutil import parse_rfc3339
from reconciler.sandbox.aws import AwsSandbox
from reconciler.sandbox.cloudtrail import sso_event
from tests.activity.conftest import activity, add_request
from tests.audit.conftest import run_cli
from tests.support.emulators import running_gcp

ONE = "111111111111"
ALICE = "alice@example.com"
ROLE = "arn:aws:iam::{account}:role/accessctl-activity"  # CloudTrail read in the account


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as aws:
        yield aws


@pytest.fixture
def aws(sandbox: AwsSandbox) -> Iterator[AwsSandbox]:
    sandbox.reset()  # a fresh Identity Center instance: only this test's permission sets
    for at, name in [
        ("2026-12-01T09:30:00Z", "DescribeInstances"),
        ("2026-12-01T11:30:00Z", "InsideTheSession"),  # end 11:00 + 1h session
        ("2026-12-01T12:30:00Z", "AfterTheSession"),
        ("2026-12-01T12:50:00Z", "LaterStill"),
    ]:
        record = sso_event(
            ONE, "ReadOnly", ALICE, at=parse_rfc3339(at), source="ec2.amazonaws.com", name=name
        )
        sandbox.faults.cloudtrail.add(ONE, "us-east-1", record)
    yield sandbox


@pytest.fixture
def env(aws) -> Iterator[dict[str, str]]:
    with running_gcp("projects/payments-prod", "projects/ledger-prod") as gcp:
        yield aws.env() | {"ACCESSCTL_GCP_ENDPOINT": gcp.url}


def settings(repo, instance: str | None = None, store: str | None = None) -> None:
    text = (repo.root / "policies/access.yaml").read_text()
    text = text.replace("activity_regions: [eu-west-1]", f"activity_role: '{ROLE}'")
    if instance and store:
        text = text.replace("arn:aws:sso:::instance/ssoins-0000000000000000", instance)
        text = text.replace("d-0000000000", store)
    repo.commit({"policies/access.yaml": text}, "2026-11-30T13:00:00Z")


def instance_repo(repo, aws: AwsSandbox, sets: dict[str, str | None]):
    """The policies point at the sandbox's instance, which holds ``sets``."""
    seeded = aws.seed(users=[ALICE], permission_sets=sets)
    settings(repo, seeded.instance_arn, seeded.identity_store_id)
    add_request(
        repo, "requests/alice/aws.yaml", "2026-12-01T09:00:00Z", provider="aws", scope=ONE,
        role="ReadOnly",
    )  # fmt: skip
    return repo


def actions(out: dict) -> list[tuple[str, bool]]:
    [grant] = out["grants"]
    return [(e["action"], e["outside_window"]) for e in grant["events"]]


@pytest.mark.parametrize("duration", ["PT1H", None], ids=["iso-8601", "moto-seconds"])
def test_the_session_length_bounds_the_range_after_the_end(both_repo, aws, env, duration):
    repo = instance_repo(both_repo, aws, {"ReadOnly": duration, "Admin": "PT4H"})
    before = aws.faults.calls.copy()
    code, out, err = activity(repo, env=env)
    assert code == 0, err
    assert actions(out) == [
        ("DescribeInstances", False),
        ("InsideTheSession", True),  # a session opened before 11:00 could still run
    ]  # 12:30: every session of a 1h permission set had ended
    assert out["grants"][0]["after_end"] == 1
    asked = aws.faults.calls - before
    assert asked["ListPermissionSets"] == 1
    assert asked["DescribePermissionSet"] == 2  # once per set in the instance
    assert "12 hours" not in err


def test_an_unknown_permission_set_reads_twelve_hours(both_repo, aws, env):
    repo = instance_repo(both_repo, aws, {"Admin": "PT4H"})  # no ReadOnly in the instance
    code, out, err = activity(repo, env=env)
    assert code == 0, err
    assert [a for a, _ in actions(out)] == [
        "DescribeInstances",
        "InsideTheSession",
        "AfterTheSession",
        "LaterStill",
    ]
    assert "no session length for ReadOnly" in err and "12 hours assumed" in err


def test_an_instance_it_cannot_find_reads_twelve_hours(both_repo, aws, env):
    settings(both_repo)  # an instance the sandbox does not hold
    add_request(
        both_repo, "requests/alice/aws.yaml", "2026-12-01T09:00:00Z", provider="aws", scope=ONE,
        role="ReadOnly",
    )  # fmt: skip
    code, out, err = activity(both_repo, env=env)
    assert code == 0, err
    assert len(out["grants"][0]["events"]) == 4
    assert "12 hours assumed" in err


def test_a_late_revoke_counts_from_the_revocation(both_repo, aws, env):
    repo = instance_repo(both_repo, aws, {"ReadOnly": "PT1H"})

    def apply(at: str) -> None:
        proc = run_cli("apply", "--repo", str(repo.root), "--trust-git", "--at", at, env=env)
        assert proc.returncode == 0, proc.stderr

    apply("2026-12-01T09:05:00Z")  # granted
    apply("2026-12-01T11:40:00Z")  # revoked 40 minutes late: the ledger says when
    code, out, err = activity(repo, env=env)
    assert code == 0, err
    assert actions(out) == [
        ("DescribeInstances", False),
        ("InsideTheSession", True),
        ("AfterTheSession", True),  # a session opened at 11:39 lasts until 12:39
    ]
    code, out, _ = activity(repo, "--no-ledger", env=env)
    assert [a for a, _ in actions(out)] == ["DescribeInstances", "InsideTheSession"]
