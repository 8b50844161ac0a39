"""The embedded AWS sandbox: moto in server mode, in-process, and an Identity Center seeder.

```python
with AwsSandbox() as aws:
    seeded = aws.seed(users=["alice@example.com"], permission_sets={"ReadOnly": "PT1H"})
    os.environ.update(aws.env())      # boto3 now talks to moto through AWS_ENDPOINT_URL
```

moto keeps its state in process-wide backends: two sandboxes in one process share it, and
``reset()`` wipes both. Tests run one sandbox per process (pytest-xdist workers are
processes) and reset it between tests.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

REGION = "us-east-1"
# moto accepts any credentials; these never leave the machine.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass
class SeededInstance:
    """What seed() created: paste ``provider_settings()`` under ``providers.aws``."""

    instance_arn: str
    identity_store_id: str
    region: str
    users: dict[str, str] = field(default_factory=dict)  # user name -> user id
    groups: dict[str, str] = field(default_factory=dict)  # display name -> group id
    permission_sets: dict[str, str] = field(default_factory=dict)  # name -> ARN

    def provider_settings(self) -> dict[str, str]:
        return {
            "instance_arn": self.instance_arn,
            "identity_store_id": self.identity_store_id,
            "region": self.region,
        }


class AwsSandbox:
    """moto's server on 127.0.0.1 and a free port, for as long as the context lasts."""

    def __init__(self, region: str = REGION) -> None:
        self.region = region
        self._server: Any = None
        self._url = ""
        self._clients: dict[str, Any] = {}

    def start(self) -> AwsSandbox:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request to stderr; the demo and the tests need none of it.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self._url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> AwsSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if not self._url:
            raise RuntimeError("AwsSandbox.start() first")
        return self._url

    def env(self) -> dict[str, str]:
        """Environment that points boto3 (and `accessctl` subprocesses) at the sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            **FAKE_CREDENTIALS,
        }

    def reset(self) -> None:
        """Forget every resource (moto's own reset endpoint)."""
        url = f"{self.url}/moto-api/reset"  # our own server, plain http
        req = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            resp.read()

    def client(self, service: str) -> Any:
        """A boto3 client bound to the sandbox whatever the environment says (cached)."""
        if service not in self._clients:
            self._clients[service] = self._new_client(service)
        return self._clients[service]

    def _new_client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            region_name=self.region,
            endpoint_url=self.url,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    # -- seeding ------------------------------------------------------------------------

    def seed(
        self,
        users: Iterable[str] = (),
        permission_sets: Mapping[str, str] | None = None,
        groups: Iterable[str] = (),
    ) -> SeededInstance:
        """The Identity Center instance (moto makes one per account and region), identity
        store users and groups, and permission sets ``{name: SessionDuration}``."""
        sso, ids = self.client("sso-admin"), self.client("identitystore")
        instance = sso.list_instances()["Instances"][0]
        seeded = SeededInstance(instance["InstanceArn"], instance["IdentityStoreId"], self.region)
        for name in users:
            self.add_user(seeded, name, ids)
        for name in groups:
            seeded.groups[name] = ids.create_group(
                IdentityStoreId=seeded.identity_store_id, DisplayName=name
            )["GroupId"]
        for name, duration in (permission_sets or {}).items():
            seeded.permission_sets[name] = sso.create_permission_set(
                InstanceArn=seeded.instance_arn, Name=name, SessionDuration=duration
            )["PermissionSet"]["PermissionSetArn"]
        return seeded

    def add_user(self, seeded: SeededInstance, name: str, ids: Any = None) -> str:
        ids = ids or self.client("identitystore")
        given, _, family = name.partition("@")[0].partition(".")
        seeded.users[name] = ids.create_user(
            IdentityStoreId=seeded.identity_store_id,
            UserName=name,
            DisplayName=name,
            Name={"GivenName": given or name, "FamilyName": family or "User"},
            Emails=[{"Value": name, "Primary": True}] if "@" in name else [],
        )["UserId"]
        return seeded.users[name]

    def assign(
        self, seeded: SeededInstance, account: str, permission_set: str, principal: str
    ) -> None:
        """A standing assignment made outside accessctl (a user name or a group name)."""
        is_group = principal in seeded.groups
        self.client("sso-admin").create_account_assignment(
            InstanceArn=seeded.instance_arn,
            TargetId=account,
            TargetType="AWS_ACCOUNT",
            PermissionSetArn=seeded.permission_sets[permission_set],
            PrincipalType="GROUP" if is_group else "USER",
            PrincipalId=seeded.groups[principal] if is_group else seeded.users[principal],
        )

    def assignments(self, seeded: SeededInstance, account: str) -> set[tuple[str, str, str]]:
        """What the cloud holds in ``account``: {(permission set, USER|GROUP, name)}."""
        sso = self.client("sso-admin")
        names = {v: k for k, v in (*seeded.users.items(), *seeded.groups.items())}
        out: set[tuple[str, str, str]] = set()
        for ps_name, arn in seeded.permission_sets.items():
            paginator = sso.get_paginator("list_account_assignments")
            pages = paginator.paginate(
                InstanceArn=seeded.instance_arn, AccountId=account, PermissionSetArn=arn
            )
            for page in pages:
                for row in page["AccountAssignments"]:
                    who = names.get(row["PrincipalId"], row["PrincipalId"])
                    out.add((ps_name, row["PrincipalType"], who))
        return out
