"""The one history reader: every version of every request file on a branch, for every command.

``git log --first-parent --raw -z`` lists, per commit that reached the branch, the old and
new blob and mode of each changed path under ``requests/`` (in any letter case) and
``policies/``; one ``git cat-file --batch`` then reads every needed blob. Nothing here runs
git once per file or per commit, so a history of 50,000 commits is read in seconds.

Every path is classified once (``reconciler.core.layout``): only regular files at
``requests/<login>/<slug>.yaml|yml`` are request versions. Notes, gitlinks, symlinks,
executables and odd names are never parsed; the ones still on the branch are reported as
``strays``. plan/apply, status, audit and pr-check all read the branch through here.

``load_versions`` turns that into parsed request versions, each paired with the policies
as they stood at its own commit (what the reconciler saw then) and, while it is still on
the branch, with the policies at the tip (what plan/apply judge it by today).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from reconciler import git
from reconciler.approvals import FileChange
from reconciler.core import layout
from reconciler.core.judgment import Removal, Version
from reconciler.core.models import AccessRequest, Config
from reconciler.errors import ConfigError, Finding

T = TypeVar("T")
REQUESTS = layout.REQUESTS_DIR
POLICIES = layout.POLICIES_DIR
# Case variants (Requests/) are read too, only to be classified and reported.
_PATHSPECS = (":(icase)requests/", POLICIES)
_ZERO = git.ZERO
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
    old_mode: str = git.ZERO[:6]

    @property
    def kind(self) -> layout.Kind:
        """What the path holds after this change (a deleted path: what it held before)."""
        mode = self.old_mode if self.new_blob is None else self.new_mode
        return layout.classify(self.path, mode)

    @property
    def was_request(self) -> bool:
        return self.old_blob is not None and layout.classify(self.path, self.old_mode) is (
            layout.Kind.REQUEST
        )

    @property
    def is_request(self) -> bool:
        """This change leaves a request version at the path."""
        return self.new_blob is not None and (
            layout.classify(self.path, self.new_mode) is layout.Kind.REQUEST
        )


@dataclass(frozen=True)
class Stray:
    """An entry under requests/ on the branch that is not a request file: never read."""

    path: str
    mode: str
    commit: str  # the first-parent commit that last put it there

    def finding(self) -> Finding:
        problem = layout.stray_problem(self.path, self.mode)
        return Finding(
            self.path,
            1,
            problem.code,
            f"{problem.message}; accessctl ignores it (added in {self.commit[:12]})",
            severity="warning",
        )


@dataclass
class History:
    commits: list[Commit] = field(default_factory=list)  # oldest first
    changes: list[PathChange] = field(default_factory=list)  # in commit order


def resolve(repo: Path, ref: str) -> str | None:
    return git.resolve(repo, ref)


def is_shallow(repo: Path) -> bool:
    return git.is_shallow(repo)


def read_history(repo: Path, ref: str = "HEAD", prefixes: Iterable[str] = _PATHSPECS) -> History:
    """Every first-parent commit of ``ref`` that changed a path under ``prefixes``.

    A long history is cut into consecutive first-parent ranges read by parallel ``git log``
    processes (diffing trees is git's CPU-bound part); the records are joined in order."""
    git.require_repository(repo)
    tip = git.resolve(repo, ref)
    if tip is None:
        if ref != "HEAD":
            raise ConfigError(f"{ref!r} is not a branch, tag or commit in {repo}")
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
        return _parse_log(git.run(repo, *args, tip, "--", *prefixes))
    with ThreadPoolExecutor(len(ranges)) as pool:
        # oldest range first, so the joined records stay in commit order
        raws = list(pool.map(lambda r: git.run(repo, *args, *r, "--", *prefixes), ranges))
    return _parse_log(b"".join(raws))


_SPLIT_FROM = 20_000  # first-parent commits; below this one git log is fast enough


def _ranges(repo: Path, tip: str) -> list[tuple[str, ...]]:
    """``[(newest, ^boundary), ...]`` oldest range first, one per CPU, for long histories."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = max(1, min(cpus or 1, 4))
    if parts < 2:
        return [(tip,)]
    commits = git.run(repo, "rev-list", "--first-parent", tip).split()
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
        # Gitlinks, symlinks and other modes are kept: classification decides what they
        # are, and nothing but a regular request file is ever read.
        out.append(
            PathChange(
                commit=commit,
                path=path,
                status=status[:1],
                old_blob=None if old_sha == _ZERO else old_sha,
                new_blob=None if new_sha == _ZERO or status.startswith("D") else new_sha,
                new_mode=new_mode,
                old_mode=old_mode,
            )
        )
        while pos < end and raw[pos] == 10:
            pos += 1
    return pos


def read_blobs(repo: Path, shas: Iterable[str]) -> dict[str, bytes]:
    return git.read_blobs(repo, shas)


def is_request_path(path: str) -> bool:
    """A request file's name (its mode decides the rest: see PathChange.is_request)."""
    return layout.is_request_name(path)


def is_policy_path(path: str) -> bool:
    return layout.is_policy_name(path)


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
    pending, tip, _ = _scan(history)
    contents = _contents(repo, history)
    return _map_pending(pending, contents, tip, fn, workers=workers, current_only=current_only)


def _contents(repo: Path, history: History) -> dict[str, bytes]:
    """Every request and policy blob the history names, in one batch. A merge's author is
    whoever pressed the button (or GitHub); the request's author is the author of the
    merged branch's head: its commit object is read in the same batch."""
    needed = [c.new_blob for c in history.changes if c.new_blob and c.kind in _READ]
    heads = [c.commit.parents[1] for c in history.changes if c.commit.is_merge and c.is_request]
    return read_blobs(repo, [*needed, *heads])


_READ = frozenset({layout.Kind.REQUEST, layout.Kind.POLICY})


def _map_pending(
    pending: list[_Pending],
    contents: Mapping[str, bytes],
    tip: _PolicyKey,
    fn: Callable[[list[Version]], list[T]],
    *,
    workers: int | None,
    current_only: bool,
    policies: _PolicyConfigs | None = None,
) -> list[T]:
    if current_only:
        # Deleted versions stay too: `status` shows an early revocation until its window
        # would have ended. Superseded versions (edited since) are audit-only, but for
        # those that may be break-glass: an edit must not hide a follow-up review still
        # owed (a byte test, so that only they are parsed; the judgment decides).
        pending = [
            p
            for p in pending
            if p.removal is None
            or p.removal.deleted
            or b"break_glass" in contents.get(p.change.new_blob or "", b"")
        ]
    count = _worker_count(len(pending), workers)
    if count < 2:
        return fn(_build(pending, contents, tip, policies))
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


def _scan(history: History) -> tuple[list[_Pending], _PolicyKey, list[Stray]]:
    """Walk the changes in order: each request version, the policies of its commit, its
    end; the policies at the tip (every first-parent change to policies/ applied, so the
    same set of blobs ``ref`` holds: no extra read of the tree); and the entries under
    requests/ at the tip that are not request files. A request file replaced by anything
    that is not a request file (a symlink, a gitlink) ends its version like a deletion."""
    policy_blobs: dict[str, str] = {}
    live: dict[str, _Pending] = {}
    strays: dict[str, Stray] = {}
    pending: list[_Pending] = []
    for change in history.changes:
        if layout.is_policy_name(change.path):
            if change.kind is layout.Kind.POLICY and change.new_blob is not None:
                policy_blobs[change.path] = change.new_blob
            else:
                policy_blobs.pop(change.path, None)
            continue
        strays.pop(change.path, None)
        if change.new_blob is not None and change.kind is layout.Kind.STRAY:
            strays[change.path] = Stray(change.path, change.new_mode, change.commit.sha)
        previous = live.pop(change.path, None)
        if previous is not None:
            previous.removal = Removal(
                commit=change.commit.sha,
                at=change.commit.committed_at,
                deleted=not change.is_request,
                author=change.commit.author,
            )
        if change.is_request:
            live[change.path] = _Pending(change, frozenset(policy_blobs.items()))
            pending.append(live[change.path])
    return pending, frozenset(policy_blobs.items()), sorted(strays.values(), key=lambda s: s.path)


def _build(
    pending: list[_Pending],
    contents: Mapping[str, bytes],
    tip: _PolicyKey,
    policies: _PolicyConfigs | None = None,
) -> list[Version]:
    policies = policies or _PolicyConfigs()
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
    if request is not None:
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
) -> list[tuple[AccessRequest | None, tuple[Finding, ...]]]:
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
    out: list[tuple[AccessRequest | None, tuple[Finding, ...]]] = [(None, ())] * len(pending)
    empty = Config()
    # Rounds are cut below the loader's own parallel threshold: we may already be a worker.
    slots = [
        dict(list(r.items())[j : j + _ROUND]) for r in rounds for j in range(0, len(r), _ROUND)
    ]
    for slot in slots:
        files = {p: contents.get(pending[i].change.new_blob or "", b"") for p, i in slot.items()}
        try:
            requests, findings = load_requests(MemorySource(files), empty, list(files))
        except Exception as exc:  # history may hold anything; one bad round never stops audit
            requests, findings = [], [Finding(p, 1, "E-LOAD", str(exc)) for p in files]
        by_path = {r.path: r for r in requests}
        errors: dict[str, list[Finding]] = {}
        for f in findings:
            if f.severity == "error":
                errors.setdefault(f.file, []).append(f)
        for path, i in slot.items():
            out[i] = (by_path.get(path), tuple(errors.get(path, ())))
    return out


@dataclass
class Branch:
    """A branch as every command reads it: its request versions (oldest first), the
    policies at its tip, and what under requests/ is not a request file."""

    repo: Path
    ref: str
    tip: str | None
    versions: list[Version]
    strays: list[Stray]
    config: Config
    config_findings: list[Finding]
    unreliable: frozenset[str] = frozenset()  # current files last changed at a shallow boundary

    def current(self) -> list[Version]:
        """The versions the branch holds now (one per request file)."""
        return [v for v in self.versions if v.removal is None]

    def changes(self) -> dict[str, FileChange]:
        """Per request file on the branch: the first-parent commit that last changed it."""
        return {
            v.path: FileChange(v.path, v.commit, v.blob, v.committed_at, v.author)
            for v in self.current()
        }

    def request_paths(self) -> frozenset[str]:
        """Every path that ever held a request file on this branch."""
        return frozenset(v.path for v in self.versions)

    def former_scopes(self) -> dict[tuple[str, str], datetime]:
        """``(provider, scope)`` named by valid versions that were edited or deleted ->
        the latest time such a version was replaced. Invalid files name nothing: they
        never granted anything, and their text must not steer what is observed."""
        out: dict[tuple[str, str], datetime] = {}
        for v in self.versions:
            if v.removal is None or v.request is None or v.findings:
                continue
            key = (v.request.provider, v.request.scope)
            out[key] = max(out.get(key, v.removal.at), v.removal.at)
        return out

    def check_complete(self) -> None:
        """Raise when a current file's last change lies beyond a shallow clone's boundary
        (its approval time would be the boundary's, not the merge's)."""
        if self.unreliable:
            some = ", ".join(sorted(self.unreliable)[:3])
            raise ConfigError(
                "git history is shallow: the last change of "
                f"{len(self.unreliable)} request file(s) ({some}) was not fetched, so their "
                "approval time is unknown. Fetch full history (actions/checkout with "
                "fetch-depth: 0, or git fetch --unshallow)."
            )


def load_branch(repo: Path, ref: str = "HEAD") -> Branch:
    """Read ``ref``'s whole first-parent history once and parse every request version."""
    history = read_history(repo, ref)
    pending, tip, strays = _scan(history)
    contents = _contents(repo, history)
    policies = _PolicyConfigs()
    config, findings = policies.config_for(tip, contents)
    versions = _map_pending(
        pending, contents, tip, list, workers=None, current_only=False, policies=policies
    )
    boundary = git.shallow_commits(repo) if history.commits else set()
    unreliable = frozenset(
        v.path
        for v in versions
        if v.removal is None and (v.commit in boundary or "unknown" in boundary)
    )
    tip_sha = history.commits[-1].sha if history.commits else git.resolve(repo, ref)
    return Branch(repo, ref, tip_sha, versions, strays, config, list(findings), unreliable)
