"""``accessctl activity`` with ``activity_source: cloudtrail-lake``: boto3's CloudTrail client
against the sandbox's CloudTrail Lake (StartQuery, DescribeQuery, GetQueryResults)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.core.timeutil import parse_rfc3339
from reconciler.sandbox.aws import AwsSandbox
from reconciler.sandbox.cloudtrail import sso_event
from tests.activity.conftest import activity, add_request
from tests.support.emulators import running_gcp

ONE, TWO = "111111111111", "222222222222"
ALICE = "alice@example.com"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as aws:
        yield aws


def seed(aws: AwsSandbox, account: str, region: str, user: str, at: str, name: str, **kw):
    record = sso_event(
        account, "ReadOnly", user, at=parse_rfc3339(at), source="ec2.amazonaws.com", name=name, **kw
    )
    aws.faults.cloudtrail.add(account, region, record)


@pytest.fixture
def aws(sandbox: AwsSandbox) -> Iterator[AwsSandbox]:
    sandbox.faults.clear()
    seed(sandbox, ONE, "us-east-1", ALICE, "2026-12-01T08:00:00Z", "Before")
    seed(sandbox, ONE, "us-east-1", ALICE, "2026-12-01T09:30:00Z", "DescribeInstances")
    seed(
        sandbox,
        ONE,
        "us-east-1",
        ALICE,
        "2026-12-01T10:00:00Z",
        "GetObject",
        error_code="AccessDenied",
        resource="arn:aws:s3:::payroll/x",
    )
    # an organisation store holds every region: no activity_regions needed
    seed(sandbox, ONE, "ap-south-1", ALICE, "2026-12-01T10:15:00Z", "RunInstances")
    seed(sandbox, ONE, "us-east-1", ALICE, "2026-12-01T12:00:00Z", "ListBuckets")
    seed(sandbox, ONE, "us-east-1", "carol@example.com", "2026-12-01T09:45:00Z", "Carols")
    seed(sandbox, TWO, "us-east-1", ALICE, "2026-12-01T09:35:00Z", "OtherScope")
    seed(
        sandbox,
        TWO,
        "us-east-1",
        "mallory@example.com",
        "2026-12-01T09:50:00Z",
        "GetSecretValue",
        error_code="AccessDeniedException",
    )
    yield sandbox


def lake_settings(store: str) -> str:
    return (
        "  aws: {instance_arn: 'arn:aws:sso:::instance/ssoins-0000000000000000', "
        "identity_store_id: d-0000000000, region: us-east-1, "
        f"activity_source: cloudtrail-lake, activity_event_data_store: '{store}'}}\n"
    )


def use_store(repo, store: str | None) -> None:
    text = (repo.root / "policies/access.yaml").read_text()
    head, _, _ = text.partition("  aws: {")
    settings = (
        lake_settings(store)
        if store
        else lake_settings("x").replace(", activity_event_data_store: 'x'", "")
    )
    repo.commit({"policies/access.yaml": head + settings}, "2026-11-30T13:00:00Z")


@pytest.fixture
def store(aws: AwsSandbox) -> str:
    return aws.faults.cloudtrail.lake.create_store("org-events")


@pytest.fixture
def repo(both_repo, store):
    use_store(both_repo, store)
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


def test_one_query_per_account_and_the_window(repo, env, aws, store):
    code, out, err = activity(repo, env=env)
    assert code == 0, err
    [grant] = out["grants"]
    actions = [(e["action"], e["denied"], e["outside_window"]) for e in grant["events"]]
    assert actions == [
        ("DescribeInstances", False, False),
        ("GetObject", True, False),
        ("RunInstances", False, False),
        ("ListBuckets", False, True),  # after the end: flagged, not counted
    ]  # not before the window, not carol's, not another account's
    assert (grant["calls"], grant["denied"], grant["after_end"]) == (3, 1, 1)
    assert grant["events"][1]["resource"] == "arn:aws:s3:::payroll/x"
    assert grant["events"][0]["service"] == "ec2"
    [attempt] = [u for u in out["unauthorized"] if u["provider"] == "aws"]
    assert (attempt["principal"], attempt["scope"]) == ("mallory@example.com", TWO)
    lake = aws.faults.cloudtrail.lake
    started = sorted(lake.started)
    assert len(started) == 2  # one per account (the grant's and the policy's other one)
    store_id = store.rpartition("/")[2]
    assert all(f"FROM {store_id} " in sql for sql in started)
    assert f"recipientAccountId = '{ONE}'" in started[0]
    assert f"recipientAccountId = '{TWO}'" in started[1]
    assert "eventTime >= '2026-12-01 09:00:00'" in started[0]
    # every query was described until FINISHED before its results were read
    assert lake.calls.count("StartQuery") == 2
    assert lake.calls.count("DescribeQuery") == 2


def test_results_are_paginated(repo, env, aws):
    aws.faults.cloudtrail.lake.page_cap = 1
    code, out, err = activity(repo, env=env)
    assert code == 0, err
    assert [e["action"] for e in out["grants"][0]["events"]] == [
        "DescribeInstances",
        "GetObject",
        "RunInstances",
        "ListBuckets",
    ]
    # account ONE: 5 rows (carol's too) -> 5 pages; account TWO: 2 rows -> 2 pages
    assert aws.faults.cloudtrail.lake.calls.count("GetQueryResults") == 7


def test_a_running_query_is_polled(repo, env, aws):
    lake = aws.faults.cloudtrail.lake
    lake.polls = 2
    code, out, err = activity(repo, env=env)
    assert code == 0, err
    assert out["grants"][0]["calls"] == 3
    assert sorted(lake.statuses().values())[0][:3] == ["RUNNING", "RUNNING", "FINISHED"]


def test_a_failed_query_is_that_accounts_error(repo, env, aws):
    aws.faults.cloudtrail.lake.fail_when(f"'{TWO}'", "Query exceeded the maximum scan size")
    code, out, err = activity(repo, env=env)
    assert code == 1
    assert out["grants"][0]["calls"] == 3  # the other account is still reported
    [error] = out["errors"]
    assert (error["provider"], error["scope"]) == ("aws", TWO)
    assert "failed" in error["message"] and "maximum scan size" in error["message"]
    assert TWO in err


def test_an_unknown_store_is_an_error(both_repo, env, aws):
    use_store(both_repo, "arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/" + "0" * 36)
    add_request(
        both_repo, "requests/alice/aws.yaml", "2026-12-01T09:00:00Z", provider="aws", scope=ONE,
        role="ReadOnly",
    )  # fmt: skip
    code, out, _ = activity(both_repo, env=env)
    assert code == 1
    assert sorted(e["scope"] for e in out["errors"] if e["provider"] == "aws") == [ONE, TWO]
    message = out["errors"][0]["message"]
    assert "no event data store" in message and "activity_event_data_store" in message
    assert out["grants"][0]["events"] == []


def test_a_store_in_another_region_is_not_found(both_repo, env, aws, store):
    elsewhere = store.replace(":us-east-1:", ":eu-west-1:")  # the client follows the ARN's region
    use_store(both_repo, elsewhere)
    add_request(
        both_repo, "requests/alice/aws.yaml", "2026-12-01T09:00:00Z", provider="aws", scope=ONE,
        role="ReadOnly",
    )  # fmt: skip
    code, out, _ = activity(both_repo, env=env)
    assert code == 1
    assert "eu-west-1" in out["errors"][0]["message"]


def test_no_store_configured_is_a_configuration_error(both_repo, env):
    use_store(both_repo, None)
    add_request(
        both_repo, "requests/alice/aws.yaml", "2026-12-01T09:00:00Z", provider="aws", scope=ONE,
        role="ReadOnly",
    )  # fmt: skip
    code, out, err = activity(both_repo, env=env)
    assert code == 2
    assert "activity_event_data_store" in err
    assert out == ""


def test_a_query_that_runs_too_long_is_cancelled(aws, store):
    """The source itself, with boto3's client to the sandbox and a short timeout."""
    import boto3

    from reconciler.activity.lake import CloudTrailLake
    from reconciler.activity.sources import LogReadError
    from reconciler.core.activity import ScopeQuery

    lake = aws.faults.cloudtrail.lake
    lake.polls = 1000  # it never finishes on its own
    client = boto3.session.Session().client(
        "cloudtrail",
        region_name="us-east-1",
        endpoint_url=aws.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    source = CloudTrailLake(
        store, region="us-east-1", client=client, timeout=1.0, sleep=lambda _: None
    )
    query = ScopeQuery(
        "aws",
        ONE,
        (ALICE,),
        parse_rfc3339("2026-12-01T09:00:00Z"),
        parse_rfc3339("2026-12-01T11:00:00Z"),
    )
    with pytest.raises(LogReadError, match="still RUNNING after 1s: cancelled"):
        source.read(query)
    [statuses] = lake.statuses().values()
    assert statuses[-1] == "CANCELLED" and lake.calls[-1] == "CancelQuery"
