"""Reading request history from git in one pass: last change per file, and old versions.

One ``git log --first-parent --raw -z`` over ``requests/`` yields, per path, the commit that
last changed it on the current branch (its committer time is ``approved_at`` under
``--trust-git``) and every older blob, whose provider/scope tell the reconciler where
bindings of deleted or edited requests may still sit.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from reconciler.approvals import FileChange
from reconciler.errors import ConfigError

_NULL_SHA = "0" * 40
_PROVIDER = re.compile(rb"^provider:\s*['\"]?([A-Za-z0-9_-]+)", re.MULTILINE)
_SCOPE = re.compile(rb"^scope:\s*['\"]?([^'\"#\s]+)", re.MULTILINE)


class HistoryError(ConfigError):
    """Git history is missing or unreadable (not a repository, shallow clone...)."""


@dataclass
class History:
    """What one pass over the branch's first-parent history says about ``requests/``."""

    changes: dict[str, FileChange] = field(default_factory=dict)  # files present at ref
    deleted: dict[str, FileChange] = field(default_factory=dict)  # path -> deleting commit
    # blobs of earlier versions -> when they were last replaced or deleted on the branch
    old_blobs: dict[str, datetime] = field(default_factory=dict)
    shallow: bool = False
    unreliable: set[str] = field(default_factory=set)  # last change at a shallow boundary


def _git(repo: Path, *args: str, input_bytes: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=input_bytes,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        raise HistoryError("git is not installed or not on PATH") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip()
        raise HistoryError(f"git {args[0]} failed in {repo}: {msg}")
    return proc.stdout


def head_commit(repo: Path, ref: str = "HEAD") -> str | None:
    """The commit ``ref`` points at; None in a repository without commits."""
    if not (repo / ".git").exists():
        _git(repo, "rev-parse", "--git-dir")  # raises a clear error when not a repository
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.decode().strip() or None


def current_branch(repo: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "symbolic-ref", "-q", "--short", "HEAD"],
        capture_output=True,
        check=False,
    )
    return proc.stdout.decode().strip() or "HEAD"


def _shallow_commits(repo: Path) -> set[str]:
    if _git(repo, "rev-parse", "--is-shallow-repository").strip() != b"true":
        return set()
    path = Path(_git(repo, "rev-parse", "--git-path", "shallow").decode().strip())
    if not path.is_absolute():
        path = repo / path
    try:
        return set(path.read_text().split())
    except OSError:
        return {"unknown"}


def read_history(repo: Path, prefix: str = "requests/", ref: str = "HEAD") -> History:
    """Walk ``ref``'s first-parent history once; newest first, so the first time a path
    is seen is its last change."""
    history = History()
    if head_commit(repo, ref) is None:
        return history
    shallow = _shallow_commits(repo)
    history.shallow = bool(shallow)
    out = _git(
        repo,
        "-c",
        "core.quotepath=off",
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--no-renames",
        "--raw",
        "--no-abbrev",
        "-z",
        "--format=%x01%H %ct %an <%ae>",
        ref,
        "--",
        prefix,
    )
    _parse_log(out, history, shallow)
    return history


def _parse_log(out: bytes, history: History, shallow: set[str]) -> None:
    tokens = out.split(b"\0")
    commit, when, author = "", datetime.min.replace(tzinfo=UTC), ""
    i = 0
    while i < len(tokens):
        token = tokens[i].lstrip(b"\n")
        i += 1
        if token.startswith(b"\x01"):
            sha, stamp, author = token[1:].decode("utf-8", "replace").split(" ", 2)
            commit, when = sha, datetime.fromtimestamp(int(stamp), UTC)
            continue
        if not token.startswith(b":") or i >= len(tokens):
            continue
        meta = token[1:].decode().split()
        path = tokens[i].decode("utf-8", "surrogateescape")
        i += 1
        change = FileChange(path, commit, meta[3], when, author)
        _record(history, change, old=meta[2], status=meta[4], shallow=shallow)


def _record(
    history: History, change: FileChange, *, old: str, status: str, shallow: set[str]
) -> None:
    path = change.path
    seen = path in history.changes or path in history.deleted
    if old != _NULL_SHA:
        # Every earlier version shows up as the "old" side of the change that replaced it.
        known = history.old_blobs.get(old)
        history.old_blobs[old] = max(known, change.committed_at) if known else change.committed_at
    if seen:
        return
    if status.startswith("D"):
        history.deleted[path] = replace(change, blob=old)
        return
    history.changes[path] = change
    if change.commit in shallow or "unknown" in shallow:
        history.unreliable.add(path)


def last_changes(repo: Path, prefix: str = "requests/", ref: str = "HEAD") -> dict[str, FileChange]:
    """Per file under ``prefix`` at ``ref``: the first-parent commit that last changed it.

    Raises HistoryError on a shallow clone when a file's last change lies beyond the
    history that was fetched (its time would be the clone boundary's, not the merge's).
    """
    history = read_history(repo, prefix, ref)
    check_complete(history)
    return history.changes


def check_complete(history: History) -> None:
    if history.unreliable:
        some = ", ".join(sorted(history.unreliable)[:3])
        raise HistoryError(
            "git history is shallow: the last change of "
            f"{len(history.unreliable)} request file(s) ({some}) was not fetched, so their "
            "approval time is unknown. Fetch full history (actions/checkout with "
            "fetch-depth: 0, or git fetch --unshallow)."
        )


def blob_scopes(repo: Path, blobs: Mapping[str, datetime]) -> dict[tuple[str, str], datetime]:
    """``(provider, scope)`` named by each blob -> the latest time such a version was
    replaced, read with one ``git cat-file --batch``; blobs that do not parse are skipped
    (they never granted anything)."""
    if not blobs:
        return {}
    ordered = sorted(blobs)
    out = _git(repo, "cat-file", "--batch", input_bytes=("\n".join(ordered) + "\n").encode())
    scopes: dict[tuple[str, str], datetime] = {}
    pos = 0
    for blob in ordered:
        eol = out.index(b"\n", pos)
        header = out[pos:eol].split()
        pos = eol + 1
        if len(header) < 3 or header[1] != b"blob":
            continue
        size = int(header[2])
        body = out[pos : pos + size]
        pos += size + 1
        scope = _tolerant_scope(body)
        if scope:
            when = blobs[blob]
            scopes[scope] = max(scopes.get(scope, when), when)
    return scopes


def _tolerant_scope(body: bytes) -> tuple[str, str] | None:
    provider, scope = _PROVIDER.search(body), _SCOPE.search(body)
    if not provider or not scope:
        return None
    return provider[1].decode("ascii", "replace"), scope[1].decode("utf-8", "replace")


def historical_scopes(
    repo: Path, prefix: str = "requests/", ref: str = "HEAD"
) -> set[tuple[str, str]]:
    """Where earlier versions of request files (edited or deleted) asked for access."""
    history = read_history(repo, prefix, ref)
    return set(blob_scopes(repo, history.old_blobs))
