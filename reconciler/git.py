"""The one git adapter: every git process accessctl starts is started here.

Everything else (the history reader, the ledger, ``request --open-pr``, the demo) calls
these functions, so how git is run (no prompts, no pager, stable messages, one
``cat-file --batch`` per tree) is decided once. Git reads the repository's objects only:
nothing here runs textconv, filters or hooks from the repository's content.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import ConfigError

REGULAR = "100644"
EXECUTABLE = "100755"
SYMLINK = "120000"
GITLINK = "160000"
TREE = "040000"
ZERO = "0" * 40


class GitError(ConfigError):
    """Git is missing, the directory is not a repository, or a git command failed."""


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace").strip()

    def error(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # Never wait for a password prompt (unattended runs), never page, and keep git's own
    # messages in English so the few we test for ("couldn't find remote ref") stay stable.
    return {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "LC_ALL": "C",
        **(extra or {}),
    }


def call(
    repo: Path,
    *args: str,
    input_bytes: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Completed:
    """Run ``git -C repo args...``; the caller looks at the return code."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            input=input_bytes,
            capture_output=True,
            env=_env(env),
            check=False,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git {' '.join(args[:2])} did not finish within {timeout:.0f}s") from None
    return Completed(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def run(
    repo: Path,
    *args: str,
    input_bytes: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> bytes:
    """Run git and return its output; a failure raises GitError naming the command."""
    done = call(repo, *args, input_bytes=input_bytes, env=env, timeout=timeout)
    if not done.ok:
        raise GitError(f"git {' '.join(args[:2])} failed in {repo}: {done.error()}")
    return done.stdout


def text(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """The stripped output of a git command that may fail (empty string then)."""
    done = call(repo, *args, env=env)
    return done.text() if done.ok else ""


# -- repository facts ----------------------------------------------------------------


def is_repository(repo: Path) -> bool:
    return call(repo, "rev-parse", "--git-dir").ok


def require_repository(repo: Path) -> None:
    if not is_repository(repo):
        raise GitError(f"{repo} is not a git repository (run accessctl inside the access repo)")


def resolve(repo: Path, ref: str) -> str | None:
    """The commit ``ref`` names, or None (no such ref, or a repository without commits)."""
    done = call(repo, "rev-parse", "--verify", "-q", "--end-of-options", f"{ref}^{{commit}}")
    return done.text() or None if done.ok else None


def commit_exists(repo: Path, sha: str) -> bool:
    return call(repo, "cat-file", "-e", f"{sha}^{{commit}}").ok


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    return call(repo, "merge-base", "--is-ancestor", older, newer).ok


def current_branch(repo: Path) -> str:
    return text(repo, "symbolic-ref", "-q", "--short", "HEAD") or "HEAD"


def is_shallow(repo: Path) -> bool:
    return text(repo, "rev-parse", "--is-shallow-repository") == "true"


def shallow_commits(repo: Path) -> set[str]:
    """The boundary commits of a shallow clone (empty for a full clone)."""
    if not is_shallow(repo):
        return set()
    path = Path(text(repo, "rev-parse", "--git-path", "shallow"))
    if not path.is_absolute():
        path = repo / path
    try:
        return set(path.read_text().split())
    except OSError:
        return {"unknown"}


def remote_url(repo: Path, remote: str = "origin") -> str | None:
    return text(repo, "remote", "get-url", remote) or None


def remote_repository(repo: Path, remote: str = "origin") -> str | None:
    """``owner/name`` from the remote's URL (https or ssh), or None."""
    m = re.search(r"[:/]([^/:]+/[^/]+?)(?:\.git)?/?$", remote_url(repo, remote) or "")
    return m.group(1) if m else None


def has_remote(repo: Path, remote: str = "origin") -> bool:
    return remote in text(repo, "remote").split()


def config_value(repo: Path, key: str) -> str:
    return text(repo, "config", key)


# -- objects ---------------------------------------------------------------------------


def read_blobs(repo: Path, shas: Iterable[str]) -> dict[str, bytes]:
    """Many objects in one ``git cat-file --batch`` process; missing ones are left out."""
    wanted = sorted(set(shas))
    if not wanted:
        return {}
    out = run(repo, "cat-file", "--batch", input_bytes=("\n".join(wanted) + "\n").encode())
    blobs: dict[str, bytes] = {}
    pos = 0
    for sha in wanted:
        nl = out.index(b"\n", pos)
        header = out[pos:nl].split()
        pos = nl + 1
        if len(header) < 3 or header[1] == b"missing":
            continue
        size = int(header[2])
        blobs[sha] = out[pos : pos + size]
        pos += size + 1  # content is followed by a newline
    return blobs


def ls_tree(repo: Path, commit: str, *paths: str) -> dict[str, tuple[str, str]]:
    """``path -> (mode, sha)`` of every entry at ``commit`` (recursively, under ``paths``)."""
    args = ["ls-tree", "-r", "-z", "--full-tree", commit]
    if paths:
        args += ["--", *paths]
    entries: dict[str, tuple[str, str]] = {}
    for record in run(repo, *args).split(b"\0"):
        if not record:
            continue
        meta, _, name = record.partition(b"\t")
        mode, _kind, sha = meta.decode().split()
        entries[name.decode("utf-8", "surrogateescape")] = (mode, sha)
    return entries


class Tree:
    """The files of one commit (a PR's base or head, the branch tip), read through one
    long-lived ``git cat-file --batch`` process. Only regular files are ever read."""

    def __init__(self, root: Path, commit: str) -> None:
        self.root = Path(root)
        self.commit = commit
        self._entries: dict[str, tuple[str, str]] | None = None  # path -> (mode, sha)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def entries(self) -> dict[str, tuple[str, str]]:
        if self._entries is None:
            self._entries = ls_tree(self.root, self.commit)
        return self._entries

    def mode(self, path: str) -> str | None:
        entry = self.entries().get(path)
        return entry[0] if entry else None

    def list(self, prefix: str) -> list[str]:
        prefix = prefix.rstrip("/")
        return sorted(p for p in self.entries() if p == prefix or p.startswith(prefix + "/"))

    def blob(self, path: str) -> str | None:
        """The blob SHA of ``path`` at the commit (None when absent)."""
        entry = self.entries().get(path)
        return entry[1] if entry else None

    def is_symlink(self, path: str) -> bool:
        return self.mode(path) == SYMLINK

    def is_regular(self, path: str) -> bool:
        return self.mode(path) in (REGULAR, EXECUTABLE)

    def read(self, path: str) -> bytes:
        entry = self.entries().get(path)
        if entry is None:
            raise FileNotFoundError(f"{path} does not exist at {self.commit}")
        if not self.is_regular(path):
            raise OSError(f"{path} is not a regular file at {self.commit} (mode {entry[0]})")
        found = self.read_many([path])
        if path not in found:
            raise FileNotFoundError(f"{path}: git cannot read its blob {entry[1]}")
        return found[path]

    def read_many(self, paths: Sequence[str]) -> dict[str, bytes]:
        """Many blobs through the one batch process, requests written while replies are
        read. Paths git cannot read are left out."""
        shas = [self.entries()[p][1] for p in paths]
        out: dict[str, bytes] = {}
        with self._lock:
            proc = self._batch()
            assert proc.stdin is not None and proc.stdout is not None
            writer = threading.Thread(target=_write_lines, args=(proc.stdin, shas), daemon=True)
            writer.start()
            try:
                for path in paths:
                    header = proc.stdout.readline().split()
                    if len(header) == 3:
                        out[path] = proc.stdout.read(int(header[2]))
                        proc.stdout.read(1)  # the newline after each object
                    elif not header:  # the process died: start afresh next time
                        raise OSError("git cat-file --batch stopped")
            except (OSError, ValueError):
                self._stop()
                raise
            finally:
                writer.join(timeout=10)
        return out

    def _batch(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            try:
                self._proc = subprocess.Popen(
                    ["git", "-C", str(self.root), "cat-file", "--batch"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=_env(None),
                )
            except FileNotFoundError:
                raise GitError("git is not installed or not on PATH") from None
        return self._proc

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin:
                self._proc.stdin.close()
            self._proc.wait(timeout=10)
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing to report to
            self.close()


def _write_lines(stream: Any, lines: Sequence[str]) -> None:
    with contextlib.suppress(OSError, ValueError):  # the reader reports a dead process
        stream.write("".join(f"{line}\n" for line in lines).encode())
        stream.flush()
