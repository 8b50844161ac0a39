"""``accessctl activity`` on AWS: boto3's CloudTrail client against the sandbox's LookupEvents."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.core.timeutil import parse_rfc3339
from reconciler.sandbox.aws import AwsSandbox
from reconciler.sandbox.cloudtrail import sso_event
from tests.activity.conftest import activity, add_request
from tests.support.emulators import running_gcp

ONE, TWO = "111111111111", "222222222222"
ROLE = "arn:aws:iam::{account}:role/accessctl-activity"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as aws:
        yield aws


def seed(aws: AwsSandbox, account: str, region: str, ps: str, user: str, at: str, name: str, **kw):
    aws.faults.cloudtrail.add(
        account,
        region,
        sso_event(
            account, ps, user, at=parse_rfc3339(at), source="ec2.amazonaws.com", name=name, **kw
        ),
    )


@pytest.fixture
def aws(sandbox: AwsSandbox) -> Iterator[AwsSandbox]:
    sandbox.faults.clear()
    a = "alice@example.com"
    seed(sandbox, ONE, "us-east-1", "ReadOnly", a, "2026-12-01T08:00:00Z", "Before")
    seed(sandbox, ONE, "us-east-1", "ReadOnly", a, "2026-12-01T09:30:00Z", "DescribeInstances")
    seed(
        sandbox,
        ONE,
        "us-east-1",
        "ReadOnly",
        a,
        "2026-12-01T10:00:00Z",
        "GetObject",
        error_code="AccessDenied",
        resource="arn:aws:s3:::payroll/x",
    )
    seed(sandbox, ONE, "us-east-1", "ReadOnly", a, "2026-12-01T12:00:00Z", "ListBuckets")
    seed(sandbox, ONE, "us-east-1", "Admin", a, "2026-12-01T09:40:00Z", "OtherPermissionSet")
    seed(
        sandbox, ONE, "us-east-1", "ReadOnly", "carol@example.com", "2026-12-01T09:45:00Z", "Carols"
    )
    seed(
        sandbox,
        ONE,
        "eu-west-1",
        "ReadOnly",
        a,
        "2026-12-01T10:15:00Z",
        "RunInstances",
        error_code="Client.UnauthorizedOperation",
    )
    seed(sandbox, TWO, "us-east-1", "ReadOnly", a, "2026-12-01T09:35:00Z", "OtherScope")
    seed(
        sandbox,
        TWO,
        "us-east-1",
        "ReadOnly",
        "mallory@example.com",
        "2026-12-01T09:50:00Z",
        "GetSecretValue",
        error_code="AccessDeniedException",
    )
    yield sandbox


@pytest.fixture
def repo(both_repo):
    text = (both_repo.root / "policies/access.yaml").read_text()
    text = text.replace(
        "activity_regions: [eu-west-1]", f"activity_regions: [eu-west-1], activity_role: '{ROLE}'"
    )
    both_repo.commit({"policies/access.yaml": text}, "2026-11-30T13:00:00Z")
    add_request(
        both_repo,
        "requests/alice/aws.yaml",
        "2026-12-01T09:00:00Z",
        provider="aws",
        scope=ONE,
        role="ReadOnly",
    )
    return both_repo


@pytest.fixture
def env(aws) -> Iterator[dict[str, str]]:
    with running_gcp("projects/payments-prod", "projects/ledger-prod") as gcp:
        yield aws.env() | {"ACCESSCTL_GCP_ENDPOINT": gcp.url}


def test_sessions_of_the_user_and_permission_set(repo, env, aws):
    code, out, err = activity(repo, env=env)
    assert code == 0, err
    [grant] = out["grants"]
    assert (grant["principal"], grant["scope"], grant["role"]) == (
        "alice@example.com",
        ONE,
        "ReadOnly",
    )
    names = [(e["action"], e["denied"], e["outside_window"]) for e in grant["events"]]
    assert names == [
        ("DescribeInstances", False, False),
        ("GetObject", True, False),
        ("RunInstances", True, False),  # the activity region too
        ("ListBuckets", False, True),  # after the revocation: a session that outlived it
    ]
    assert (grant["calls"], grant["denied"], grant["after_end"]) == (3, 2, 1)
    assert grant["events"][1]["resource"] == "arn:aws:s3:::payroll/x"
    assert grant["events"][0]["service"] == "ec2"
    [attempt] = [u for u in out["unauthorized"] if u["provider"] == "aws"]
    assert (attempt["principal"], attempt["scope"], attempt["action"]) == (
        "mallory@example.com",
        TWO,
        "GetSecretValue",
    )
    # one account per assumed role, each region once: the reads went to the right place
    assert sorted(set(aws.faults.cloudtrail.calls)) == [
        (ONE, "eu-west-1"),
        (ONE, "us-east-1"),
        (TWO, "eu-west-1"),
        (TWO, "us-east-1"),
    ]


def test_throttling_is_retried(repo, env, aws):
    aws.faults.cloudtrail.throttle_next(3)
    code, out, err = activity(repo, env=env)
    assert code == 0, err
    assert out["grants"][0]["calls"] == 3
    assert aws.faults.cloudtrail.throttled == 3


def test_one_account_unreadable(repo, env, aws):
    aws.faults.cloudtrail.deny(TWO)
    code, out, err = activity(repo, env=env)
    assert code == 1
    assert out["grants"][0]["after_end"] == 1
    assert [(e["provider"], e["scope"]) for e in out["errors"]] == [("aws", TWO)]
    assert "cloudtrail:LookupEvents" in out["errors"][0]["message"]
    assert TWO in err


def test_used_after_end_fails_the_run_on_demand(repo, env):
    code, _, _ = activity(repo, "--fail-on-anomaly", env=env)
    assert code == 1
    code, text, _ = activity(repo, env=env, fmt="text")
    assert code == 0 and "used-after-end" in text and "AFTER-END" in text


def test_audit_with_activity(repo, env):
    import json
    from importlib import resources

    import jsonschema

    from tests.audit.conftest import run_cli

    proc = run_cli(
        "audit",
        "--repo",
        str(repo.root),
        "--trust-git",
        "--no-ledger",
        "--activity",
        "--format",
        "json",
        "--at",
        "2026-12-02T00:00:00Z",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    schema = json.loads(
        resources.files("reconciler").joinpath("schemas/audit.schema.json").read_text()
    )
    jsonschema.validate(doc, schema)
    [entry] = [r for r in doc["requests"] if r["file"] == "requests/alice/aws.yaml"]
    assert entry["activity"] == {
        "calls": 3,
        "denied": 2,
        "after_end": 1,
        "first": "2026-12-01T09:30:00Z",
        "last": "2026-12-01T12:00:00Z",
    }
    codes = [a["code"] for a in entry["anomalies"]]
    assert "used-after-end" in codes and "denied-attempts" in codes
    proc = run_cli(
        "audit",
        "--repo",
        str(repo.root),
        "--trust-git",
        "--no-ledger",
        "--format",
        "json",
        "--at",
        "2026-12-02T00:00:00Z",
        env=env,
    )
    plain = json.loads(proc.stdout)["requests"]
    assert all("activity" not in r for r in plain)  # only when asked
