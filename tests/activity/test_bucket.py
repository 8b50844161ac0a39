"""``accessctl activity`` with ``activity_source: log-bucket``: the real google-cloud-logging
client reads one organisation-level log bucket view, one query per scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.core.timeutil import parse_rfc3339
from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.gcp_logging import audit_entry
from tests.activity.conftest import activity, add_request
from tests.support.emulators import running_gcp

PAY = "projects/payments-prod"
LEDGER = "projects/ledger-prod"
VIEW = "organizations/123/locations/global/buckets/audit/views/_AllLogs"


def routed(emu: GcpEmulator, scope: str, who: str, at: str, method: str, denied: bool = False):
    """An audit entry of ``scope`` as an organisation sink routes it into the bucket: stored
    under the view, its logName still the project's."""
    entry = audit_entry(
        scope,
        who,
        at=parse_rfc3339(at),
        service="cloudsql.googleapis.com",
        method=method,
        resource=f"{scope}/instances/db",
        denied=denied,
        log="data_access",
    )
    emu.logging.add(VIEW, entry)


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(PAY, LEDGER) as emu:
        routed(emu, PAY, "alice@example.com", "2026-12-01T08:30:00Z", "before")
        routed(emu, PAY, "alice@example.com", "2026-12-01T09:30:00Z", "inside")
        routed(emu, PAY, "alice@example.com", "2026-12-01T10:00:00Z", "refused", denied=True)
        routed(emu, PAY, "carol@example.com", "2026-12-01T09:45:00Z", "carols")
        routed(emu, LEDGER, "alice@example.com", "2026-12-01T09:40:00Z", "other-scope")
        routed(emu, LEDGER, "mallory@example.com", "2026-12-01T09:50:00Z", "try", denied=True)
        yield emu


def use_bucket(repo, view: str) -> None:
    text = (repo.root / "policies/access.yaml").read_text()
    text = text.replace(
        "  gcp: {}", f"  gcp: {{activity_source: log-bucket, activity_bucket: '{view}'}}"
    )
    repo.commit({"policies/access.yaml": text}, "2026-11-30T13:00:00Z")


@pytest.fixture
def repo(access_repo):
    use_bucket(access_repo, VIEW)
    add_request(access_repo, "requests/alice/db.yaml", "2026-12-01T09:00:00Z", scope=PAY)
    return access_repo


def test_the_view_is_read_once_per_scope_with_that_scopes_filter(repo, gcp):
    code, out, err = activity(repo, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    assert code == 0, err
    [grant] = out["grants"]
    assert [e["action"] for e in grant["events"]] == ["inside", "refused"]
    assert (grant["calls"], grant["denied"]) == (2, 1)
    [attempt] = out["unauthorized"]  # the ledger project's entries, from the same bucket
    assert (attempt["principal"], attempt["scope"]) == ("user:mallory@example.com", LEDGER)
    asked = sorted(gcp.logging.lists, key=lambda a: a[1])
    assert [names for names, _ in asked] == [(VIEW,), (VIEW,)]  # never the projects
    filters = {
        scope: text for scope in (PAY, LEDGER) for _, text in asked if f'"{scope}/logs/' in text
    }
    assert set(filters) == {PAY, LEDGER}  # one query per scope, each with its own log names
    assert f'"{LEDGER}/logs/' not in filters[PAY]
    assert 'timestamp>="2026-12-01T09:00:00' in filters[PAY]
    assert gcp.calls["list", PAY] == 0 and gcp.calls["list", VIEW] == 2


def test_an_unreadable_bucket_is_an_error(access_repo, gcp):
    use_bucket(access_repo, "organizations/123/locations/global/buckets/other/views/_AllLogs")
    add_request(access_repo, "requests/alice/db.yaml", "2026-12-01T09:00:00Z", scope=PAY)
    code, out, err = activity(access_repo, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    assert code == 1
    assert sorted(e["scope"] for e in out["errors"]) == [LEDGER, PAY]
    message = out["errors"][0]["message"]
    assert "buckets/other/views/_AllLogs" in message and "logging.views.access" in message
    assert out["grants"][0]["events"] == []
    assert "error: gcp" in err
