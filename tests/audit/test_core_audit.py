"""The pure audit join: states by time, and ledger lines matched to the right version."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.audit import LedgerEntry, Removal, Version, build_audit
from reconciler.history import MemorySource
from reconciler.repo import load_config, load_requests
from tests.audit.conftest import POLICIES, request_yaml, utc

CONFIG, _ = load_config(MemorySource({"policies/access.yaml": POLICIES.encode()}))
AWS = {"provider": "aws", "scope": "111111111111", "role": "ReadOnly"}


def version(path: str, text: str, merged: str, removal: Removal | None = None) -> Version:
    [request], findings = load_requests(MemorySource({path: text.encode()}), CONFIG, [path])
    assert not findings
    return Version(
        path, f"c-{path}-{merged}", "alice", utc(merged), "b", request, CONFIG, removal=removal
    )


def ledger_line(
    t: str, action: str, ok: bool = True, request: str | None = None, end: str | None = None
) -> LedgerEntry:
    return LedgerEntry(
        time=utc(t), action=action, ok=ok, provider="aws", scope="111111111111", role="ReadOnly",
        principal="alice@example.com", request=request, end=utc(end) if end else None,
        message="" if ok else "AccessDenied",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("at", "removal", "state"),
    [
        ("2026-12-01T08:59:00Z", None, "pending"),
        ("2026-12-01T09:00:00Z", None, "active"),
        ("2026-12-01T10:59:59Z", None, "active"),
        ("2026-12-01T11:00:00Z", None, "expired"),
        ("2026-12-01T09:40:00Z", ("2026-12-01T09:30:00Z", True), "revoked"),
        ("2026-12-01T09:20:00Z", ("2026-12-01T09:30:00Z", True), "active"),
        ("2026-12-01T12:00:00Z", ("2026-12-01T11:30:00Z", True), "expired"),
        ("2026-12-01T12:00:00Z", ("2026-12-01T10:00:00Z", False), "revoked"),
    ],
    ids=["before-merge", "at-merge", "last-second", "at-end", "deleted", "before-deletion",
         "deleted-after-end", "edited"],
)  # fmt: skip
def test_state_at(at: str, removal: tuple[str, bool] | None, state: str) -> None:
    ended = Removal("next", utc(removal[0]), removal[1]) if removal else None
    v = version("requests/alice/a.yaml", request_yaml(), "2026-12-01T09:00:00Z", ended)
    [entry] = build_audit([v], at=utc(at))
    assert entry.state == state


def test_aws_revokes_without_a_request_path_go_to_the_version_that_was_granted() -> None:
    path = "requests/alice/aws.yaml"
    v1 = version(path, request_yaml(duration="1h", **AWS), "2026-12-01T09:00:00Z",
                 Removal("v2", utc("2026-12-01T12:00:00Z"), False))  # fmt: skip
    v2 = version(path, request_yaml(duration="2h", **AWS), "2026-12-01T12:00:00Z")
    lines = [
        ledger_line("2026-12-01T09:05:00Z", "grant", request=path, end="2026-12-01T10:00:00Z"),
        ledger_line("2026-12-01T10:05:00Z", "revoke"),
        ledger_line("2026-12-01T12:05:00Z", "grant", request=path, end="2026-12-01T14:00:00Z"),
        ledger_line("2026-12-01T14:05:00Z", "revoke", ok=False),
        ledger_line("2026-12-01T14:15:00Z", "revoke"),
    ]
    first, second = build_audit([v1, v2], at=utc("2026-12-02T00:00:00Z"), ledger=lines)
    assert (first.granted_at, first.revoked_at) == (
        utc("2026-12-01T09:05:00Z"),
        utc("2026-12-01T10:05:00Z"),
    )
    assert first.anomalies == ()
    assert (second.granted_at, second.revoked_at) == (
        utc("2026-12-01T12:05:00Z"),
        utc("2026-12-01T14:15:00Z"),
    )
    assert [(a.code, a.message) for a in second.anomalies] == [
        ("revoke-failed", "at 2026-12-01T14:05:00Z: AccessDenied")
    ]
    # AWS assignments end only when revoked: each revoke 5 minutes after its end
    assert (first.revoke_lateness, second.revoke_lateness) == (300, 900)


def test_an_overlapping_aws_request_shares_the_assignment_without_an_anomaly() -> None:
    a = version("requests/alice/a.yaml", request_yaml(duration="4h", **AWS), "2026-12-01T09:00:00Z")
    b = version("requests/alice/b.yaml", request_yaml(duration="1h", **AWS), "2026-12-01T10:00:00Z")
    lines = [
        ledger_line("2026-12-01T09:05:00Z", "grant", request=a.path, end="2026-12-01T13:00:00Z")
    ]
    first, second = build_audit([a, b], at=utc("2026-12-01T12:00:00Z"), ledger=lines)
    assert first.granted_at is not None and first.anomalies == ()
    assert second.granted_at is None and second.anomalies == ()


def test_no_ledger_means_no_cloud_facts() -> None:
    v = version("requests/alice/a.yaml", request_yaml(), "2026-12-01T09:00:00Z")
    [entry] = build_audit([v], at=utc("2026-12-01T10:00:00Z"), ledger=None)
    assert (entry.granted_at, entry.revoked_at, entry.anomalies) == (None, None, ())
    assert isinstance(entry.approved_at, datetime)


ORDER = {"pending": 0, "scheduled": 1, "active": 2, "expired": 3, "revoked": 3}


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(min_value=-120, max_value=240),
    minutes=st.integers(min_value=1, max_value=240),
    removed=st.one_of(st.none(), st.integers(min_value=0, max_value=600)),
    probes=st.lists(st.integers(min_value=-60, max_value=720), min_size=2, max_size=12),
)
def test_states_only_move_forward_and_active_means_in_window(
    start: int, minutes: int, removed: int | None, probes: list[int]
) -> None:
    merged = utc("2026-12-01T09:00:00Z")
    begin = (merged + timedelta(minutes=start)).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = request_yaml(duration=f"{minutes}m", start=begin)
    ended = (
        Removal("next", merged + timedelta(minutes=removed), True) if removed is not None else None
    )
    v = version("requests/alice/a.yaml", text, "2026-12-01T09:00:00Z", ended)
    seen = []
    for offset in sorted(probes):
        at = merged + timedelta(minutes=offset)
        [entry] = build_audit([v], at=at)
        assert entry.begin is not None and entry.end is not None
        gone = ended is not None and ended.at <= at
        assert (entry.state == "active") == (entry.begin <= at < entry.end and not gone)
        seen.append(entry.state)
    assert [ORDER[s] for s in seen] == sorted(ORDER[s] for s in seen)
    assert not ({"expired", "revoked"} <= set(seen))
