"""`accessctl activity --notify`: the anomalies of the clouds' audit logs reach the sinks
(used-after-end, denied-attempts, unauthorized-attempt), signed and as the schema says; a
sink that fails or cannot be set up is a warning and never changes the exit code; nothing
secret in any output. The GCP emulator's Cloud Logging, a local receiver, real git, the CLI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from tests.activity.conftest import (
    IDENTITIES,
    LEDGER,
    PAY,
    POLICIES,
    activity,
    add_request,
    record,
)
from tests.audit.conftest import GitRepo
from tests.support.emulators import running_gcp

from .test_apply import SECRET, SLACK, WEBHOOK, env_for, webhook_bodies


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(PAY, LEDGER) as emu:
        record(emu, PAY, "alice@example.com", "2026-12-01T09:30:00Z", "instances.get")
        record(emu, PAY, "alice@example.com", "2026-12-01T09:40:00Z", "restart", denied=True)
        # her request was deleted at 10:00; the binding lived on until its end at 11:00
        record(emu, PAY, "alice@example.com", "2026-12-01T10:30:00Z", "instances.export")
        for minute in ("10", "20", "30"):
            record(emu, LEDGER, "mallory@example.com", f"2026-12-01T09:{minute}:00Z", "x", True)
        yield emu


def make_repo(tmp_path, sinks: str) -> GitRepo:
    repo = GitRepo(tmp_path / "access")
    text = POLICIES + IDENTITIES + "notifications:\n" + sinks
    repo.commit({"policies/access.yaml": text}, "2026-11-30T12:00:00Z")
    add_request(repo, "requests/alice/db.yaml", "2026-12-01T09:00:00Z", scope=PAY)
    repo.commit({"requests/alice/db.yaml": None}, "2026-12-01T10:00:00Z", message="done early")
    return repo


def run(repo, gcp, receiver, *extra: str, **env: str):
    return activity(
        repo, *extra, env=env_for(receiver, ACCESSCTL_GCP_ENDPOINT=gcp.url, **env), fmt="text"
    )


def test_each_anomaly_reaches_the_sinks(tmp_path, gcp, receiver):
    repo = make_repo(tmp_path, WEBHOOK + SLACK)
    code, out, err = run(repo, gcp, receiver, "--notify")
    assert code == 0, err  # anomalies are reported, not failures (without --fail-on-anomaly)
    bodies = webhook_bodies(receiver)  # signed, and valid against notification.schema.json
    assert [b["event"] for b in bodies] == [
        "used-after-end",
        "denied-attempts",
        "unauthorized-attempt",
    ]
    used, denied, attempt = bodies
    assert used["request"] == "requests/alice/db.yaml"
    assert (used["principal"], used["scope"], used["role"]) == (
        "user:alice@example.com",
        PAY,
        "roles/cloudsql.viewer",
    )
    assert used["end"] == "2026-12-01T10:00:00Z"  # the early deletion ended the window
    assert "1 call(s)" in used["message"] and used["requester"] == "alice"
    assert "denied 1 call(s)" in denied["summary"]
    # one event for mallory's three refused calls, first to last
    assert attempt["principal"] == "user:mallory@example.com" and attempt["scope"] == LEDGER
    assert (attempt["begin"], attempt["end"]) == ("2026-12-01T09:10:00Z", "2026-12-01T09:30:00Z")
    assert "denied 3 call(s)" in attempt["summary"] and attempt["request"] is None
    slack = [d.json()["text"] for d in receiver.at("/services/T000/B000/SLACKSECRETPATH")]
    assert len(slack) == 3 and "*accessctl used-after-end*" in slack[0]
    for text in (out, err):
        assert "T0K3N-PATH" not in text and "SLACKSECRETPATH" not in text and SECRET not in text


def test_nothing_is_sent_without_notify(tmp_path, gcp, receiver):
    repo = make_repo(tmp_path, WEBHOOK)
    code, _, _ = run(repo, gcp, receiver)
    assert code == 0
    assert receiver.received == []


def test_a_sink_takes_only_the_events_it_names(tmp_path, gcp, receiver):
    repo = make_repo(tmp_path, WEBHOOK + "    events: [unauthorized-attempt]\n")
    run(repo, gcp, receiver, "--notify")
    assert [b["event"] for b in webhook_bodies(receiver)] == ["unauthorized-attempt"]


@pytest.mark.parametrize("flags, expected", [((), 0), (("--fail-on-anomaly",), 1)])
def test_a_sink_that_fails_never_changes_the_exit_code(tmp_path, gcp, receiver, flags, expected):
    receiver.status = 500
    repo = make_repo(tmp_path, WEBHOOK)
    code, out, err = run(repo, gcp, receiver, "--notify", *flags)
    assert code == expected
    assert "warning: notification webhook (ACCESSCTL_TEST_WEBHOOK) not delivered" in err
    assert "HTTP 500" in err
    assert "T0K3N-PATH" not in err + out and "used-after-end" in out


def test_a_sink_that_cannot_be_set_up_is_a_warning(tmp_path, gcp, receiver):
    repo = make_repo(tmp_path, WEBHOOK + SLACK)
    code, _, err = run(repo, gcp, receiver, "--notify", ACCESSCTL_TEST_SECRET="")
    assert code == 0
    assert "ACCESSCTL_TEST_SECRET is not set" in err
    assert len(receiver.at("/services/T000/B000/SLACKSECRETPATH")) == 3  # the others still go
