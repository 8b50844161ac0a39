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
reconciler's role cannot reach, provisionings that conflict or fail.

moto 5.2.5 stores inline policies without any check, answers ProvisionPermissionSet
SUCCEEDED while ignoring its target (and then lists its own account as provisioned), and
has neither DescribePermissionSetProvisioningStatus nor ListPermissionSetProvisioningStatus
nor the ProvisioningStatus filter. ``Provisioning`` (in the same layer) serves those the
way AWS's API reference describes them, and refuses inline policies AWS would refuse.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3

from reconciler.sandbox.cloudtrail import TARGET as CLOUDTRAIL_TARGET
from reconciler.sandbox.cloudtrail import CloudTrailEvents

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
        self.cloudtrail = CloudTrailEvents()  # LookupEvents (reconciler.sandbox.cloudtrail)
        self.clear()

    def clear(self) -> None:
        self.cloudtrail.clear()
        with self._lock:
            self.denied: dict[str, str] = {}  # account -> error code
            self.failing: dict[str, str] = {}  # account -> FailureReason of its creations
            self.polls = 0  # IN_PROGRESS answers before SUCCEEDED, per operation
            self._pending: dict[str, int] = {}  # request id -> IN_PROGRESS answers left
            self._failed: dict[str, dict[str, Any]] = {}  # request id -> FAILED status
            # permission set ARN (None: every one) -> FailureReason of its provisionings
            self.failing_provisioning: dict[str | None, str] = {}
            self.provision_conflicts = 0  # ProvisionPermissionSet calls to refuse first

    def count(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    def deny_account(self, account: str, code: str = "AccessDeniedException") -> None:
        with self._lock:
            self.denied[account] = code

    def fail_creations(self, account: str, reason: str) -> None:
        with self._lock:
            self.failing[account] = reason

    def fail_provisioning(self, reason: str, permission_set_arn: str | None = None) -> None:
        """Provisionings of this permission set (of every one: None) end FAILED, ``reason``."""
        with self._lock:
            self.failing_provisioning[permission_set_arn] = reason

    def conflict_provisioning(self, times: int) -> None:
        """The next ``times`` ProvisionPermissionSet calls answer ConflictException."""
        with self._lock:
            self.provision_conflicts = times

    def take_conflict(self) -> bool:
        with self._lock:
            if self.provision_conflicts <= 0:
                return False
            self.provision_conflicts -= 1
            return True

    def provisioning_failure(self, permission_set_arn: str) -> str | None:
        with self._lock:
            return self.failing_provisioning.get(
                permission_set_arn, self.failing_provisioning.get(None)
            )

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


# Identity Center's inline policy quota: 32,768 bytes, at most 10,240 of them not whitespace.
POLICY_MAX_BYTES = 32_768
POLICY_MAX_NONBLANK = 10_240
_SID = re.compile(r"^[A-Za-z0-9]*$")
_POLICY_CHARS = re.compile(r"^[\t\n\r\x20-\xff]+$")


def policy_problem(text: str) -> str | None:
    """Why IAM would refuse this inline policy, or None: JSON, characters, size, Sids."""
    if not _POLICY_CHARS.match(text):
        return "InlinePolicy holds characters outside \\u0009, \\u000A, \\u000D, \\u0020-\\u00FF"
    if len(text.encode()) > POLICY_MAX_BYTES:
        return f"InlinePolicy is longer than {POLICY_MAX_BYTES} bytes"
    if sum(1 for c in text if c not in " \t\n\r") > POLICY_MAX_NONBLANK:
        return f"InlinePolicy has more than {POLICY_MAX_NONBLANK} non-whitespace characters"
    try:
        document = json.loads(text)
    except ValueError as exc:
        return f"InlinePolicy is not JSON: {exc}"
    statements = document.get("Statement") if isinstance(document, dict) else None
    statements = [statements] if isinstance(statements, dict) else statements
    if not isinstance(statements, list) or not statements:
        return "InlinePolicy has no Statement"
    sids = []
    for statement in statements:
        if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
            return "every statement must be an object with Effect Allow or Deny"
        sid = statement.get("Sid")
        if sid is not None and (not isinstance(sid, str) or not _SID.match(sid)):
            return f"Sid {sid!r} may hold only A-Z, a-z and 0-9"
        sids += [sid] if sid else []
    if len(sids) != len(set(sids)):
        return "Statement Ids (Sid) must be unique within the policy"
    return None


def _error(code: str, message: str) -> Response:
    return 400, {"__type": code, "message": message}


class Provisioning:
    """Permission set provisioning as AWS runs it, which moto lacks: asynchronous, one at a
    time per permission set (another answers ConflictException), FAILED on demand (see
    ``Faults.fail_provisioning``), its status calls, and which accounts run the latest
    version (a permission set whose inline policy changed is not provisioned anywhere it is
    assigned until a provisioning succeeds). Inline policies AWS would refuse are refused."""

    OPERATIONS = frozenset(
        {
            "ProvisionPermissionSet",
            "DescribePermissionSetProvisioningStatus",
            "ListPermissionSetProvisioningStatus",
            "ListAccountsForProvisionedPermissionSet",
            "PutInlinePolicyToPermissionSet",
            "DeleteInlinePolicyFromPermissionSet",
        }
    )

    def __init__(self, faults: Faults, region: str) -> None:
        self.faults = faults
        self.region = region
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._statuses: dict[str, dict[str, Any]] = {}  # request id -> final status
            self._polls: dict[str, int] = {}  # request id -> IN_PROGRESS answers left
            self._running: dict[str, str] = {}  # permission set ARN -> request id
            self._stale: set[str] = set()  # changed since their last successful provisioning

    def statuses(self) -> list[dict[str, Any]]:
        """Every provisioning so far, oldest first, as DescribePermissionSetProvisioningStatus
        answers it once finished."""
        with self._lock:
            return [dict(v) for v in self._statuses.values()]

    def handle(self, operation: str, params: dict[str, Any]) -> Response | None:
        """The answer, or None to let moto answer (after any bookkeeping)."""
        handler = {
            "ProvisionPermissionSet": self._provision,
            "DescribePermissionSetProvisioningStatus": self._describe,
            "ListPermissionSetProvisioningStatus": self._list,
            "ListAccountsForProvisionedPermissionSet": self._accounts,
            "PutInlinePolicyToPermissionSet": self._changed,
            "DeleteInlinePolicyFromPermissionSet": self._changed,
        }[operation]
        return handler(params)

    def _backend(self) -> Any:
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.ssoadmin.models import ssoadmin_backends

        return ssoadmin_backends[DEFAULT_ACCOUNT_ID][self.region]

    def _exists(self, arn: object) -> bool:
        return any(ps.permission_set_arn == arn for ps in self._backend().permission_sets)

    def _changed(self, params: dict[str, Any]) -> Response | None:
        arn = params.get("PermissionSetArn")
        text = params.get("InlinePolicy")
        if text is not None:
            problem = policy_problem(str(text))
            if problem:
                return _error("ValidationException", problem)
        if not self._exists(arn):
            return _error("ResourceNotFoundException", f"Could not find PermissionSet {arn}")
        with self._lock:
            if arn in self._running:
                return _error("ConflictException", f"{arn} is being provisioned; try again")
            self._stale.add(str(arn))
        return None

    def _provision(self, params: dict[str, Any]) -> Response:
        arn, target = params.get("PermissionSetArn"), params.get("TargetType")
        if target not in ("AWS_ACCOUNT", "ALL_PROVISIONED_ACCOUNTS"):
            return _error("ValidationException", f"TargetType {target!r} is not valid")
        if target == "AWS_ACCOUNT" and not re.fullmatch(r"[0-9]{12}", str(params.get("TargetId"))):
            return _error("ValidationException", "TargetId must be a 12-digit account id")
        if not self._exists(arn):
            return _error("ResourceNotFoundException", f"Could not find PermissionSet {arn}")
        if self.faults.take_conflict():
            return _error("ConflictException", "Another operation on this permission set")
        failure = self.faults.provisioning_failure(str(arn))
        with self._lock:
            if arn in self._running:
                return _error("ConflictException", f"{arn} is already being provisioned")
            request_id = str(uuid.uuid4())
            final: dict[str, Any] = {
                "Status": "FAILED" if failure else "SUCCEEDED",
                "RequestId": request_id,
                "PermissionSetArn": arn,
                "CreatedDate": time.time(),
            }
            if target == "AWS_ACCOUNT":
                final["AccountId"] = params["TargetId"]
            if failure:
                final["FailureReason"] = failure
            self._statuses[request_id] = final
            self._polls[request_id] = self.faults.polls
            self._running[str(arn)] = request_id
            status = self._step(request_id)
        return 200, {"PermissionSetProvisioningStatus": status}

    def _step(self, request_id: str) -> dict[str, Any]:
        """This look at a provisioning: IN_PROGRESS while polls are left, then final."""
        final = self._statuses[request_id]
        if self._polls[request_id] > 0:
            self._polls[request_id] -= 1
            running = {k: v for k, v in final.items() if k != "FailureReason"}
            return running | {"Status": "IN_PROGRESS"}
        arn = final["PermissionSetArn"]
        if self._running.get(arn) == request_id:
            del self._running[arn]
            if final["Status"] == "SUCCEEDED":
                self._stale.discard(arn)
        return dict(final)

    def _describe(self, params: dict[str, Any]) -> Response:
        request_id = str(params.get("ProvisionPermissionSetRequestId"))
        with self._lock:
            if request_id not in self._statuses:
                return _error("ResourceNotFoundException", f"No provisioning {request_id}")
            return 200, {"PermissionSetProvisioningStatus": self._step(request_id)}

    def _list(self, params: dict[str, Any]) -> Response:
        wanted = (params.get("Filter") or {}).get("Status")
        with self._lock:
            rows = [
                {
                    "Status": "IN_PROGRESS" if self._polls[rid] else v["Status"],
                    "RequestId": rid,
                    "CreatedDate": v["CreatedDate"],
                }
                for rid, v in self._statuses.items()
            ]
        rows = [r for r in rows if wanted in (None, r["Status"])]
        start = int(params.get("NextToken") or 0)
        size = int(params.get("MaxResults") or 100)
        body: dict[str, Any] = {"PermissionSetsProvisioningStatus": rows[start : start + size]}
        if start + size < len(rows):
            body["NextToken"] = str(start + size)
        return 200, body

    def _accounts(self, params: dict[str, Any]) -> Response | None:
        wanted = params.get("ProvisioningStatus")
        if wanted is None:
            return None  # moto's own listing, unchanged
        arn = params.get("PermissionSetArn")
        assigned = sorted(
            {
                a.target_id
                for a in self._backend().account_assignments
                if a.permission_set_arn == arn
            }
        )
        with self._lock:
            stale = arn in self._stale
        latest = wanted == "LATEST_PERMISSION_SET_PROVISIONED"
        return 200, {"AccountIds": assigned if stale != latest else []}


class _FaultyApp:
    """WSGI layer in front of moto: ``Faults`` on the code under test's sso-admin calls, and
    ``Provisioning`` where moto lacks what AWS does."""

    def __init__(self, app: Any, faults: Faults, provisioning: Provisioning) -> None:
        self.app = app
        self.faults = faults
        self.provisioning = provisioning

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        admin = bool(environ.get(ADMIN_ENVIRON))  # the sandbox's own seeding and inspection
        if not admin:
            self.faults.count(target.rpartition(".")[2] or environ.get("PATH_INFO", "?"))
        if target.startswith(CLOUDTRAIL_TARGET):  # moto has no LookupEvents
            found = self.faults.cloudtrail.handle(target, self._params(environ) or {}, environ)
            return _respond(start_response, *found)
        operation = target[len(SSO_TARGET) :] if target.startswith(SSO_TARGET) else ""
        emulated = operation in Provisioning.OPERATIONS
        faulty = bool(operation) and not admin and self.faults.active
        params = self._params(environ) if emulated or faulty else None
        if params is None:
            return self.app(environ, start_response)
        answer = self.faults.before(operation, params) if faulty else None
        if answer is None and emulated:
            answer = self.provisioning.handle(operation, params)
        if answer is not None:
            return _respond(start_response, *answer)
        if not faulty:
            return self.app(environ, start_response)
        return self._rewritten(operation, environ, start_response)

    @staticmethod
    def _params(environ: dict[str, Any]) -> dict[str, Any] | None:
        """The JSON body (the stream is put back for moto), or None when it is not JSON."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            params = json.loads(raw or b"{}")
        except ValueError:
            return None
        return params if isinstance(params, dict) else None

    def _rewritten(self, operation: str, environ: dict[str, Any], start_response: Any) -> Any:
        """moto's answer, with ``Faults.after`` applied to a successful one."""
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


def _faulty_moto_server(faults: Faults, provisioning: Provisioning) -> Any:
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
            app = _FaultyApp(DomainDispatcherApplication(create_backend_app), faults, provisioning)
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
        self.provisioning = Provisioning(self.faults, region)

    def start(self) -> AwsSandbox:
        # werkzeug logs every request to stderr; the demo and the tests need none of it.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = _faulty_moto_server(self.faults, self.provisioning)
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
        self.provisioning.clear()
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

    def inline_policy(self, seeded: SeededInstance, permission_set: str) -> str:
        """The inline policy of a permission set as the cloud holds it ("" when none)."""
        return str(
            self.client("sso-admin")
            .get_inline_policy_for_permission_set(
                InstanceArn=seeded.instance_arn,
                PermissionSetArn=seeded.permission_sets[permission_set],
            )
            .get("InlinePolicy", "")
        )

    def put_inline_policy(self, seeded: SeededInstance, permission_set: str, text: str) -> None:
        """An inline policy written by an administrator (checked as AWS would)."""
        self.client("sso-admin").put_inline_policy_to_permission_set(
            InstanceArn=seeded.instance_arn,
            PermissionSetArn=seeded.permission_sets[permission_set],
            InlinePolicy=text,
        )
