"""Wiring details of the app that the CLI tests reach only slowly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler import app
from reconciler.approvals import ApprovalRecord, TrustGit
from reconciler.core.models import AccessRequest, Config, Grant
from reconciler.errors import ConfigError
from reconciler.repo import LoadedRepo

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _loaded() -> LoadedRepo:
    request = AccessRequest(
        path="requests/alice/a.yaml",
        requester="alice",
        provider="gcp",
        scope="projects/app-prod-a",
        role="roles/cloudsql.viewer",
        reason="Investigate INC-1 slowness",
        duration=2 * H,
    )
    config = Config(identities={"alice": {"gcp": "user:alice@example.com"}})
    return LoadedRepo(config=config, requests=[request])


def _observed(request: str, end: datetime) -> Grant:
    return Grant(
        "gcp",
        "projects/app-prod-a",
        "roles/cloudsql.viewer",
        "user:alice@example.com",
        request,
        NOW - H,
        end,
    )


def test_transient_approval_failure_holds_live_grants_only() -> None:
    loaded = _loaded()
    records = {
        "requests/alice/a.yaml": ApprovalRecord(
            "requests/alice/a.yaml", "c0ffee", None, None, error="GitHub 502", transient=True
        )
    }
    live = _observed("requests/alice/a.yaml", NOW + H)
    ended = _observed("requests/alice/a.yaml", NOW - H / 2)
    other = _observed("requests/bob/b.yaml", NOW + H)
    assert app.held_grants(loaded, records, [live, ended, other], NOW) == {live}


def test_refused_record_holds_nothing() -> None:
    records = {
        "requests/alice/a.yaml": ApprovalRecord(
            "requests/alice/a.yaml", "c0ffee", None, None, error="direct push"
        )
    }
    observed = [_observed("requests/alice/a.yaml", NOW + H)]
    assert app.held_grants(_loaded(), records, observed, NOW) == set()


def test_approval_source_needs_github_or_trust_git(tmp_path) -> None:
    assert isinstance(app.approval_source(True, tmp_path, {}), TrustGit)
    with pytest.raises(ConfigError, match="GITHUB_TOKEN and GITHUB_REPOSITORY"):
        app.approval_source(False, tmp_path, {"GITHUB_TOKEN": "x"})
