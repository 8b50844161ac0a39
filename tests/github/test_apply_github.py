"""``accessctl apply`` verifying approvals on GitHub, end to end: a real git repo, the
GitHub emulator and the GCP emulator over HTTP, the CLI run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.github_emulator import GitHubEmulator

from .conftest import REPO, GitRepo

ACCESSCTL = str(Path(sys.executable).parent / "accessctl")
SCOPE = "projects/payments-prod"
POLICY = """\
policies:
  - name: db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [alice, bob, carol]
    approvers: [dave]
    approvals: 1
    max_duration: 8h
identities:
  alice: {gcp: "user:alice@example.com"}
  bob: {gcp: "user:bob@example.com"}
  carol: {gcp: "user:carol@example.com"}
providers:
  gcp: {}
"""


def request(login: str) -> str:
    return (
        f"requester: {login}\nprovider: gcp\nscope: {SCOPE}\nrole: roles/cloudsql.viewer\n"
        "reason: Investigate INC-4821, slow queries\nduration: 8h\n"
    )


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    emu = GcpEmulator(port=0).start()
    emu.add_resource(SCOPE)
    try:
        yield emu
    finally:
        emu.stop()


def merge_pr(
    emulator: GitHubEmulator, repo: GitRepo, login: str, reviewer: str, author: str = ""
) -> None:
    """A PR by ``author`` (default ``login``) adding ``login``'s request, reviewed,
    squash-merged into main."""
    path = f"requests/{login}/inc-4821.yaml"
    base = repo.head()
    repo.checkout(f"pr-{login}", new=True)
    head = repo.commit({path: request(login)}, author=author or login)
    n = emulator.add_pull(
        REPO,
        author=author or login,
        head_sha=head,
        base_sha=base,
        files=[{"filename": path, "status": "added"}],
    )
    emulator.add_review(REPO, n, reviewer, "APPROVED")
    repo.checkout("main")
    repo.git("merge", "--squash", f"pr-{login}")
    emulator.merge(REPO, n, merge_commit_sha=repo.commit({}, f"request (#{n})"))


def apply(
    repo: GitRepo, gcp: GcpEmulator, env: dict[str, str], *, ledger: bool = True
) -> tuple[int, dict, str]:
    flags = [] if ledger else ["--no-ledger"]
    proc = subprocess.run(
        [ACCESSCTL, "apply", "--repo", str(repo.root), "--format", "json", *flags],
        env={**env, "ACCESSCTL_GCP_ENDPOINT": gcp.url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout or "{}"), proc.stderr


def members(gcp: GcpEmulator) -> set[str]:
    return {m for b in gcp.get_policy(SCOPE).get("bindings", []) for m in b["members"]}


LOOKUPS = (
    "GET /repos/{o}/{r}/commits/{sha}/pulls",
    "GET /repos/{o}/{r}/pulls/{n}/files",
    "GET /repos/{o}/{r}/pulls/{n}/reviews",
)


def with_origin(emulator: GitHubEmulator, repo: GitRepo, tmp: Path) -> None:
    """The reconcile job's checkout: an origin that the GitHub emulator serves, so ledger
    commits are written (and signed) through GitHub, as in Actions."""
    origin = GitRepo(tmp / "origin.git", bare=True)
    repo.git("remote", "add", "origin", str(origin.root))
    repo.git("push", "-q", "origin", "main")
    emulator.attach_git(REPO, origin.root)


def test_apply_grants_only_what_github_approved_and_then_costs_nothing(
    emulator: GitHubEmulator,
    git_repo: GitRepo,
    github_env: dict[str, str],
    gcp: GcpEmulator,
    tmp_path: Path,
) -> None:
    git_repo.commit({"policies/p.yaml": POLICY}, "policies", author="admin")
    with_origin(emulator, git_repo, tmp_path)
    merge_pr(emulator, git_repo, "alice", reviewer="dave")  # approved by an approver
    merge_pr(emulator, git_repo, "bob", reviewer="carol")  # approved by someone ineligible
    git_repo.commit(
        {"requests/carol/inc-4821.yaml": request("carol")}, "direct push", author="carol"
    )

    code, out, err = apply(git_repo, gcp, github_env)

    assert members(gcp) == {"user:alice@example.com"}
    assert code == 1  # the refused and unverifiable requests are reported
    assert "reached main without a merged pull request" in json.dumps(out) + err
    first = emulator.total_calls

    emulator.reset_calls()
    assert apply(git_repo, gcp, github_env)[0] == 1
    assert members(gcp) == {"user:alice@example.com"}
    # Only the direct push is looked up again (unverified results are never kept): its
    # commit -> PRs; alice's and bob's verified results come from the signed ledger.
    assert emulator.calls["GET /repos/{o}/{r}/pulls/{n}/reviews"] == 0
    assert emulator.calls["GET /repos/{o}/{r}/commits/{sha}/pulls"] == 1
    assert first > 9  # the lookups (9) plus writing and anchoring the ledger through GitHub


def test_without_the_ledger_every_approval_is_verified_again(
    emulator: GitHubEmulator, git_repo: GitRepo, github_env: dict[str, str], gcp: GcpEmulator
) -> None:
    """Verified approvals are only kept on the reconciler's own ledger branch."""
    git_repo.commit({"policies/p.yaml": POLICY}, "policies", author="admin")
    merge_pr(emulator, git_repo, "alice", reviewer="dave")
    assert apply(git_repo, gcp, github_env, ledger=False)[0] == 0
    emulator.reset_calls()
    assert apply(git_repo, gcp, github_env, ledger=False)[0] == 0
    assert emulator.calls["GET /repos/{o}/{r}/pulls/{n}/reviews"] == 1


def test_idle_apply_looks_up_no_approval(
    emulator: GitHubEmulator,
    git_repo: GitRepo,
    github_env: dict[str, str],
    gcp: GcpEmulator,
    tmp_path: Path,
) -> None:
    """Approvals verified once are read back from the reconciler's own signed ledger
    commit (one call to check its signature), never looked up again."""
    git_repo.commit({"policies/p.yaml": POLICY}, "policies", author="admin")
    with_origin(emulator, git_repo, tmp_path)
    merge_pr(emulator, git_repo, "alice", reviewer="dave")
    assert apply(git_repo, gcp, github_env)[0] == 0
    emulator.reset_calls()
    assert apply(git_repo, gcp, github_env)[0] == 0
    assert all(emulator.calls[route] == 0 for route in LOOKUPS), dict(emulator.calls)
    assert emulator.total_calls <= 2, dict(emulator.calls)
    assert members(gcp) == {"user:alice@example.com"}


def test_a_ledger_nobody_can_authenticate_is_not_believed(
    emulator: GitHubEmulator, git_repo: GitRepo, github_env: dict[str, str], gcp: GcpEmulator
) -> None:
    """Without an origin GitHub serves, ledger commits are plain git: anyone could have
    made them, so the approvals on them are verified again on GitHub."""
    git_repo.commit({"policies/p.yaml": POLICY}, "policies", author="admin")
    merge_pr(emulator, git_repo, "alice", reviewer="dave")
    assert apply(git_repo, gcp, github_env)[0] == 0
    emulator.reset_calls()
    assert apply(git_repo, gcp, github_env)[0] == 0
    assert emulator.calls["GET /repos/{o}/{r}/pulls/{n}/reviews"] == 1


def test_a_request_merged_from_someone_elses_pull_request_grants_nothing(
    emulator: GitHubEmulator, git_repo: GitRepo, github_env: dict[str, str], gcp: GcpEmulator
) -> None:
    """pr-check refuses it; if an admin merges past the gate, apply refuses it too."""
    git_repo.commit({"policies/p.yaml": POLICY}, "policies", author="admin")
    merge_pr(emulator, git_repo, "alice", reviewer="dave", author="bob")

    code, out, err = apply(git_repo, gcp, github_env)

    assert code == 1
    assert members(gcp) == set()
    assert "opened by bob, not by the requester alice" in json.dumps(out) + err
