"""`accessctl apply --trust-git` with notifications configured in the policies: each event
reaches each sink with the documented, signed body; the events filter; an outage or a
refused URL never changes the grants or the exit code it would have; nothing secret in any
output or in the ledger. A local HTTP receiver, the GCP emulator, real git, the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
from importlib import resources

import jsonschema
import pytest

from reconciler.notify import SIGNATURE_HEADER
from tests.reconcile.conftest import managed, request_yaml

from .conftest import T0, H, with_notifications

ALICE = "requests/alice/inc-1.yaml"
M = H / 60
SECRET = "s3cret-hmac-key-0123456789"
WEBHOOK = """\
  - type: webhook
    url_env: ACCESSCTL_TEST_WEBHOOK
    secret_env: ACCESSCTL_TEST_SECRET
"""
SLACK = """\
  - type: slack
    url_env: ACCESSCTL_TEST_SLACK
"""
SCHEMA = json.loads(
    resources.files("reconciler").joinpath("schemas/notification.schema.json").read_text()
)


def env_for(receiver, **extra: str) -> dict[str, str]:
    return {
        "ACCESSCTL_TEST_WEBHOOK": f"{receiver.url}/hook/T0K3N-PATH",
        "ACCESSCTL_TEST_SECRET": SECRET,
        "ACCESSCTL_TEST_SLACK": f"{receiver.url}/services/T000/B000/SLACKSECRETPATH",
        **extra,
    }


def webhook_bodies(receiver) -> list[dict]:
    """Every webhook body, checked against the schema and its signature."""
    out = []
    for d in receiver.at("/hook/T0K3N-PATH"):
        expected = "sha256=" + hmac.new(SECRET.encode(), d.raw, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(d.headers[SIGNATURE_HEADER], expected)
        body = d.json()
        jsonschema.validate(body, SCHEMA, format_checker=jsonschema.FormatChecker())
        out.append(body)
    return out


def slack_texts(receiver) -> list[str]:
    return [d.json()["text"] for d in receiver.at("/services/T000/B000/SLACKSECRETPATH")]


def test_granted_and_revoked_reach_every_sink(run_cli, access_repo, receiver) -> None:
    with_notifications(access_repo, WEBHOOK + SLACK)
    access_repo.write(ALICE, request_yaml(duration="2h"))
    access_repo.commit("alice", at=T0)
    env = env_for(receiver)

    assert run_cli("apply", "--trust-git", at=T0 + 5 * M, env=env).exit_code == 0
    (granted,) = webhook_bodies(receiver)
    assert granted["event"] == "granted"
    assert granted["time"] == "2026-12-01T09:05:00Z"
    assert granted["request"] == ALICE
    assert granted["requester"] == "alice"
    assert (granted["provider"], granted["scope"]) == ("gcp", "projects/app-prod-a")
    assert granted["role"] == "roles/cloudsql.viewer"
    assert granted["end"] == "2026-12-01T11:00:00Z"
    (text,) = slack_texts(receiver)
    assert "granted" in text and "alice" in text and "projects/app-prod-a" in text
    assert "2026-12-01T11:00:00Z" in text

    access_repo.git("rm", "-q", ALICE)
    access_repo.commit("alice is done early", at=T0 + H)
    assert run_cli("apply", "--trust-git", at=T0 + H + 5 * M, env=env).exit_code == 0
    revoked = webhook_bodies(receiver)[-1]
    assert revoked["event"] == "revoked"
    assert revoked["scope"] == "projects/app-prod-a"
    assert "revoked" in slack_texts(receiver)[-1]


def test_a_failed_apply_sends_failed(run_cli, access_repo, receiver, emulator) -> None:
    with_notifications(access_repo, WEBHOOK)
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    emulator.fail_next("projects/app-prod-a", status=403, count=None)
    result = run_cli("apply", "--trust-git", at=T0 + 5 * M, env=env_for(receiver))
    assert result.exit_code == 1
    failed = [b for b in webhook_bodies(receiver) if b["event"] == "failed"]
    assert failed and failed[0]["scope"] == "projects/app-prod-a"
    assert failed[0]["message"]


def test_events_filter(run_cli, access_repo, receiver) -> None:
    with_notifications(access_repo, WEBHOOK + "    events: [failed, late-revoke]\n")
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + 5 * M, env=env_for(receiver)).exit_code == 0
    assert receiver.received == []  # granted is not among its events


@pytest.mark.parametrize("outage", ["http-500", "not-listening"])
def test_an_outage_changes_neither_grants_nor_exit_code(
    run_cli, access_repo, receiver, emulator, outage
) -> None:
    with_notifications(access_repo, WEBHOOK + SLACK)
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    env = env_for(receiver)
    if outage == "http-500":
        receiver.status = 500
    else:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env["ACCESSCTL_TEST_WEBHOOK"] = f"http://127.0.0.1:{port}/hook/T0K3N-PATH"
    result = run_cli("apply", "--trust-git", "--format", "json", at=T0 + 5 * M, env=env)
    assert result.exit_code == 0, result.output
    assert managed(emulator, "projects/app-prod-a")  # granted all the same
    assert "W-NOTIFY" in result.stderr or "not delivered" in result.stderr
    assert result.json()["errors"] == []
    if outage == "http-500":
        assert len(receiver.at("/hook/T0K3N-PATH")) == 3  # retried, bounded
    assert_no_secret(result.output, env)


def test_a_plain_http_url_to_another_host_is_refused(run_cli, access_repo, emulator) -> None:
    with_notifications(access_repo, WEBHOOK)
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    env = {
        "ACCESSCTL_TEST_WEBHOOK": "http://hooks.example.com/T0K3N-PATH",
        "ACCESSCTL_TEST_SECRET": SECRET,
    }
    result = run_cli("apply", "--trust-git", at=T0 + 5 * M, env=env)
    assert result.exit_code == 1
    assert "E-NOTIFY-CONFIG" in result.output
    assert "ACCESSCTL_TEST_WEBHOOK" in result.output
    assert managed(emulator, "projects/app-prod-a")  # the grant is not held hostage
    assert_no_secret(result.output, env)


def test_an_unset_variable_is_named(run_cli, access_repo) -> None:
    with_notifications(access_repo, SLACK)
    result = run_cli("apply", "--trust-git", at=T0 + 5 * M, env={})
    assert result.exit_code == 1
    assert "ACCESSCTL_TEST_SLACK is not set" in result.output


def test_no_secret_in_any_output_or_the_ledger(run_cli, access_repo, receiver) -> None:
    with_notifications(access_repo, WEBHOOK + SLACK)
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    env = env_for(receiver)
    outputs = []
    for fmt in ("text", "json", "github"):
        receiver.status = 500 if fmt == "github" else 200
        result = run_cli("apply", "--trust-git", "--format", fmt, at=T0 + 5 * M, env=env)
        outputs.append(result.output)
    outputs.append(run_cli("plan", "--trust-git", at=T0 + 6 * M, env=env).output)
    ledger = subprocess.run(
        ["git", "log", "-p", "accessctl-ledger"],
        cwd=access_repo.root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "alice" in ledger
    for text in (*outputs, ledger):
        assert_no_secret(text, env)


def assert_no_secret(text: str, env: dict[str, str]) -> None:
    for name in ("ACCESSCTL_TEST_WEBHOOK", "ACCESSCTL_TEST_SLACK", "ACCESSCTL_TEST_SECRET"):
        if env.get(name):
            assert env[name] not in text, name
    for fragment in (SECRET, "T0K3N-PATH", "SLACKSECRETPATH"):
        assert fragment not in text


def test_heartbeat_sends_reconciler_stale(run_cli, access_repo, receiver) -> None:
    with_notifications(access_repo, WEBHOOK + "    events: [reconciler-stale]\n")
    result = run_cli("heartbeat", "--max-age", "30m", at=T0, env=env_for(receiver))
    assert result.exit_code == 1
    (body,) = webhook_bodies(receiver)
    assert body["event"] == "reconciler-stale"
    assert "no successful apply recorded" in body["summary"]
    assert_no_secret(result.output, env_for(receiver))
