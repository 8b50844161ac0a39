"""Calls made with a principal's identity: IAM's decision, 403s, and the audit log they leave,
seen through the real Google clients (google-auth's session, Resource Manager, Logging)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pytest
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import logging as cloud_logging
from google.cloud import resourcemanager_v3
from google.oauth2.credentials import Credentials

from reconciler.core.timeutil import parse_rfc3339
from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.gcp_principals import TIME_HEADER, TOKEN_PREFIX, condition_holds

P = "projects/payments-prod"
INSTANCES = "/v1/projects/payments-prod/instances"
RESTART = "/v1/projects/payments-prod/instances/checkout-db/restart"
WINDOW = 'request.time < timestamp("2026-12-01T11:00:00Z")'
READS_LOGGED = [
    {"service": "cloudsql.googleapis.com", "auditLogConfigs": [{"logType": "ADMIN_READ"}]}
]
ALICE = "user:alice@example.com"


def policy(expression: str = WINDOW, audit: list | None = None) -> dict:
    binding = {
        "role": "roles/cloudsql.viewer",
        "members": [ALICE],
        "condition": {"title": "accessctl:requests/alice/db.yaml", "expression": expression},
    }
    return {"bindings": [binding], "auditConfigs": READS_LOGGED if audit is None else audit}


@pytest.fixture
def cloud(emulator: GcpEmulator) -> GcpEmulator:
    emulator.add_resource(P, policy())
    emulator.sql.add(P, "checkout-db")
    return emulator


def session(member: str = ALICE) -> AuthorizedSession:
    """google-auth's own HTTP session, with the sandbox's principal token as access token."""
    return AuthorizedSession(Credentials(token=TOKEN_PREFIX + member))


def at(when: str) -> dict[str, str]:
    return {TIME_HEADER: when}


def logged(emu: GcpEmulator, email: str = "alice@example.com") -> list:
    """The entries Cloud Logging returns for ``email``, through google-cloud-logging."""
    client = cloud_logging.Client(
        project="accessctl",
        credentials=AnonymousCredentials(),
        _use_grpc=False,
        client_options={"api_endpoint": emu.url},
    )
    text = (
        f'protoPayload.authenticationInfo.principalEmail="{email}"'
        ' AND timestamp>="2026-01-01T00:00:00Z"'
    )
    return list(client.list_entries(resource_names=[P], filter_=text))


def test_an_allowed_read_answers_and_is_recorded_without_an_error_status(cloud):
    answer = session().get(cloud.url + INSTANCES, headers=at("2026-12-01T09:20:00Z"))

    assert answer.status_code == 200
    body = answer.json()
    assert body["kind"] == "sql#instancesList"
    assert [i["name"] for i in body["items"]] == ["checkout-db"]
    assert body["items"][0]["connectionName"] == "payments-prod:europe-west1:checkout-db"
    [entry] = logged(cloud)
    assert entry.log_name == f"{P}/logs/cloudaudit.googleapis.com%2Fdata_access"
    assert entry.timestamp == parse_rfc3339("2026-12-01T09:20:00Z")
    audit = entry.payload
    assert audit["@type"] == "type.googleapis.com/google.cloud.audit.AuditLog"
    assert (audit["serviceName"], audit["methodName"], audit["resourceName"]) == (
        "cloudsql.googleapis.com",
        "cloudsql.instances.list",
        P,
    )
    assert audit["authenticationInfo"] == {"principalEmail": "alice@example.com"}
    assert audit.get("status", {}).get("code", 0) == 0
    assert audit["authorizationInfo"][0]["granted"] is True


def test_a_denied_write_answers_403_and_is_recorded_with_code_7(cloud):
    answer = session().post(cloud.url + RESTART, headers=at("2026-12-01T09:25:00Z"))

    assert answer.status_code == 403
    error = answer.json()["error"]
    assert (error["code"], error["status"]) == (403, "PERMISSION_DENIED")
    assert error["message"] == "The client is not authorized to make this request."
    assert error["errors"][0]["reason"] == "notAuthorized"
    [entry] = logged(cloud)
    assert entry.log_name.endswith("cloudaudit.googleapis.com%2Factivity")  # always written
    assert entry.payload["methodName"] == "cloudsql.instances.restart"
    assert entry.payload["resourceName"] == f"{P}/instances/checkout-db"
    assert entry.payload["status"]["code"] == 7
    assert entry.payload["authorizationInfo"][0] == {
        "resource": f"{P}/instances/checkout-db",
        "permission": "cloudsql.instances.restart",
        "granted": False,
    }


@pytest.mark.parametrize(
    ("expression", "when", "allowed"),
    [
        (WINDOW, "2026-12-01T10:59:59Z", True),
        (WINDOW, "2026-12-01T11:00:00Z", False),  # the end is exclusive
        (f'request.time >= timestamp("2026-12-01T09:00:00Z") && {WINDOW}', "2026-12-01T08:59:00Z", False),
        (f'request.time >= timestamp("2026-12-01T09:00:00Z") && {WINDOW}', "2026-12-01T09:00:00Z", True),
    ],
    ids=["inside", "at-the-end", "before-a-future-begin", "at-the-begin"],
)  # fmt: skip
def test_the_binding_holds_only_inside_its_condition_window(emulator, expression, when, allowed):
    emulator.add_resource(P, policy(expression))
    answer = session().get(emulator.url + INSTANCES, headers=at(when))

    assert answer.status_code == (200 if allowed else 403)
    [entry] = logged(emulator)
    assert entry.payload.get("status", {}).get("code", 0) == (0 if allowed else 7)


def test_anonymous_calls_are_the_sandboxs_own_and_leave_no_trace(cloud):
    plain = AuthorizedSession(AnonymousCredentials())
    assert plain.get(cloud.url + INSTANCES).status_code == 200
    assert plain.post(cloud.url + RESTART).status_code == 200  # not checked either
    client = resourcemanager_v3.ProjectsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=cloud.url),
    )
    client.get_iam_policy(request={"resource": P})

    assert cloud.logging.list_entries({"resourceNames": [P]}, lambda _n: True) == {"entries": []}


def test_reads_leave_no_entry_until_data_access_logs_are_turned_on(emulator):
    emulator.add_resource(P, policy(audit=[]))  # GCP's default: Data Access logs off
    assert session().get(emulator.url + INSTANCES, headers=at("2026-12-01T09:20:00Z")).ok
    assert logged(emulator) == []

    exempt = [{"service": "allServices", "auditLogConfigs": [
        {"logType": "ADMIN_READ", "exemptedMembers": [ALICE]}]}]  # fmt: skip
    emulator.set_policy(P, {**emulator.get_policy(P), "auditConfigs": exempt})
    assert session().get(emulator.url + INSTANCES, headers=at("2026-12-01T09:21:00Z")).ok
    assert logged(emulator) == []

    on = [{"service": "allServices", "auditLogConfigs": [{"logType": "ADMIN_READ"}]}]
    emulator.set_policy(P, {**emulator.get_policy(P), "auditConfigs": on})
    assert session().get(emulator.url + INSTANCES, headers=at("2026-12-01T09:22:00Z")).ok
    assert [e.payload["methodName"] for e in logged(emulator)] == ["cloudsql.instances.list"]


def test_resource_manager_client_as_a_principal(cloud):
    """getIamPolicy is checked and refused like GCP; testIamPermissions answers the subset."""
    reads = [{"service": "allServices", "auditLogConfigs": [{"logType": "ADMIN_READ"}]}]
    cloud.set_policy(P, {**cloud.get_policy(P), "auditConfigs": reads})
    client = resourcemanager_v3.ProjectsClient(
        credentials=Credentials(token=TOKEN_PREFIX + ALICE),
        transport="rest",
        client_options=ClientOptions(api_endpoint=cloud.url),
    )
    when = [(TIME_HEADER.lower(), "2026-12-01T09:30:00Z")]
    with pytest.raises(gexc.Forbidden, match="The caller does not have permission"):
        client.get_iam_policy(request={"resource": P}, metadata=when, retry=None)
    asked = [
        "cloudsql.instances.list",
        "cloudsql.instances.restart",
        "resourcemanager.projects.get",
    ]
    held = client.test_iam_permissions(
        request={"resource": P, "permissions": asked}, metadata=when, retry=None
    )
    assert list(held.permissions) == ["cloudsql.instances.list", "resourcemanager.projects.get"]

    cloud.set_policy(P, {**cloud.get_policy(P), "bindings": [
        *cloud.get_policy(P)["bindings"],
        {"role": "roles/resourcemanager.projectIamAdmin", "members": [ALICE]}]})  # fmt: skip
    seen = client.get_iam_policy(
        request={"resource": P, "options": {"requested_policy_version": 3}}, metadata=when
    )
    assert len(seen.bindings) == 2
    refused, allowed = logged(cloud)  # testIamPermissions is not audited
    assert [e.payload["methodName"] for e in (refused, allowed)] == ["GetIamPolicy"] * 2
    assert refused.payload["serviceName"] == "cloudresourcemanager.googleapis.com"
    assert refused.payload["status"]["code"] == 7 and "status" not in allowed.payload
    assert refused.log_name.endswith("%2Fdata_access")


def test_a_principal_writing_a_policy_is_checked_and_always_audited(cloud):
    client = resourcemanager_v3.ProjectsClient(
        credentials=Credentials(token=TOKEN_PREFIX + "user:mallory@example.com"),
        transport="rest",
        client_options=ClientOptions(api_endpoint=cloud.url),
    )
    grab = {"bindings": [{"role": "roles/owner", "members": ["user:mallory@example.com"]}]}
    with pytest.raises(gexc.Forbidden):
        client.set_iam_policy(request={"resource": P, "policy": grab}, retry=None)

    assert "mallory" not in str(cloud.get_policy(P))  # nothing written
    [entry] = logged(cloud, "mallory@example.com")
    assert (entry.payload["methodName"], entry.payload["status"]["code"]) == ("SetIamPolicy", 7)
    assert entry.log_name.endswith("%2Factivity")


def test_a_token_the_sandbox_did_not_issue_is_unauthenticated(cloud):
    # refresh_status_codes=(): nothing to refresh it with, so see the 401 itself
    stranger = AuthorizedSession(Credentials(token="ya29.a-token"), refresh_status_codes=())
    answer = stranger.get(cloud.url + INSTANCES)
    assert answer.status_code == 401
    assert answer.json()["error"]["status"] == "UNAUTHENTICATED"
    bad_time = session().get(cloud.url + INSTANCES, headers=at("yesterday"))
    assert bad_time.status_code == 400 and TIME_HEADER in bad_time.json()["error"]["message"]
    assert logged(cloud) == []


def test_an_unknown_instance_is_404_for_a_permitted_caller(cloud):
    missing = "/v1/projects/payments-prod/instances/nope"
    answer = session().get(cloud.url + missing, headers=at("2026-12-01T09:20:00Z"))
    assert answer.status_code == 404
    assert answer.json()["error"]["errors"][0]["reason"] == "instanceDoesNotExist"


@pytest.mark.parametrize(
    ("expression", "holds"),
    [
        ('request.time < timestamp("2026-12-01T11:00:00Z")', True),
        ('request.time > timestamp("2026-12-01T11:00:00Z")', False),
        ('timestamp("2026-12-01T09:00:00Z") <= request.time', True),
        ('!(request.time < timestamp("2026-12-01T09:00:00Z"))', True),
        ('request.time < timestamp("2026-01-01T00:00:00Z") || true', True),
        ("false", False),
        ('resource.name.startsWith("projects/x")', False),  # outside the subset: no grant
        ('request.time < timestamp("not a time")', False),
    ],
)
def test_condition_subset(expression, holds):
    now = datetime.fromisoformat("2026-12-01T10:00:00+00:00")
    assert condition_holds(expression, now) is holds


def test_the_command_line_seeds_instances_a_principal_can_list(tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({P: policy('request.time < timestamp("2099-01-01T00:00:00Z")')}))
    command = [sys.executable, "-m", "reconciler.sandbox.gcp_emulator", "--port", "0"]
    bad = subprocess.run(
        [*command, "--sql-instance", "no-colon"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2 and "PROJECT:NAME" in bad.stderr
    proc = subprocess.Popen(
        [*command, "--seed", str(seed), "--sql-instance", "payments-prod:checkout-db"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().rsplit(" ", 1)[-1].strip()  # type: ignore[union-attr]
        answer = session().get(url + INSTANCES)  # request.time: the clock
        assert answer.status_code == 200
        assert [i["name"] for i in answer.json()["items"]] == ["checkout-db"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)
