"""`accessctl request --break-glass`: the file says so, the policies judge it as the gate
will (no approval needed, a ticket and a short window required), and bad combinations are
refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import GitRepo

from .test_open_pr import run_cli

POLICIES = """\
policies:
  - name: db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [alice]
    approvers: [dave]
    approvals: 1
    max_duration: 4h
    break_glass: {max_duration: 1h, review_within: 24h}
identities:
  alice: {gcp: "user:alice@example.com"}
providers:
  gcp: {}
"""
BASE = (
    "--requester", "alice", "--provider", "gcp", "--scope", "projects/payments-prod",
    "--role", "roles/cloudsql.viewer", "--reason", "Payments are down, INC-9, need the logs",
    "--at", "2026-12-01T09:00:00Z",
)  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "access")
    repo.commit({"policies/access.yaml": POLICIES}, "policies")
    return repo


def test_writes_break_glass_true_and_passes_the_policy(repo: GitRepo) -> None:
    proc = run_cli(*BASE, "--break-glass", "--ticket", "INC-9", "--duration", "1h",
                   repo=repo.root, env={})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = (repo.root / "requests/alice/inc-9.yaml").read_text()
    assert "break_glass: true" in text and "ticket: INC-9" in text


def test_over_the_break_glass_duration_is_refused_and_nothing_written(repo: GitRepo) -> None:
    proc = run_cli(*BASE, "--break-glass", "--ticket", "INC-9", "--duration", "2h",
                   repo=repo.root, env={})  # fmt: skip
    assert proc.returncode == 1
    assert "E-POLICY-TOO-LONG" in proc.stderr and "break-glass access for at most 1h" in proc.stderr
    assert not (repo.root / "requests").exists()


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--duration", "1h"), "--break-glass needs --ticket"),
        (("--ticket", "INC-9", "--duration", "1h", "--start", "2026-12-02T09:00:00Z"),
         "drop --start"),
    ],
    ids=["no ticket", "a start"],
)  # fmt: skip
def test_bad_combinations_are_usage_errors(repo: GitRepo, extra: tuple[str, ...], words: str):
    proc = run_cli(*BASE, "--break-glass", *extra, repo=repo.root, env={})
    assert proc.returncode == 2 and words in proc.stderr
    assert not (repo.root / "requests").exists()
