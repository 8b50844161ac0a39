"""Reading an access repo's files, from the work tree or from a git commit.

The core never opens files; this module turns a repo into (Config, requests, findings).
Large repos are parsed in parallel (one worker per CPU) since each file is independent.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from reconciler.core import layout
from reconciler.core.loader import MAX_BYTES, load
from reconciler.core.models import AccessRequest, Config
from reconciler.core.policyfile import PolicyFile, check_policy_file, merge_config
from reconciler.core.validate import check_request
from reconciler.errors import AccessctlError, Finding
from reconciler.git import Tree as GitTree
from reconciler.schema import checker, schema

__all__ = ["checker", "schema"]  # re-exported: the schemas come from reconciler.schema

REQUESTS = "requests"
POLICIES = "policies"
POLICY_TESTS = "policies/tests"  # test cases of the policies (accessctl test), not policies
_PARALLEL_FROM = 400  # below this, starting workers costs more than it saves
_PARENT_SHARE = 0.75  # of an equal share: measured on 2 cores with 10,000 requests


class FileSource(Protocol):
    """Where files come from: ``WorkTree(dir)`` or ``GitTree(dir, commit)``."""

    def list(self, prefix: str) -> list[str]:
        """Repo-relative POSIX paths of regular files under ``prefix`` (symlinks included,
        so they can be reported), sorted."""
        ...

    def read(self, path: str) -> bytes: ...

    def is_symlink(self, path: str) -> bool: ...


@dataclass
class LoadedRepo:
    config: Config
    requests: list[AccessRequest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)


class WorkTree:
    """Files on disk under ``root``. Symlinks are listed but never followed or read."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def list(self, prefix: str) -> list[str]:
        prefix = prefix.strip("/")
        if (self.root / prefix).is_symlink():
            return [prefix]
        out: list[str] = []
        stack = [prefix]
        while stack:
            rel = stack.pop()
            try:
                entries = list(os.scandir(self.root / rel))
            except OSError:
                continue
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        stack.append(path)
                else:  # files, symlinks (to files or directories), anything odd: report them
                    out.append(path)
        return sorted(out)

    def read(self, path: str) -> bytes:
        return self.read_limited(path, None)

    def read_limited(self, path: str, limit: int | None) -> bytes:
        """Read a regular file without following symlinks (ELOOP); at most ``limit`` bytes."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(os.path.join(self.root, path), flags)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise OSError(f"{path} is not a regular file")
            want = limit if limit is not None else -1
            chunks: list[bytes] = []
            while want != 0:  # until EOF, or the limit when one is given
                chunk = os.read(fd, (1 << 20) if want < 0 else min(want, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                want = want - len(chunk) if want > 0 else want
            return b"".join(chunks)
        finally:
            os.close(fd)

    def is_symlink(self, path: str) -> bool:
        return (self.root / path).is_symlink()


# --- reading files --------------------------------------------------------------------------


def _read(source: FileSource, path: str) -> tuple[bytes | None, Finding | None]:
    """The bytes of ``path`` (at most one byte over the limit), or a finding why not."""
    try:
        if isinstance(source, WorkTree):
            return source.read_limited(path, MAX_BYTES + 1), None
        if source.is_symlink(path):
            return None, _symlink(path)
        return source.read(path), None
    except OSError as exc:
        if exc.errno == errno.ELOOP or source.is_symlink(path):
            return None, _symlink(path)
        return None, Finding(path, 1, "E-FILE-READ", f"cannot read the file: {_short(exc)}")
    except AccessctlError as exc:
        return None, Finding(path, 1, "E-FILE-READ", f"cannot read the file: {exc}")


def _symlink(path: str) -> Finding:
    return Finding(
        path, 1, "E-FILE-SYMLINK", "symlinks are not allowed here; commit the file itself"
    )


def _short(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _read_all(
    source: FileSource, paths: Sequence[str]
) -> list[tuple[str, bytes | None, Finding | None]]:
    if isinstance(source, GitTree):
        readable = [p for p in paths if source.is_regular(p)]
        try:
            blobs = source.read_many(readable)
        except OSError:
            blobs = {}
        return [(p, blobs[p], None) if p in blobs else (p, *_read(source, p)) for p in paths]
    return [(p, *_read(source, p)) for p in paths]


# --- policies -------------------------------------------------------------------------------


def _is_policy_file(path: str) -> bool:
    return path.endswith((".yaml", ".yml")) and "/" not in path[len(POLICIES) + 1 :]


def load_config(source: FileSource) -> tuple[Config, list[Finding]]:
    """Every ``policies/*.yaml``/``*.yml`` merged; findings for anything wrong."""
    files: list[PolicyFile] = []
    findings: list[Finding] = []
    for path in source.list(POLICIES):
        if path.startswith(POLICY_TESTS + "/"):
            continue
        if not _is_policy_file(path):
            if not path.endswith(".md"):
                findings.append(
                    Finding(
                        path, 1, "E-FILE-LAYOUT", "policy files are policies/<name>.yaml or .yml"
                    )
                )
            continue
        data, problem = _read(source, path)
        if problem is not None or data is None:
            findings.append(problem or Finding(path, 1, "E-FILE-READ", "cannot read the file"))
            continue
        pf = check_policy_file(load(data, path), checker("policy"))
        findings.extend(pf.doc.findings)
        files.append(pf)
    config, merged = merge_config(files)
    return config, findings + merged


# --- requests -------------------------------------------------------------------------------


def request_layout_problem(path: str, mode: str | None = None) -> Finding | None:
    """Why an entry under ``requests/`` is not a request file (None for a request file or
    an allowed note); see reconciler.core.layout."""
    if layout.classify(path, mode) is not layout.Kind.STRAY:
        return None
    problem = layout.stray_problem(path, mode)
    return Finding(path, 1, problem.code, problem.message)


_Parsed = tuple[AccessRequest | None, list[Finding]]


def _parse_requests(root: str | None, items: Sequence[tuple[str, bytes | None]]) -> list[_Parsed]:
    """Load and check request files; ``None`` bytes are read here from the work tree ``root``."""
    out: list[_Parsed] = []
    request_checker = checker("request")
    tree = WorkTree(Path(root)) if root is not None else None
    for path, given in items:
        data = given
        if data is None and tree is not None:
            data, problem = _read(tree, path)
            if problem is not None or data is None:
                out.append((None, [problem] if problem else []))
                continue
        doc = load(data or b"", path)
        out.append((check_request(doc, request_checker), doc.findings))
    return out


def _parse_parallel(root: str | None, items: list[tuple[str, bytes | None]]) -> list[_Parsed]:
    """Split across processes: parsing is CPU-bound and each file is independent."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = min(cpus or 1, 8)
    if workers < 2 or len(items) < _PARALLEL_FROM:
        return _parse_requests(root, items)
    import multiprocessing

    try:
        context = multiprocessing.get_context("fork")
    except ValueError:
        return _parse_requests(root, items)
    checker("request")  # compile once, before forking, so every worker inherits it
    # The parent takes a smaller share: after this it still unpickles and evaluates.
    own = int(len(items) * _PARENT_SHARE / workers)
    size = -(-(len(items) - own) // (workers - 1))
    chunks = [items[:own]] + [items[i : i + size] for i in range(own, len(items), size)]
    with context.Pool(len(chunks) - 1) as pool:
        pending = pool.starmap_async(_parse_requests, [(root, c) for c in chunks[1:]])
        first = _parse_requests(root, chunks[0])  # the parent works too instead of waiting
        rest = pending.get()
    return [r for part in [first, *rest] for r in part]


def load_requests(
    source: FileSource, config: Config, paths: Sequence[str] | None = None
) -> tuple[list[AccessRequest], list[Finding]]:
    """Parse request files (all under ``requests/`` when ``paths`` is None), checking
    layout, schema and the static policy checks that need no approval time.

    Only well-formed files become requests; whether a policy allows each is evaluate()'s
    call (it also refuses a requester that differs from the directory and basic roles).
    """
    del config  # the static checks need no policy; kept for the contract
    candidates = source.list(REQUESTS) if paths is None else sorted(dict.fromkeys(paths))
    findings: list[Finding] = []
    wanted: list[str] = []
    for path in candidates:
        mode = source.mode(path) if isinstance(source, GitTree) else None
        if mode is None and source.is_symlink(path):
            findings.append(_symlink(path))  # a symlink in the work tree (or to a directory)
            continue
        problem = request_layout_problem(path, mode)
        if problem is not None:
            findings.append(problem)
        elif layout.classify(path, mode) is layout.Kind.REQUEST:
            wanted.append(path)
    items: list[tuple[str, bytes | None]] = []
    root = str(source.root) if isinstance(source, WorkTree) else None
    if root is not None:
        items = [(path, None) for path in wanted]  # each worker reads its own share
    else:
        for path, data, problem in _read_all(source, wanted):
            if problem is not None or data is None:
                findings.append(problem or Finding(path, 1, "E-FILE-READ", "cannot read the file"))
            else:
                items.append((path, data))
    requests: list[AccessRequest] = []
    for request, found in _parse_parallel(root, items):
        findings.extend(found)
        if request is not None:
            requests.append(request)
    return requests, findings


def check_stray_file(path: Path, display: str) -> list[Finding]:
    """A file given by hand that lives outside requests/ and policies/: where it belongs,
    and what its content would get as a request."""
    layout = Finding(
        display,
        1,
        "E-FILE-LAYOUT",
        "request files go at requests/<github-login>/<slug>.yaml and policies at "
        "policies/<name>.yaml; this file was checked as a request",
    )
    data, problem = _read(WorkTree(path.parent), path.name)
    if problem is not None or data is None:
        return [
            layout,
            Finding(
                display,
                1,
                problem.code if problem else "E-FILE-READ",
                problem.message if problem else "cannot read the file",
            ),
        ]
    doc = load(data, display)
    check_request(doc, checker("request"))
    return [layout, *doc.findings]


def load_repo(source: FileSource, paths: Iterable[str] | None = None) -> LoadedRepo:
    """Policies always; requests: all of them, or only ``paths`` (a PR's changed files)."""
    config, findings = load_config(source)
    request_paths = None
    if paths is not None:
        request_paths = [p for p in paths if p.startswith(REQUESTS + "/")]
    requests, found = load_requests(source, config, request_paths)
    return LoadedRepo(config, requests, findings + found)
