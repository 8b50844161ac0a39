"""``accessctl activity`` on GCP: the real google-cloud-logging client against the emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from tests.activity.conftest import LEDGER, PAY, activity, add_request, record
from tests.support.emulators import running_gcp


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(PAY, LEDGER) as emu:
        record(emu, PAY, "alice@example.com", "2026-12-01T08:30:00Z", "before")
        record(emu, PAY, "alice@example.com", "2026-12-01T09:30:00Z", "inside")
        record(emu, PAY, "alice@example.com", "2026-12-01T10:00:00Z", "refused", denied=True)
        record(emu, PAY, "Alice@Example.com", "2026-12-01T10:30:00Z", "case")
        record(emu, PAY, "alice@example.com", "2026-12-01T11:30:00Z", "after")
        record(emu, PAY, "carol@example.com", "2026-12-01T09:45:00Z", "carols")
        record(emu, LEDGER, "alice@example.com", "2026-12-01T09:40:00Z", "other-scope")
        record(emu, LEDGER, "mallory@example.com", "2026-12-01T09:50:00Z", "try", denied=True)
        record(emu, LEDGER, "stranger@example.com", "2026-12-01T09:55:00Z", "x", denied=True)
        yield emu


@pytest.fixture
def repo(access_repo):
    add_request(access_repo, "requests/alice/db.yaml", "2026-12-01T09:00:00Z", scope=PAY)
    return access_repo


def test_events_of_the_window_only(repo, gcp):
    code, out, err = activity(repo, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    assert code == 0, err
    [grant] = out["grants"]
    assert grant["principal"] == "user:alice@example.com"
    assert (grant["begin"], grant["end"]) == ("2026-12-01T09:00:00Z", "2026-12-01T11:00:00Z")
    actions = [e["action"] for e in grant["events"]]
    assert actions == ["inside", "refused", "case"]  # not before, not after, nobody else's
    assert grant["calls"] == 3 and grant["denied"] == 1 and grant["after_end"] == 0
    assert grant["events"][1] == {
        "time": "2026-12-01T10:00:00Z",
        "service": "cloudsql.googleapis.com",
        "action": "refused",
        "resource": f"{PAY}/instances/db",
        "denied": True,
        "outside_window": False,
    }
    [attempt] = out["unauthorized"]  # a known principal, denied, without a grant there
    assert attempt["principal"] == "user:mallory@example.com"
    assert (attempt["scope"], attempt["action"], attempt["denied"]) == (LEDGER, "try", True)
    assert out["errors"] == []


def test_one_query_per_scope_with_an_explicit_range(repo, gcp):
    code, _, _ = activity(repo, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    assert code == 0
    asked = sorted(gcp.logging.lists)
    assert [names for names, _ in asked] == [(LEDGER,), (PAY,)]  # never two scopes at once
    for _, text in asked:
        assert 'timestamp>="2026-12-01T09:00:00' in text
        assert 'timestamp<="2026-12-01T11:05:00' in text  # end + the 5m allowance
        assert "cloudaudit.googleapis.com%2Fdata_access" in text


def test_pagination(repo, gcp):
    gcp.logging.page_cap = 1
    code, out, _ = activity(repo, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    assert code == 0
    assert [e["action"] for e in out["grants"][0]["events"]] == ["inside", "refused", "case"]
    assert sum(1 for names, _ in gcp.logging.lists if names == (PAY,)) == 4  # 3 pages + empty


def test_one_scope_unreadable_the_others_reported(repo, gcp):
    gcp.fail_next(LEDGER, 403, count=None, method="list")
    code, out, err = activity(repo, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    assert code == 1
    assert out["grants"][0]["calls"] == 3
    assert [(e["provider"], e["scope"]) for e in out["errors"]] == [("gcp", LEDGER)]
    assert "logging.logEntries.list" in out["errors"][0]["message"]
    assert LEDGER in err


def test_text_csv_and_github(repo, gcp, tmp_path):
    env = {"ACCESSCTL_GCP_ENDPOINT": gcp.url}
    code, text, _ = activity(repo, env=env, fmt="text")
    assert code == 0
    assert "requests/alice/db.yaml" in text and "refused" in text and "DENIED" in text
    assert "Unauthorized attempts" in text and "mallory" in text
    _, table, _ = activity(repo, env=env, fmt="csv")
    assert table.splitlines()[0].startswith("kind,request,principal")
    assert len(table.splitlines()) == 1 + 3 + 1
    summary = tmp_path / "summary.md"
    code, lines, _ = activity(
        repo, "--fail-on-anomaly", env=env | {"GITHUB_STEP_SUMMARY": str(summary)}, fmt="github"
    )
    assert code == 1  # a denied call in the window and an unauthorized attempt
    assert "::warning" in lines and "denied-attempts" in lines
    assert "requests/alice/db.yaml" in summary.read_text()


def test_selection_filters(repo, gcp):
    env = {"ACCESSCTL_GCP_ENDPOINT": gcp.url}
    _, out, _ = activity(repo, "--requester", "carol", env=env)
    assert out["grants"] == []
    _, out, _ = activity(repo, "--scope", PAY, env=env)
    assert len(out["grants"]) == 1
    assert [names for names, _ in gcp.logging.lists][-1:] == [(PAY,)]


def test_a_throttled_page_is_retried(repo, gcp):
    gcp.logging.page_cap = 1
    gcp.fail_next(PAY, 429, count=1, method="list")
    code, out, err = activity(repo, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    assert code == 0, err
    assert [e["action"] for e in out["grants"][0]["events"]] == ["inside", "refused", "case"]
    assert gcp.calls["list", PAY] == 5  # the refused page once more, then 3 pages + empty
