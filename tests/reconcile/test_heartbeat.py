"""The reconciler's heartbeat: every successful apply leaves one, a failed apply does not,
an idle apply refreshes it without a ledger commit, and `accessctl heartbeat` tells fresh
from stale. Real git (with a bare origin), the GCP emulator, the CLI."""

from __future__ import annotations

import pytest

from tests.support import GitRepo

from .conftest import T0, H, request_yaml

ALICE = "requests/alice/inc-1.yaml"

M = H / 60


@pytest.fixture
def origin(access_repo, tmp_path) -> GitRepo:
    remote = GitRepo(tmp_path / "origin.git", bare=True)
    access_repo.git("remote", "add", "origin", str(remote.root))
    access_repo.git("push", "-q", "origin", "main")
    return remote


def test_no_heartbeat_is_stale(run_cli) -> None:
    result = run_cli("heartbeat", "--max-age", "30m", at=T0)
    assert result.exit_code == 1
    assert "no successful apply recorded" in result.stdout


def test_a_successful_apply_leaves_a_fresh_heartbeat_on_origin(
    run_cli, access_repo, origin
) -> None:
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + 5 * M).exit_code == 0
    assert origin.git("rev-parse", "accessctl-heartbeat")  # pushed, fetched by any clone

    fresh = run_cli("heartbeat", "--max-age", "30m", at=T0 + 20 * M)
    assert fresh.exit_code == 0, fresh.output
    assert "2026-12-01T09:05:00Z" in fresh.stdout
    stale = run_cli("heartbeat", "--max-age", "30m", "--format", "json", at=T0 + 2 * H)
    assert stale.exit_code == 1
    assert stale.json()["last"] == "2026-12-01T09:05:00Z"
    assert stale.json()["age_seconds"] == 115 * 60


def test_an_idle_apply_refreshes_it_without_a_ledger_commit(run_cli, access_repo, origin) -> None:
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + 5 * M).exit_code == 0
    ledger = origin.git("rev-parse", "accessctl-ledger")
    assert run_cli("apply", "--trust-git", at=T0 + 15 * M).exit_code == 0
    assert origin.git("rev-parse", "accessctl-ledger") == ledger  # nothing to record
    # the heartbeat branch holds one commit, whatever the number of runs
    assert origin.git("rev-list", "--count", "accessctl-heartbeat") == "1"
    assert run_cli("heartbeat", "--max-age", "10m", at=T0 + 20 * M).exit_code == 0


def test_a_failed_apply_leaves_no_heartbeat(run_cli, access_repo, origin, emulator) -> None:
    access_repo.write(ALICE, request_yaml(scope="projects/app-prod-a"))
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + 5 * M).exit_code == 0
    emulator.fail_next("projects/app-prod-a", status=403, count=None)
    assert run_cli("apply", "--trust-git", at=T0 + 40 * M).exit_code == 1
    result = run_cli("heartbeat", "--max-age", "30m", at=T0 + 45 * M)
    assert result.exit_code == 1
    assert "2026-12-01T09:05:00Z" in result.stdout  # when it last ran


def test_apply_warns_before_github_disables_the_schedule(run_cli, access_repo) -> None:
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    quiet = run_cli("apply", "--trust-git", "--format", "json", at=T0 + 46 * 24 * H)
    assert quiet.exit_code == 0, quiet.output  # a warning, not a failure
    assert "W-SCHEDULE-INACTIVE" in quiet.stderr and "60 days" in quiet.stderr
    busy = run_cli("apply", "--trust-git", "--format", "json", at=T0 + 2 * H)
    assert "W-SCHEDULE-INACTIVE" not in busy.stderr
