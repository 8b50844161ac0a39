"""The emulator's IAM semantics, seen through the real client library over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from google.api_core import exceptions as gexc
from google.iam.v1 import policy_pb2

from reconciler.providers.gcp import GcpClients
from reconciler.sandbox.gcp_emulator import GcpEmulator

P = "projects/payments-prod"
COND = {
    "title": "t",
    "description": "d",
    "expression": 'request.time < timestamp("2030-01-01T00:00:00Z")',
}


@pytest.fixture
def client(emulator: GcpEmulator):
    return GcpClients(endpoint=emulator.url).for_scope(P)


def get(client, version: int = 3) -> policy_pb2.Policy:
    request = {"resource": P, "options": {"requested_policy_version": version}}
    return client.get_iam_policy(request=request, retry=None)


def put(client, policy: policy_pb2.Policy) -> policy_pb2.Policy:
    return client.set_iam_policy(request={"resource": P, "policy": policy}, retry=None)


def test_new_resource_has_the_empty_etag(emulator, client):
    emulator.add_resource(P)
    policy = get(client)
    assert policy.etag == b"\x00\x20\x01"  # "ACAB"
    assert list(policy.bindings) == []


def test_stale_etag_is_aborted_and_missing_etag_overwrites(emulator, client):
    emulator.add_resource(P)
    first = get(client)
    first.bindings.add(role="roles/logging.viewer", members=["user:a@example.com"])
    stored = put(client, first)
    assert stored.etag != first.etag

    with pytest.raises(gexc.Conflict, match="concurrent policy changes"):
        put(client, first)  # first.etag is now stale

    blind = policy_pb2.Policy()
    blind.bindings.add(role="roles/logging.viewer", members=["user:b@example.com"])
    put(client, blind)  # no etag: overwrite, as GCP does
    assert emulator.get_policy(P)["bindings"][0]["members"] == ["user:b@example.com"]


def test_conditions_need_version_3(emulator, client):
    emulator.add_resource(P)
    policy = get(client)
    policy.version = 1
    policy.bindings.add(role="roles/logging.viewer", members=["user:a@example.com"], condition=COND)
    with pytest.raises(gexc.BadRequest, match="version 3"):
        put(client, policy)


def test_basic_roles_take_no_condition(emulator, client):
    emulator.add_resource(P)
    policy = get(client)
    policy.version = 3
    policy.bindings.add(role="roles/owner", members=["user:a@example.com"], condition=COND)
    with pytest.raises(gexc.BadRequest, match="basic role"):
        put(client, policy)


@pytest.mark.parametrize(
    "member",
    ["alice@example.com", "user:", "user:alice", "robot:r2d2@example.com", "domain:"],
)
def test_bad_member_syntax_is_refused(emulator, client, member):
    emulator.add_resource(P)
    policy = get(client)
    policy.bindings.add(role="roles/logging.viewer", members=[member])
    with pytest.raises(gexc.BadRequest, match="Invalid member"):
        put(client, policy)


@pytest.mark.parametrize(
    "member",
    [
        "user:a@example.com",
        "group:g@example.com",
        "serviceAccount:sa@p.iam.gserviceaccount.com",
        "domain:example.com",
        "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s",
        "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*",
        "deleted:user:a@example.com?uid=123",
        "allAuthenticatedUsers",
    ],
)
def test_good_member_syntax_is_accepted(emulator, client, member):
    emulator.add_resource(P)
    policy = get(client)
    policy.bindings.add(role="roles/logging.viewer", members=[member])
    assert list(put(client, policy).bindings[0].members) == [member]


def test_version_1_view_hides_conditions(emulator, client):
    emulator.add_resource(
        P,
        {
            "version": 3,
            "bindings": [
                {
                    "role": "roles/logging.viewer",
                    "members": ["user:a@example.com"],
                    "condition": COND,
                }
            ],
        },
    )
    v1 = get(client, version=1)
    assert v1.version == 1
    assert v1.bindings[0].role.startswith("roles/logging.viewer_withcond_")
    assert not v1.bindings[0].HasField("condition")
    v3 = get(client, version=3)
    assert v3.version == 3 and v3.bindings[0].condition.title == "t"


def test_v1_write_with_etag_over_conditional_policy_is_refused(emulator, client):
    emulator.add_resource(
        P,
        {
            "bindings": [
                {
                    "role": "roles/logging.viewer",
                    "members": ["user:a@example.com"],
                    "condition": COND,
                }
            ]
        },
    )
    policy = get(client, version=3)
    policy.version = 1
    del policy.bindings[:]
    with pytest.raises(gexc.BadRequest, match="version 3"):
        put(client, policy)


def test_audit_configs_survive_a_write_that_does_not_name_them(emulator, client):
    audit = [{"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    emulator.add_resource(P, {"auditConfigs": audit})
    policy = get(client)
    del policy.audit_configs[:]
    policy.bindings.add(role="roles/logging.viewer", members=["user:a@example.com"])
    put(client, policy)
    assert emulator.get_policy(P)["auditConfigs"] == audit


def test_condition_titles_over_100_characters_are_refused(emulator, client):
    emulator.add_resource(P)
    policy = get(client)
    policy.version = 3
    fits = dict(COND, title="t" * 100)
    policy.bindings.add(role="roles/logging.viewer", members=["user:a@example.com"], condition=fits)
    put(client, policy)

    policy = get(client)
    long = dict(COND, title="t" * 101)
    policy.bindings.add(role="roles/logging.viewer", members=["user:b@example.com"], condition=long)
    with pytest.raises(gexc.BadRequest, match="longer than 100"):
        put(client, policy)


def test_max_in_flight_counts_concurrent_calls(emulator):
    from concurrent.futures import ThreadPoolExecutor

    emulator.add_resource(P)
    emulator.latency = 0.2
    clients = [GcpClients(endpoint=emulator.url).for_scope(P) for _ in range(3)]

    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(get, clients))

    assert emulator.max_in_flight == 3 and emulator.in_flight == 0
    emulator.reset_counters()
    assert emulator.max_in_flight == 0


def test_unknown_resource_is_permission_denied(emulator, client):
    with pytest.raises(gexc.Forbidden):
        get(client)


def test_injected_faults_and_counters(emulator, client):
    emulator.add_resource(P)
    emulator.fail_next(P, status=503, count=1)
    with pytest.raises(gexc.ServiceUnavailable):
        get(client)
    get(client)
    assert (emulator.reads(P), emulator.writes(P)) == (2, 0)


def test_command_line_entry_serves_a_seed(tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                P: {
                    "bindings": [
                        {"role": "roles/logging.viewer", "members": ["user:a@example.com"]}
                    ]
                },
                "folders/1": None,
            }
        )
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler.sandbox.gcp_emulator",
            "--port",
            "0",
            "--seed",
            str(seed),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/_emulator/state", timeout=5) as response:
            state = json.load(response)
        assert sorted(state) == ["folders/1", P]
        client = GcpClients(endpoint=url).for_scope(P)
        assert get(client).bindings[0].role == "roles/logging.viewer"
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_command_line_rejects_a_bad_seed(tmp_path):
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({P: {"bindings": [{"role": "roles/x", "members": ["alice"]}]}}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler.sandbox.gcp_emulator",
            "--port",
            "0",
            "--seed",
            str(seed),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (
        proc.returncode == 2 and "Invalid member" in proc.stderr and "Traceback" not in proc.stderr
    )
