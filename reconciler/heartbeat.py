"""The reconciler's heartbeat: a cheap proof, in the repository itself, that apply ran.

Every successful ``apply`` replaces the branch ``accessctl-heartbeat`` with one parentless
commit (an empty tree; its committer time is the run's time, its message names the run),
so the branch never grows and no ledger commit is made for an idle run. ``git fetch``
brings it to any clone, and ``accessctl heartbeat --max-age 30m`` tells whether the last
successful run is recent: a check that does not depend on the schedule it watches.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler import git
from reconciler.core.timeutil import format_rfc3339
from reconciler.errors import AccessctlError

BRANCH = "accessctl-heartbeat"
REMOTE = "origin"
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree


class HeartbeatError(AccessctlError):
    """The heartbeat could not be written (the run's changes stand)."""

    exit_code = 1


@dataclass(frozen=True)
class Beat:
    commit: str
    at: datetime  # when the run acted (its --at / the clock)
    message: str


def beat(repo: Path, now: datetime, run: str) -> str:
    """Replace the heartbeat branch with one commit dated ``now``; push it (force: the
    branch holds one commit) when there is an ``origin``. Returns the commit."""
    stamp = format_rfc3339(now)
    with tempfile.TemporaryDirectory(prefix="accessctl-heartbeat-") as tmp:
        env = {
            "GIT_INDEX_FILE": str(Path(tmp) / "index"),
            "GIT_AUTHOR_NAME": "accessctl",
            "GIT_AUTHOR_EMAIL": "accessctl@localhost",
            "GIT_COMMITTER_NAME": "accessctl",
            "GIT_COMMITTER_EMAIL": "accessctl@localhost",
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
        }
        tree = git.run(repo, "hash-object", "-t", "tree", "-w", "--stdin", input_bytes=b"")
        assert tree.decode().strip() == _EMPTY_TREE
        message = f"accessctl heartbeat: apply {run} succeeded at {stamp}"
        sha = git.run(repo, "commit-tree", _EMPTY_TREE, "-m", message, env=env).decode().strip()
    git.run(repo, "update-ref", f"refs/heads/{BRANCH}", sha)
    if git.has_remote(repo, REMOTE):
        pushed = git.call(repo, "push", "-q", "--force", REMOTE, f"{sha}:refs/heads/{BRANCH}")
        if not pushed.ok:
            raise HeartbeatError(f"could not push {BRANCH} to {REMOTE}: {pushed.error()}")
        git.call(repo, "update-ref", f"refs/remotes/{REMOTE}/{BRANCH}", sha)
    return sha


def last(repo: Path, *, fetch: bool = True) -> Beat | None:
    """The newest heartbeat this clone can see (origin's, fetched first, or the local
    branch); None when there is none."""
    git.require_repository(repo)
    if fetch and git.has_remote(repo, REMOTE):
        git.call(
            repo, "fetch", "-q", "--no-tags", REMOTE,
            f"+refs/heads/{BRANCH}:refs/remotes/{REMOTE}/{BRANCH}",
        )  # fmt: skip
    beats = [
        b
        for ref in (f"refs/remotes/{REMOTE}/{BRANCH}", f"refs/heads/{BRANCH}")
        if (b := _read(repo, ref)) is not None
    ]
    return max(beats, key=lambda b: b.at, default=None)


def _read(repo: Path, ref: str) -> Beat | None:
    sha = git.resolve(repo, ref)
    if sha is None:
        return None
    raw = git.text(repo, "show", "-s", "--format=%ct%x00%s", sha)
    stamp, _, message = raw.partition("\0")
    if not stamp.isdigit():
        return None
    return Beat(sha, datetime.fromtimestamp(int(stamp), UTC), message)
