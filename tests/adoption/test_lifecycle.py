"""An adopter's first request, end to end: `accessctl init` scaffolds the repository, a
request is opened, checked, approved and merged on the GitHub emulator, and `accessctl
apply` grants it on the GCP emulator, as the scaffolded workflows run them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests import support
from tests.support.emulators import running_gcp, running_github

from .conftest import ACTION, run_cli

REPO = "acme/access"
SCOPE = "projects/example-prod"  # the scaffold's example policy
MINE = "requests/alice/inc-4821.yaml"
REQUEST = """\
requester: alice
provider: gcp
scope: projects/example-prod
role: roles/cloudsql.viewer
reason: Investigate INC-4821, slow checkout queries
ticket: INC-4821
duration: 2h
"""


class GitRepo(support.GitRepo):
    author = "admin"
    stage_all = False


@pytest.fixture
def github() -> Iterator[GitHubEmulator]:
    with running_github(REPO) as emu:
        yield emu


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(SCOPE) as emu:
        yield emu


def test_init_then_request_approve_merge_and_apply_grants(
    tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator
) -> None:
    root = tmp_path / "access"
    assert run_cli("init", str(root), "--action", ACTION).code == 0
    repo = GitRepo(root)
    scaffolded = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".git" not in p.parts
    )
    repo.commit({rel: (root / rel).read_text() for rel in scaffolded}, "accessctl init")
    env = {
        "GITHUB_API_URL": github.url,
        "GITHUB_TOKEN": DEFAULT_TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "ACCESSCTL_GCP_ENDPOINT": gcp.url,
    }

    # alice opens a pull request that adds her request
    base = repo.head()
    repo.git("checkout", "-q", "-b", "access/alice/inc-4821")
    head = repo.commit({MINE: REQUEST}, "Request access", author="alice")
    repo.git("checkout", "-q", "main")
    number = github.add_pull(
        REPO, author="alice", head_sha=head, base_sha=base, files=repo.diff(base, head)
    )

    def pr_check() -> int:
        event = tmp_path / "event.json"
        event.write_text(json.dumps({"pull_request": {"number": number}}))
        step = {
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        }
        return run_cli(
            "pr-check", "--repo", str(root), "--format", "json", env={**env, **step}
        ).code

    assert pr_check() == 1  # valid and allowed, waiting for a lead's approval
    github.add_review(REPO, number, "dave", "APPROVED")
    assert pr_check() == 0

    # merged (squash), then the reconciler runs as access-reconcile runs it
    repo.git("merge", "-q", "--squash", "access/alice/inc-4821")
    merged = repo.commit({}, f"Request access (#{number})")
    github.merge(REPO, number, merge_commit_sha=merged)
    applied = run_cli("apply", "--repo", str(root), "--format", "json", "--no-ledger", env=env)
    assert applied.code == 0, applied.stdout + applied.stderr
    assert [g["request"] for g in applied.json["grant"]] == [MINE]
    members = {m for b in gcp.get_policy(SCOPE)["bindings"] for m in b["members"]}
    assert members == {"user:alice@example.com"}
