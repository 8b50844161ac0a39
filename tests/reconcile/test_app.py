"""Wiring details of the app that the CLI tests reach only slowly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler import app
from reconciler.approvals import TrustGit
from reconciler.core.judgment import Approval, judge_request
from reconciler.core.models import AccessRequest, Config, Grant, Policy
from reconciler.errors import ConfigError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


REQUEST = AccessRequest(
    path="requests/alice/a.yaml",
    requester="alice",
    provider="gcp",
    scope="projects/app-prod-a",
    role="roles/cloudsql.viewer",
    reason="Investigate INC-1 slowness",
    duration=2 * H,
)
POLICY = Policy(
    name="read",
    provider="gcp",
    scopes=("projects/app-prod-a",),
    roles=("roles/cloudsql.viewer",),
    requesters=("alice",),
    approvers=("dave",),
    approvals=1,
    max_duration=4 * H,
)
CONFIG = Config(policies=(POLICY,), identities={"alice": {"gcp": "user:alice@example.com"}})


def _judged(approval: Approval, committed_at: datetime, request: AccessRequest = REQUEST):
    return {request.path: judge_request(request, CONFIG, approval, NOW, committed_at=committed_at)}


def _observed(request: str, begin: datetime, end: datetime) -> Grant:
    return Grant(
        "gcp", "projects/app-prod-a", "roles/cloudsql.viewer", "user:alice@example.com",
        request, begin, end,
    )  # fmt: skip


def test_unverifiable_approval_holds_the_git_dated_window_only() -> None:
    merged = NOW - H
    judgments = _judged(Approval(None, unverified="GitHub 502"), merged)
    live = _observed("requests/alice/a.yaml", merged, merged + 2 * H)
    stretched = _observed("requests/alice/a.yaml", merged, merged + 30 * H)
    other = _observed("requests/bob/b.yaml", merged, merged + 2 * H)
    held = app.held_grants(judgments, [live, stretched, other], NOW)
    assert {(g.request, g.end) for g in held} == {("requests/alice/a.yaml", merged + 2 * H)}


def test_nothing_is_held_when_no_policy_allows_the_window() -> None:
    """A file that never passed the gate (3650d) is not held during an outage."""
    long = AccessRequest(**{**REQUEST.__dict__, "duration": 3650 * 24 * H, "lines": {}})
    judgments = _judged(Approval(None, unverified="GitHub 502"), NOW - H, long)
    observed = [_observed(long.path, NOW - H, NOW + 3000 * H)]
    assert app.held_grants(judgments, observed, NOW) == set()


def test_held_grant_is_never_created() -> None:
    judgments = _judged(Approval(None, unverified="GitHub 502"), NOW - H)
    assert app.held_grants(judgments, [], NOW) == set()


def test_refused_record_holds_nothing() -> None:
    judgments = _judged(Approval(None, refusal="direct push"), NOW - H)
    observed = [_observed("requests/alice/a.yaml", NOW - H, NOW + H)]
    assert app.held_grants(judgments, observed, NOW) == set()


def test_approval_source_needs_github_or_trust_git(tmp_path) -> None:
    assert isinstance(app.approval_source(True, tmp_path, {}), TrustGit)
    with pytest.raises(ConfigError, match="GITHUB_TOKEN and GITHUB_REPOSITORY"):
        app.approval_source(False, tmp_path, {"GITHUB_TOKEN": "x"})
