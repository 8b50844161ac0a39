"""``activity --ended-after``: a scheduled run reports its own span, so consecutive runs
report each ended grant and each unauthorized attempt exactly once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from tests.activity.conftest import LEDGER, PAY, activity, add_request, record
from tests.support.emulators import running_gcp


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(PAY, LEDGER) as emu:
        record(emu, PAY, "alice@example.com", "2026-12-01T09:30:00Z", "alice-early")
        record(emu, PAY, "carol@example.com", "2026-12-01T10:30:00Z", "carol-late")
        record(emu, PAY, "carol@example.com", "2026-12-01T12:30:00Z", "carol-still")
        # mallory, denied without a grant: one attempt in each span, one in a grant's scope
        record(emu, LEDGER, "mallory@example.com", "2026-12-01T10:50:00Z", "try-1", denied=True)
        record(emu, PAY, "mallory@example.com", "2026-12-01T11:20:00Z", "try-2", denied=True)
        record(emu, LEDGER, "mallory@example.com", "2026-12-01T11:50:00Z", "try-3", denied=True)
        yield emu


@pytest.fixture
def repo(access_repo):
    # alice 09:00-10:00, carol 10:15-11:15, carol again 12:00-14:00 (still active at 13:00)
    add_request(access_repo, "requests/alice/a.yaml", "2026-12-01T09:00:00Z", duration="1h")
    add_request(access_repo, "requests/carol/b.yaml", "2026-12-01T10:15:00Z", duration="1h")
    add_request(access_repo, "requests/carol/c.yaml", "2026-12-01T12:00:00Z", duration="2h")
    return access_repo


def span(repo, gcp, after: str, at: str) -> dict:
    code, out, err = activity(
        repo, "--ended-after", after, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url}, at=at
    )
    assert code == 0, err
    return out


def test_only_the_grants_that_ended_in_the_span(repo, gcp):
    out = span(repo, gcp, "2026-12-01T10:30:00Z", "2026-12-01T13:00:00Z")
    # alice's ended before the span, carol's second is still running
    assert [g["request"] for g in out["grants"]] == ["requests/carol/b.yaml"]
    assert [e["action"] for e in out["grants"][0]["events"]] == ["carol-late"]


def test_consecutive_spans_report_each_once(repo, gcp):
    runs = [
        ("2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z"),
        ("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"),
        ("2026-12-01T11:00:00Z", "2026-12-01T11:35:00Z"),
        ("2026-12-01T11:35:00Z", "2026-12-01T13:00:00Z"),
    ]
    grants, attempts = [], []
    for after, at in runs:
        out = span(repo, gcp, after, at)
        grants += [g["request"] for g in out["grants"]]
        attempts += [(u["action"], u["scope"]) for u in out["unauthorized"]]
    assert grants == ["requests/alice/a.yaml", "requests/carol/b.yaml"]
    assert attempts == [("try-1", LEDGER), ("try-2", PAY), ("try-3", LEDGER)]
    # every scope was read over its run's span: try-2, in a scope where a grant had ended
    # long before, is not lost between runs
    assert all('timestamp<="2026-12-01T11:35:00' in text for _, text in gcp.logging.lists[-4:-2])


def test_an_empty_span_reports_nothing(repo, gcp):
    out = span(repo, gcp, "2026-12-01T13:00:00Z", "2026-12-01T13:00:00Z")
    assert out == {"grants": [], "unauthorized": [], "errors": []}


def test_a_span_ending_before_it_starts_is_a_usage_error(repo, gcp):
    code, out, err = activity(
        repo,
        "--ended-after",
        "2026-12-01T14:00:00Z",
        env={"ACCESSCTL_GCP_ENDPOINT": gcp.url},
        at="2026-12-01T13:00:00Z",
    )
    assert code == 2
    assert "--ended-after" in err and out == ""
