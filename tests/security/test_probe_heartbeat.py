"""Probes of the reconcile workflow's activity span by someone with write access to
branches who wants a grant's use after its end never reported: they push a heartbeat of
their own, dated after the grant's end (or in the future), before the next scheduled run.
The span's start once came from that branch; it now comes from GitHub's own record of the
workflow's previous successful run (the Actions runs API), which no push can move.

The workflow's own step script (from .github/workflows/access-reconcile.yml) runs in a
fresh clone of a bare origin, as the job's checkout sees it; ``apply`` writes the real
heartbeat and ``activity`` reads the span, both as the CLI; the GCP emulator."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler.core.timeutil import parse_rfc3339
from tests.activity.conftest import access_repo, add_request  # noqa: F401 - a fixture
from tests.audit.conftest import GitRepo, run_cli
from tests.support.emulators import running_gcp, running_github

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github/workflows/access-reconcile.yml"
STEP = "When the previous successful apply ran"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
MINE = "requests/alice/db.yaml"
APPLIED = "2026-12-01T09:05:00Z"  # the real previous apply: alice's grant is active
NOW = "2026-12-01T11:08:00Z"  # this run: her window ended at 11:00, in between


@pytest.fixture
def gcp() -> Iterator[str]:
    with running_gcp("projects/payments-prod", "projects/ledger-prod") as emu:
        yield emu.url


REPO = "acme/access"
PREVIOUS_RUN = "2026-12-01T09:04:00Z"  # the run whose apply granted alice at 09:05


@pytest.fixture
def github() -> Iterator[object]:
    """GitHub's record of the workflow's runs: the previous successful scheduled run on
    main, a later failed one, one on another branch, and this run (in progress)."""
    with running_github(REPO) as emu:
        for branch, started, conclusion in [
            ("main", "2026-12-01T08:49:00Z", "success"),
            ("main", PREVIOUS_RUN, "success"),
            ("main", "2026-12-01T10:50:00Z", "failure"),
            ("mallory-branch", "2026-12-01T11:02:00Z", "success"),
            ("main", "2026-12-01T11:07:00Z", None),
        ]:
            emu.add_workflow_run(
                REPO, "access-reconcile.yml", branch=branch, started_at=started,
                conclusion=conclusion,
            )  # fmt: skip
        yield emu


@pytest.fixture
def origin(access_repo: GitRepo, tmp_path: Path, gcp: str) -> GitRepo:  # noqa: F811
    """main on a bare origin, and the apply of 09:05 that granted alice and left its
    heartbeat there."""
    add_request(access_repo, MINE, "2026-12-01T09:00:00Z")
    remote = GitRepo(tmp_path / "origin.git", bare=True)
    access_repo.git("remote", "add", "origin", str(remote.root))
    access_repo.git("push", "-q", "origin", "main")
    env = {"ACCESSCTL_GCP_ENDPOINT": gcp}
    proc = run_cli(
        "apply", "--repo", str(access_repo.root), "--trust-git", "--at", APPLIED, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert remote.git("log", "-1", "--format=%cI", "accessctl-heartbeat").startswith(
        "2026-12-01T09:05:00"
    )
    return remote


def clone(origin: GitRepo, where: Path) -> GitRepo:
    origin.git("clone", "-q", str(origin.root), str(where))
    return GitRepo(where, init=False)


def forge_heartbeat(origin: GitRepo, tmp_path: Path, date: str) -> None:
    """What anyone who may push branches can do: a commit shaped like the reconciler's
    heartbeat, dated as they like, force-pushed over the branch."""
    mallory = clone(origin, tmp_path / "mallory")
    message = f"accessctl heartbeat: apply 999 succeeded at {date}"
    sha = mallory.git("commit-tree", EMPTY_TREE, "-m", message, when=date, author="accessctl")
    mallory.git("push", "-q", "--force", "origin", f"{sha}:refs/heads/accessctl-heartbeat")


def span_start(job: GitRepo, tmp_path: Path, github) -> str:
    """The workflow step's output ``at``, run as the runner runs it (bash -e), with the
    variables GitHub sets for a scheduled run on main."""
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    [step] = [s for s in doc["jobs"]["apply"]["steps"] if s.get("name") == STEP]
    output = tmp_path / "github_output"
    output.write_text("")
    subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", step["run"]],
        cwd=job.root,
        env={
            "PATH": "/usr/bin:/bin",
            "GITHUB_OUTPUT": str(output),
            "HOME": str(tmp_path),
            "GITHUB_API_URL": github.url,
            "GITHUB_REPOSITORY": REPO,
            "GITHUB_WORKFLOW_REF": f"{REPO}/.github/workflows/access-reconcile.yml@refs/heads/main",
            "GITHUB_REF_NAME": "main",
            "GH_TOKEN": github.token,
        },
        check=True,
    )
    values = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return values["at"]


def reported(job: GitRepo, start: str, gcp: str) -> list[str]:
    """The requests whose grants this run's activity step reports."""
    proc = run_cli(
        "activity",
        "--repo",
        str(job.root),
        "--trust-git",
        "--format",
        "json",
        "--ended-after",
        start,
        "--at",
        NOW,
        env={"ACCESSCTL_GCP_ENDPOINT": gcp},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 2:  # refused outright: nothing reported for the span
        return []
    return [g["request"] for g in json.loads(proc.stdout)["grants"]]


def test_the_span_starts_at_the_previous_successful_run(origin, tmp_path, gcp, github) -> None:
    """The control: the next run's span starts when the previous successful run on main
    started (not a failed run, another branch's, or this one) and reports alice's grant,
    which ended inside it."""
    job = clone(origin, tmp_path / "job")
    start = span_start(job, tmp_path, github)
    assert start == PREVIOUS_RUN
    assert reported(job, start, gcp) == [MINE]


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param("2026-12-01T11:01:00Z", id="just-after-the-end"),
        pytest.param("2099-01-01T00:00:00Z", id="future-dated"),
    ],
)
def test_a_pushed_heartbeat_no_longer_hides_the_grant_that_ended(
    origin, tmp_path, gcp, github, forged
) -> None:
    forge_heartbeat(origin, tmp_path, forged)
    job = clone(origin, tmp_path / "job")
    start = span_start(job, tmp_path, github)
    assert reported(job, start, gcp) == [MINE]  # her grant, which ended at 11:00
    assert parse_rfc3339(start) <= parse_rfc3339(APPLIED)
