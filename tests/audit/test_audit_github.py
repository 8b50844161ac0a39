"""`accessctl audit` with GitHub configured: pull requests, approvers, direct pushes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests.audit.conftest import GitRepo, request_yaml, run_cli

REPO = "acme/access"
ALICE = "requests/alice/inc-4821.yaml"
SNEAKY = "requests/alice/sneaky.yaml"


def test_audit_shows_pull_requests_approvers_and_flags_direct_pushes(
    access_repo: GitRepo, tmp_path: Path
) -> None:
    base = access_repo.head()
    access_repo.git("checkout", "-q", "-b", "pr-1")
    head = access_repo.commit({ALICE: request_yaml()}, "2026-12-01T08:40:00Z")
    access_repo.git("checkout", "-q", "main")
    access_repo.git(
        "merge", "-q", "--no-ff", "pr-1", "-m", "Merge pull request #1", when="2026-12-01T09:00:00Z"
    )
    merge = access_repo.head()
    access_repo.commit({SNEAKY: request_yaml()}, "2026-12-01T09:10:00Z", message="direct push")

    with GitHubEmulator() as github:
        github.add_repo(REPO)
        n = github.add_pull(
            REPO, author="alice", head_sha=head, base_sha=base,
            files=[{"filename": ALICE, "status": "added"}],
        )  # fmt: skip
        github.add_review(REPO, n, "dave", "APPROVED", commit_id=head)
        github.merge(
            REPO, n, merge_commit_sha=merge, merged_at=datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC)
        )
        env = {
            "GITHUB_API_URL": github.url,
            "GITHUB_TOKEN": DEFAULT_TOKEN,
            "GITHUB_REPOSITORY": REPO,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
        proc = run_cli("audit", "--repo", str(access_repo.root), "--format", "json",
                       "--at", "2026-12-01T10:00:00Z", env=env)  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    approved, sneaky = json.loads(proc.stdout)["requests"]
    assert approved["pr"] == n
    assert approved["approvers"] == ["dave"]
    assert approved["approved_at"] == "2026-12-01T09:00:05Z"  # GitHub's merged_at
    assert approved["begin"] == "2026-12-01T09:00:05Z"
    assert (approved["state"], approved["anomalies"]) == ("active", [])
    assert sneaky["file"] == SNEAKY
    assert (sneaky["pr"], sneaky["approved_at"], sneaky["state"]) == (None, None, "rejected")
    assert [a["code"] for a in sneaky["anomalies"]] == ["direct-push"]

    # with --trust-git the same history is judged by git alone: no PRs, no approvers
    trusted = run_cli("audit", "--repo", str(access_repo.root), "--format", "json", "--trust-git",
                      "--at", "2026-12-01T10:00:00Z", env=env)  # fmt: skip
    plain = json.loads(trusted.stdout)["requests"]
    assert [(e["pr"], e["approvers"], e["state"]) for e in plain] == [
        (None, None, "active"),
        (None, None, "active"),
    ]
