"""The embedded AWS sandbox: moto in server mode, in-process, and an Identity Center seeder.

```python
with AwsSandbox() as aws:
    seeded = aws.seed(users=["alice@example.com"], permission_sets={"ReadOnly": "PT1H"})
    os.environ.update(aws.env())      # boto3 now talks to moto through AWS_ENDPOINT_URL
```

moto keeps its state in process-wide backends: two sandboxes in one process share it, and
``reset()`` wipes both. Tests run one sandbox per process (pytest-xdist workers are
processes) and reset it between tests.

moto answers every asynchronous operation SUCCEEDED at once and never fails one; ``faults``
(a WSGI layer in front of moto) makes it behave like AWS on a bad day: creations that stay
IN_PROGRESS for a few polls, creations that end FAILED with a reason, accounts the
reconciler's role cannot reach.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.request
import uuid
from collections import Counter
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


SSO_TARGET = "SWBExternalService."  # X-Amz-Target prefix of every sso-admin operation
# The sandbox's own clients mark their calls: faults and call counts are for the code
# under test, never for seeding or for a test reading back what the cloud holds.
ADMIN_HEADER = "X-Accessctl-Sandbox-Admin"
ADMIN_ENVIRON = "HTTP_X_ACCESSCTL_SANDBOX_ADMIN"
Response = tuple[int, dict[str, Any]]


class Faults:
    """What the sandbox does differently from moto; thread-safe, cleared by ``clear()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()  # every request moto received, by operation
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.denied: dict[str, str] = {}  # account -> error code
            self.failing: dict[str, str] = {}  # account -> FailureReason of its creations
            self.polls = 0  # IN_PROGRESS answers before SUCCEEDED, per operation
            self._pending: dict[str, int] = {}  # request id -> IN_PROGRESS answers left
            self._failed: dict[str, dict[str, Any]] = {}  # request id -> FAILED status

    def count(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    def deny_account(self, account: str, code: str = "AccessDeniedException") -> None:
        with self._lock:
            self.denied[account] = code

    def fail_creations(self, account: str, reason: str) -> None:
        with self._lock:
            self.failing[account] = reason

    def slow(self, polls: int) -> None:
        with self._lock:
            self.polls = polls

    @property
    def active(self) -> bool:
        return bool(self.denied or self.failing or self.polls or self._failed)

    def before(self, operation: str, params: dict[str, Any]) -> Response | None:
        """An answer that replaces moto's, or None to let moto answer."""
        account = params.get("AccountId") or params.get("TargetId")
        with self._lock:
            if account in self.denied:
                return 400, {
                    "__type": self.denied[account],
                    "message": f"not authorized to manage account {account}",
                }
            if operation == "CreateAccountAssignment" and account in self.failing:
                request_id = str(uuid.uuid4())
                status = {k: v for k, v in params.items() if k != "InstanceArn"}
                status |= {"RequestId": request_id, "Status": "IN_PROGRESS"}
                self._failed[request_id] = status | {
                    "Status": "FAILED",
                    "FailureReason": self.failing[account],
                }
                return 200, {"AccountAssignmentCreationStatus": status}
            asked = params.get("AccountAssignmentCreationRequestId")
            if asked in self._failed:
                return 200, {"AccountAssignmentCreationStatus": self._failed[asked]}
        return None

    def after(self, operation: str, body: dict[str, Any]) -> None:
        """Rewrite moto's instant SUCCEEDED into IN_PROGRESS for the first ``polls`` looks."""
        key = {
            "CreateAccountAssignment": "AccountAssignmentCreationStatus",
            "DeleteAccountAssignment": "AccountAssignmentDeletionStatus",
            "DescribeAccountAssignmentCreationStatus": "AccountAssignmentCreationStatus",
            "DescribeAccountAssignmentDeletionStatus": "AccountAssignmentDeletionStatus",
        }.get(operation)
        status = body.get(key or "")
        if not isinstance(status, dict) or status.get("Status") != "SUCCEEDED":
            return
        with self._lock:
            request_id = status.get("RequestId", "")
            if operation.startswith(("Create", "Delete")):
                self._pending[request_id] = self.polls
            left = self._pending.get(request_id, 0)
            if left > 0:
                status["Status"] = "IN_PROGRESS"
                self._pending[request_id] = left - (
                    0 if operation.startswith(("Create", "Delete")) else 1
                )


class _FaultyApp:
    """WSGI layer in front of moto that applies ``Faults`` to sso-admin calls."""

    def __init__(self, app: Any, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if environ.get(ADMIN_ENVIRON):  # the sandbox's own seeding and inspection
            return self.app(environ, start_response)
        self.faults.count(target.rpartition(".")[2] or environ.get("PATH_INFO", "?"))
        if not target.startswith(SSO_TARGET) or not self.faults.active:
            return self.app(environ, start_response)
        operation = target[len(SSO_TARGET) :]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            return self.app(environ, start_response)
        answer = self.faults.before(operation, params)
        if answer is not None:
            return _respond(start_response, *answer)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.app(environ, capture)
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        if captured["status"].startswith("200"):
            try:
                body = json.loads(payload)
                self.faults.after(operation, body)
                payload = json.dumps(body).encode()
            except ValueError:
                pass
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(payload)))])
        return [payload]


def _respond(start_response: Any, status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = "OK" if status == 200 else "Bad Request"
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


def _faulty_moto_server(faults: Faults) -> Any:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    class FaultyMotoServer(ThreadedMotoServer):
        """moto's threaded server with the Faults layer in front of its WSGI app."""

        def _server_entry(self) -> None:
            app = _FaultyApp(DomainDispatcherApplication(create_backend_app), faults)
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return FaultyMotoServer(ip_address="127.0.0.1", port=0, verbose=False)


class AwsSandbox:
    """moto's server on 127.0.0.1 and a free port, for as long as the context lasts."""

    def __init__(self, region: str = REGION) -> None:
        self.region = region
        self._server: Any = None
        self._url = ""
        self._clients: dict[str, Any] = {}
        self.faults = Faults()

    def start(self) -> AwsSandbox:
        # werkzeug logs every request to stderr; the demo and the tests need none of it.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = _faulty_moto_server(self.faults)
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
        """Forget every resource (moto's own reset endpoint) and every fault."""
        self.faults.clear()
        url = f"{self.url}/moto-api/reset"  # our own server, plain http
        req = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            resp.read()

    def client(self, service: str) -> Any:
        """A boto3 client bound to the sandbox whatever the environment says (cached), for
        seeding and inspection: faults do not apply to it and its calls are not counted."""
        if service not in self._clients:
            self._clients[service] = self._new_client(service)
        return self._clients[service]

    def _new_client(self, service: str) -> Any:
        client = self._plain_client(service)

        def mark(request: Any, **_: Any) -> None:
            request.headers[ADMIN_HEADER] = "1"

        client.meta.events.register("request-created", mark)
        return client

    def _plain_client(self, service: str) -> Any:
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
        permission_sets: Mapping[str, str | None] | None = None,
        groups: Iterable[str] = (),
    ) -> SeededInstance:
        """The Identity Center instance (moto makes one per account and region), identity
        store users and groups, and permission sets ``{name: SessionDuration}`` (None: no
        SessionDuration, as the console leaves it; moto then answers ``3600``, not ISO 8601).
        moto stores any SessionDuration string as given, like a malformed one."""
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
            extra = {} if duration is None else {"SessionDuration": duration}
            seeded.permission_sets[name] = sso.create_permission_set(
                InstanceArn=seeded.instance_arn, Name=name, **extra
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
