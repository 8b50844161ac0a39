"""apply --trust-git --at against moto in server mode on AWS_ENDPOINT_URL, as a user runs it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import POLICIES, GitRepo, clean_env, request_yaml

ACCOUNT = "111122223333"
REGION = "us-east-1"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class Aws:
    def __init__(self, url: str) -> None:
        import urllib.request

        urllib.request.urlopen(
            urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")
        ).read()
        kw: dict[str, Any] = {
            "region_name": REGION,
            "endpoint_url": url,
            **{k.lower(): v for k, v in CREDS.items()},
        }
        self.url = url
        self.sso = boto3.client("sso-admin", **kw)
        self.ids = boto3.client("identitystore", **kw)
        inst = self.sso.list_instances()["Instances"][0]
        self.instance, self.store = inst["InstanceArn"], inst["IdentityStoreId"]
        self.users = {
            n: self.ids.create_user(
                IdentityStoreId=self.store,
                UserName=n,
                DisplayName=n,
                Name={"GivenName": n, "FamilyName": "X"},
            )["UserId"]
            for n in ("alice", "carol", "bob")
        }
        self.group = self.ids.create_group(IdentityStoreId=self.store, DisplayName="ops")["GroupId"]
        self.ps = {
            n: self.sso.create_permission_set(
                InstanceArn=self.instance, Name=n, SessionDuration="PT1H"
            )["PermissionSet"]["PermissionSetArn"]
            for n in ("ReadOnlyAccess", "BreakGlass")
        }

    def assign(self, ps: str, principal_type: str, principal: str) -> None:
        self.sso.create_account_assignment(
            InstanceArn=self.instance,
            TargetId=ACCOUNT,
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=self.ps[ps],
            PrincipalType=principal_type,
            PrincipalId=principal,
        )

    def held(self) -> set[tuple[str, str, str]]:
        names = {v: k for k, v in self.ps.items()}
        out = set()
        for _name, arn in self.ps.items():
            for a in self.sso.list_account_assignments(
                InstanceArn=self.instance, AccountId=ACCOUNT, PermissionSetArn=arn
            )["AccountAssignments"]:
                out.add((names[a["PermissionSetArn"]], a["PrincipalType"], a["PrincipalId"]))
        return out

    def policies(self, with_gcp: bool) -> str:
        text = POLICIES.replace(
            "arn:aws:sso:::instance/ssoins-1111111111111111", self.instance
        ).replace("d-1111111111", self.store)
        if not with_gcp:
            text = (
                "policies:\n  - name: payments-aws-debug"
                + text.split("  - name: payments-aws-debug")[1]
            )
            text = text.replace("  gcp: {}\n", "")
        return text


@pytest.fixture
def aws(moto_url: str) -> Aws:
    return Aws(moto_url)


def env(aws: Aws) -> dict[str, str]:
    return clean_env(
        AWS_ENDPOINT_URL=aws.url,
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        **CREDS,
    )


def aws_request(requester: str = "alice", extra: str = "duration: 2h\n") -> str:
    return request_yaml(
        requester=requester,
        provider="aws",
        scope=f"'{ACCOUNT}'",
        role="ReadOnlyAccess",
        extra=extra,
    )


@pytest.mark.parametrize("with_gcp", [False, True], ids=["aws-only", "with-gcp-policies"])
def test_aws_lifecycle(repo: GitRepo, aws: Aws, with_gcp: bool) -> None:
    repo.write("policies/main.yaml", aws.policies(with_gcp))
    repo.commit("aws policies", "2026-11-02T00:00:00Z", author="erin")
    # unmanaged: a group assignment of the owned set, a user on an unowned set
    aws.assign("ReadOnlyAccess", "GROUP", aws.group)
    aws.assign("BreakGlass", "USER", aws.users["bob"])
    # an owned set assigned to a user without any request: revoked
    aws.assign("ReadOnlyAccess", "USER", aws.users["carol"])
    repo.write("requests/alice/inc-1.yaml", aws_request())
    repo.commit("alice", "2026-12-01T09:00:00Z")
    e = env(aws)

    plan = repo.run(
        "plan", "--trust-git", "--at", "2026-12-01T09:30:00Z", "--format", "json", env=e
    )
    assert plan.code == 0, plan
    p = plan.json()
    assert [(g["principal"], g["scope"], g["role"]) for g in p["grant"]] == [
        ("alice", ACCOUNT, "ReadOnlyAccess")
    ]
    assert [g["scope"] for g in p["revoke"]] == [ACCOUNT]

    res = repo.run(
        "apply", "--trust-git", "--at", "2026-12-01T09:30:00Z", "--format", "json", env=e
    )
    assert res.code == 0, res
    unmanaged = {("ReadOnlyAccess", "GROUP", aws.group), ("BreakGlass", "USER", aws.users["bob"])}
    assert aws.held() == unmanaged | {("ReadOnlyAccess", "USER", aws.users["alice"])}

    again = repo.run(
        "apply", "--trust-git", "--at", "2026-12-01T10:00:00Z", "--format", "json", env=e
    )
    assert again.code == 0, again
    assert again.json()["grant"] == [] and again.json()["revoke"] == []

    done = repo.run(
        "apply", "--trust-git", "--at", "2026-12-01T11:00:01Z", "--format", "json", env=e
    )
    assert done.code == 0, done
    assert aws.held() == unmanaged


def test_aws_overlap_and_early_revoke(repo: GitRepo, aws: Aws) -> None:
    repo.write("policies/main.yaml", aws.policies(False))
    repo.write("requests/alice/inc-1.yaml", aws_request())
    repo.write("requests/alice/inc-2.yaml", aws_request(extra="duration: 4h\n"))
    repo.commit("two overlapping", "2026-12-01T09:00:00Z")
    e = env(aws)
    assert repo.run("apply", "--trust-git", "--at", "2026-12-01T09:30:00Z", env=e).code == 0
    alice = ("ReadOnlyAccess", "USER", aws.users["alice"])
    assert alice in aws.held()
    # the shorter one ends; the longer one still holds the same assignment
    assert repo.run("apply", "--trust-git", "--at", "2026-12-01T11:30:00Z", env=e).code == 0
    assert alice in aws.held()
    repo.remove("requests/alice/inc-2.yaml")
    repo.commit("revoke early", "2026-12-01T11:40:00Z")
    assert repo.run("apply", "--trust-git", "--at", "2026-12-01T11:45:00Z", env=e).code == 0
    assert alice not in aws.held()
