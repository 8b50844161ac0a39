"""One pass over a branch's first-parent history: every version of every request file.

``git log --first-parent --raw -z`` lists, per commit that reached the branch, the old and
new blob of each changed path under ``requests/`` and ``policies/``; one ``git cat-file
--batch`` then reads every needed blob. Nothing here runs git once per file or per commit,
so a history of 50,000 commits is read in seconds.

``load_versions`` turns that into parsed request versions, each paired with the policies
as they stood at its own commit (what the reconciler saw then) and, while it is still on
the branch, with the policies at the tip (what plan/apply judge it by today).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from reconciler.core.audit import Removal, Version
from reconciler.core.models import AccessRequest, Config
from reconciler.errors import ConfigError, Finding

T = TypeVar("T")
REQUESTS = "requests/"
POLICIES = "policies/"
_ZERO = "0" * 40
_SYMLINK = "120000"
_GITLINK = "160000"
_HEADER_FIELDS = 6  # sha, parents, author, author time, committer time, subject
_ROUND = 399  # files per load_requests call: below its own multiprocessing threshold
_LOG_FORMAT = "%x01%H%x00%P%x00%an <%ae>%x00%at%x00%ct%x00%s"


@dataclass(frozen=True)
class Commit:
    sha: str
    parents: tuple[str, ...]
    author: str  # "Name <email>"
    authored_at: datetime
    committed_at: datetime
    subject: str

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


@dataclass(frozen=True)
class PathChange:
    """One path changed by one first-parent commit (diffed against its first parent)."""

    commit: Commit
    path: str
    status: str  # A, M, D, T
    old_blob: str | None
    new_blob: str | None  # None when deleted
    new_mode: str

    @property
    def is_symlink(self) -> bool:
        return self.new_mode == _SYMLINK


@dataclass
class History:
    commits: list[Commit] = field(default_factory=list)  # oldest first
    changes: list[PathChange] = field(default_factory=list)  # in commit order


def git(repo: Path, *args: str, input_bytes: bytes | None = None, check: bool = True) -> bytes:
    """Run git in ``repo``; a failure becomes a ConfigError naming the command."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], input=input_bytes, capture_output=True, check=False
        )
    except FileNotFoundError:
        raise ConfigError("git is not installed or not on PATH") from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise ConfigError(f"git {' '.join(args[:2])} failed in {repo}: {err}")
    return proc.stdout


def resolve(repo: Path, ref: str) -> str | None:
    out = git(repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
    return out.decode().strip() or None


def is_shallow(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-shallow-repository", check=False).strip() == b"true"


def read_history(
    repo: Path, ref: str = "HEAD", prefixes: Iterable[str] = (REQUESTS, POLICIES)
) -> History:
    """Every first-parent commit of ``ref`` that changed a path under ``prefixes``.

    A long history is cut into consecutive first-parent ranges read by parallel ``git log``
    processes (diffing trees is git's CPU-bound part); the records are joined in order."""
    if git(repo, "rev-parse", "--git-dir", check=False) == b"":
        raise ConfigError(f"{repo} is not a git repository")
    tip = resolve(repo, ref)
    if tip is None:
        return History()  # an empty repository (no commits yet) has no history
    ranges = _ranges(repo, tip)
    args = [
        "-c",
        "core.quotepath=off",
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--reverse",
        "--raw",
        "-z",
        "--no-renames",
        "--no-abbrev",
        f"--format={_LOG_FORMAT}",
    ]
    if len(ranges) == 1:
        return _parse_log(git(repo, *args, tip, "--", *prefixes))
    with ThreadPoolExecutor(len(ranges)) as pool:
        # oldest range first, so the joined records stay in commit order
        raws = list(pool.map(lambda r: git(repo, *args, *r, "--", *prefixes), ranges))
    return _parse_log(b"".join(raws))


_SPLIT_FROM = 20_000  # first-parent commits; below this one git log is fast enough


def _ranges(repo: Path, tip: str) -> list[tuple[str, ...]]:
    """``[(newest, ^boundary), ...]`` oldest range first, one per CPU, for long histories."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = max(1, min(cpus or 1, 4))
    if parts < 2:
        return [(tip,)]
    commits = git(repo, "rev-list", "--first-parent", tip).split()
    if len(commits) < _SPLIT_FROM:
        return [(tip,)]
    size = -(-len(commits) // parts)
    out: list[tuple[str, ...]] = []
    for start in range(0, len(commits), size):  # newest first
        newest = commits[start].decode()
        below = start + size
        out.append((newest, f"^{commits[below].decode()}") if below < len(commits) else (newest,))
    return out[::-1]


def _parse_log(raw: bytes) -> History:
    history = History()
    pos, end = 0, len(raw)
    while pos < end:
        if raw[pos] != 1:  # \x01 starts each commit record
            pos += 1
            continue
        pos += 1
        fields = []
        for _ in range(_HEADER_FIELDS):
            nul = raw.index(b"\0", pos)
            fields.append(raw[pos:nul].decode("utf-8", "replace"))
            pos = nul + 1
        commit = Commit(
            sha=fields[0],
            parents=tuple(fields[1].split()),
            author=fields[2],
            authored_at=datetime.fromtimestamp(int(fields[3]), UTC),
            committed_at=datetime.fromtimestamp(int(fields[4]), UTC),
            subject=fields[5],
        )
        history.commits.append(commit)
        pos = _parse_raw_entries(raw, pos, commit, history.changes)
    return history


def _parse_raw_entries(raw: bytes, pos: int, commit: Commit, out: list[PathChange]) -> int:
    """``:oldmode newmode oldsha newsha status\\0path\\0`` entries, until the next record."""
    end = len(raw)
    while pos < end and raw[pos] in (10, 0):  # the newline git puts after the header
        pos += 1
    while pos < end and raw[pos] == ord(":"):
        nul = raw.index(b"\0", pos)
        meta = raw[pos + 1 : nul].decode().split()
        path_end = raw.index(b"\0", nul + 1)
        path = raw[nul + 1 : path_end].decode("utf-8", "replace")
        pos = path_end + 1
        old_mode, new_mode, old_sha, new_sha, status = meta[0], meta[1], meta[2], meta[3], meta[4]
        if _GITLINK in (old_mode, new_mode):
            continue
        out.append(
            PathChange(
                commit=commit,
                path=path,
                status=status[:1],
                old_blob=None if old_sha == _ZERO else old_sha,
                new_blob=None if new_sha == _ZERO or status.startswith("D") else new_sha,
                new_mode=new_mode,
            )
        )
        while pos < end and raw[pos] == 10:
            pos += 1
    return pos


def read_blobs(repo: Path, shas: Iterable[str]) -> dict[str, bytes]:
    """Many blobs in one ``git cat-file --batch`` process."""
    wanted = sorted(set(shas))
    if not wanted:
        return {}
    out = git(repo, "cat-file", "--batch", input_bytes=("\n".join(wanted) + "\n").encode())
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


def is_request_path(path: str) -> bool:
    return path.startswith(REQUESTS) and path.endswith((".yaml", ".yml"))


def is_policy_path(path: str) -> bool:
    return path.startswith(POLICIES) and path.endswith((".yaml", ".yml"))


class MemorySource:
    """A FileSource over bytes already in memory (one commit's policies, one request)."""

    def __init__(self, files: Mapping[str, bytes], symlinks: Iterable[str] = ()) -> None:
        self.files = dict(files)
        self.symlinks = set(symlinks)

    def list(self, prefix: str) -> list[str]:
        return sorted(p for p in self.files if p.startswith(prefix))

    def read(self, path: str) -> bytes:
        return self.files[path]

    def is_symlink(self, path: str) -> bool:
        return path in self.symlinks


_PolicyKey = frozenset[tuple[str, str]]  # (path, blob) of every policy file at a commit


class _PolicyConfigs:
    """The policies as of some commit, loaded once per distinct set of policy blobs."""

    def __init__(self) -> None:
        self.cache: dict[_PolicyKey, tuple[Config, list[Finding]]] = {}

    def config_for(
        self, key: _PolicyKey, contents: Mapping[str, bytes]
    ) -> tuple[Config, list[Finding]]:
        from reconciler.repo import load_config

        if key not in self.cache:
            files = {p: contents.get(b, b"") for p, b in key}
            self.cache[key] = load_config(MemorySource(files))
        return self.cache[key]


def load_versions(repo: Path, ref: str = "HEAD", *, current_only: bool = False) -> list[Version]:
    """Every version of every request file that reached ``ref``, oldest first, each parsed
    and paired with the policies of its commit and with what ended it (edit or delete).
    ``current_only``: just the versions still on the branch (nothing else is parsed)."""
    return map_versions(repo, ref, list, current_only=current_only)


def map_versions(
    repo: Path,
    ref: str,
    fn: Callable[[list[Version]], list[T]],
    *,
    workers: int | None = None,
    current_only: bool = False,
) -> list[T]:
    """``fn`` applied to consecutive chunks of the versions, concatenated in order.

    Parsing and judging tens of thousands of versions is CPU-bound and each version is
    independent, so large histories are split across forked workers: each parses its
    chunk and applies ``fn`` there, and only ``fn``'s results travel back."""
    history = read_history(repo, ref)
    needed = [
        c.new_blob
        for c in history.changes
        if c.new_blob and (is_request_path(c.path) or is_policy_path(c.path))
    ]
    # A merge's author is whoever pressed the button (or GitHub); the request's author is
    # the author of the merged branch's head: its commit object is read in the same batch.
    heads = [
        c.commit.parents[1]
        for c in history.changes
        if c.commit.is_merge and is_request_path(c.path)
    ]
    contents = read_blobs(repo, [*needed, *heads])
    pending, tip = _scan(history)
    if current_only:
        # Deleted versions stay too: `status` shows an early revocation until its window
        # would have ended. Superseded versions (edited since) are audit-only.
        pending = [p for p in pending if p.removal is None or p.removal.deleted]
    count = _worker_count(len(pending), workers)
    if count < 2:
        return fn(_build(pending, contents, tip))
    global _JOB
    _JOB = (pending, contents, tip, fn)
    size = -(-len(pending) // count)
    bounds = [(i, min(i + size, len(pending))) for i in range(0, len(pending), size)]
    try:
        # Not multiprocessing.Pool: its daemonic workers could not start the loader's own.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(len(bounds), mp_context=context) as pool:
            parts = list(pool.map(_run_chunk, bounds))
    finally:
        _JOB = None
    return [item for part in parts for item in part]


_PARALLEL_FROM = 4000  # versions; below this, forking costs more than it saves
_JOB: (
    tuple[list[_Pending], Mapping[str, bytes], _PolicyKey, Callable[[list[Version]], list[Any]]]
    | None
) = None


def _worker_count(versions: int, workers: int | None) -> int:
    if workers is not None:
        return workers
    if versions < _PARALLEL_FROM or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, 8))


def _run_chunk(bounds: tuple[int, int]) -> list[Any]:
    assert _JOB is not None  # set by the parent before forking
    pending, contents, tip, fn = _JOB
    return fn(_build(pending[bounds[0] : bounds[1]], contents, tip))


@dataclass
class _Pending:
    """A request version found in the log, before its content is parsed."""

    change: PathChange
    policies: _PolicyKey
    removal: Removal | None = None


def _scan(history: History) -> tuple[list[_Pending], _PolicyKey]:
    """Walk the changes in order: each version, the policies of its commit, its end; and
    the policies at the tip (every first-parent change to policies/ applied, so the same
    set of blobs ``ref`` holds: no extra read of the tree)."""
    policy_blobs: dict[str, str] = {}
    live: dict[str, _Pending] = {}
    pending: list[_Pending] = []
    for change in history.changes:
        if is_policy_path(change.path):
            if change.new_blob is None:
                policy_blobs.pop(change.path, None)
            else:
                policy_blobs[change.path] = change.new_blob
            continue
        if not is_request_path(change.path):
            continue
        previous = live.pop(change.path, None)
        if previous is not None:
            previous.removal = Removal(
                commit=change.commit.sha,
                at=change.commit.committed_at,
                deleted=change.new_blob is None,
            )
        if change.new_blob is not None:
            live[change.path] = _Pending(change, frozenset(policy_blobs.items()))
            pending.append(live[change.path])
    return pending, frozenset(policy_blobs.items())


def _build(
    pending: list[_Pending], contents: Mapping[str, bytes], tip: _PolicyKey
) -> list[Version]:
    policies = _PolicyConfigs()
    # Loaded once (per worker): the cache hands every current version the same Config, so
    # the evaluator's per-Config index is built once too.
    tip_config, tip_findings = policies.config_for(tip, contents)
    tip_broken = any(f.severity == "error" for f in tip_findings)
    out = []
    for item, (request, errors) in zip(pending, _parse_all(pending, contents), strict=True):
        config, config_findings = policies.config_for(item.policies, contents)
        current = item.removal is None
        commit = item.change.commit
        out.append(
            Version(
                path=item.change.path,
                commit=commit.sha,
                author=_branch_author(commit, contents) or commit.author,
                committed_at=commit.committed_at,
                subject=commit.subject,
                merge=commit.is_merge,
                blob=item.change.new_blob or "",
                request=request,
                config=config,
                findings=errors,
                fields=_best_effort_fields(request, contents, item.change),
                config_broken=any(f.severity == "error" for f in config_findings),
                removal=item.removal,
                tip_config=tip_config if current else None,
                tip_config_broken=tip_broken and current,
            )
        )
    return out


def _branch_author(commit: Commit, contents: Mapping[str, bytes]) -> str | None:
    """For a merge commit, the author of its second parent (the pull request's head)."""
    if not commit.is_merge:
        return None
    raw = contents.get(commit.parents[1], b"")
    for line in raw.split(b"\n"):
        if not line:
            break  # end of the commit header
        if line.startswith(b"author "):
            name = line[len(b"author ") :].decode("utf-8", "replace").rsplit(" ", 2)[0]
            return name or None
    return None


_FIELDS = ("requester", "provider", "scope", "role", "reason", "ticket")


def _best_effort_fields(
    request: AccessRequest | None, contents: Mapping[str, bytes], change: PathChange
) -> dict[str, str]:
    """What an invalid file says it asks for, so the trail still shows it; never raises.
    (Only plain top-level strings; the file stays rejected whatever it says.)"""
    if request is not None or change.is_symlink:
        return {}
    text = contents.get(change.new_blob or "", b"")
    if len(text) > 65536:
        return {}
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception:  # anything at all may be in history
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k in _FIELDS if isinstance(v := data.get(k), str) and len(v) <= 1000}


def _parse_all(
    pending: list[_Pending], contents: Mapping[str, bytes]
) -> list[tuple[AccessRequest | None, tuple[str, ...]]]:
    """Parse every version with the loader, in rounds where each path appears once (the
    n-th version of every file in round n), so the loader parses each round in bulk."""
    from reconciler.repo import load_requests

    rounds: list[dict[str, int]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(pending):
        k = seen.get(item.change.path, 0)
        seen[item.change.path] = k + 1
        if k == len(rounds):
            rounds.append({})
        rounds[k][item.change.path] = i
    out: list[tuple[AccessRequest | None, tuple[str, ...]]] = [(None, ())] * len(pending)
    empty = Config()
    # Rounds are cut below the loader's own parallel threshold: we may already be a worker.
    slots = [
        dict(list(r.items())[j : j + _ROUND]) for r in rounds for j in range(0, len(r), _ROUND)
    ]
    for slot in slots:
        files = {p: contents.get(pending[i].change.new_blob or "", b"") for p, i in slot.items()}
        links = [p for p, i in slot.items() if pending[i].change.is_symlink]
        try:
            requests, findings = load_requests(MemorySource(files, links), empty, list(files))
        except Exception as exc:  # history may hold anything; one bad round never stops audit
            requests, findings = [], [Finding(p, 1, "E-LOAD", str(exc)) for p in files]
        by_path = {r.path: r for r in requests}
        errors: dict[str, list[str]] = {}
        for f in findings:
            if f.severity == "error":
                errors.setdefault(f.file, []).append(str(f))
        for path, i in slot.items():
            out[i] = (by_path.get(path), tuple(errors.get(path, ())))
    return out
