"""The ledger: what ``apply`` did, as JSON lines on a dedicated branch (never on main).

Each apply that changed something appends one line per change to
``ledger/<YYYY-MM>.jsonl`` on the branch ``accessctl-ledger`` in ONE commit, built with
git plumbing (hash-object, a throw-away index, commit-tree, update-ref with the old value)
so the work tree, the index and main are never touched. With a remote, the commit is
pushed without force; when another run pushed first, the lines are re-applied on the new
tip and the push retried. Lines carry a unique id, so a retry never duplicates one.

```json
{"id": "run-42:0", "time": "2026-12-01T09:10:00Z", "action": "grant", "ok": true,
 "provider": "gcp", "scope": "projects/payments-prod", "role": "roles/cloudsql.viewer",
 "principal": "user:alice@example.com", "request": "requests/alice/inc-4821.yaml",
 "begin": "2026-12-01T09:00:00Z", "end": "2026-12-01T11:00:00Z", "message": "",
 "cloud_request_id": null, "verified": true, "reason": "approved, in window",
 "run": "run-42", "commit": "3f2a..."}
```
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from reconciler import git
from reconciler.core.audit import LedgerEntry
from reconciler.core.models import ChangeKind, ChangeResult
from reconciler.core.timeutil import format_rfc3339, parse_rfc3339
from reconciler.errors import AccessctlError
from reconciler.retry import Backoff, retrying
from reconciler.sinks import Decided

DEFAULT_BRANCH = "accessctl-ledger"
REMOTE = "origin"
LEDGER_DIR = "ledger/"
MAX_ATTEMPTS = 6
_BRANCH_README = b"""# accessctl ledger

Written by `accessctl apply`, one commit per run that changed something: one JSON line per
grant or revoke, with the cloud's answer. Do not edit by hand; protect this branch so only
the reconciler's identity may push and nobody may force-push or delete it.
Read it with `accessctl audit`.
"""


class _Raced(AccessctlError):
    """Another writer moved the ledger between our read and our update: rebuild, retry."""


class LedgerError(AccessctlError):
    """The ledger could not be written (the cloud changes themselves were made)."""

    exit_code = 1


def _git(
    repo: Path,
    *args: str,
    input_bytes: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> git.Completed:
    proc = git.call(repo, *args, input_bytes=input_bytes, env=env)
    if check and not proc.ok:
        raise LedgerError(f"ledger: git {args[0]} failed: {proc.error()}")
    return proc


def _out(proc: git.Completed) -> str:
    return proc.text()


def _rev(repo: Path, ref: str) -> str | None:
    proc = _git(repo, "rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
    return _out(proc) or None


def _has_remote(repo: Path) -> bool:
    return REMOTE in _out(_git(repo, "remote", check=False)).split()


def default_run(repo: Path) -> dict[str, object]:
    """Who is writing: the Actions run when there is one, else a random id; and the
    commit of the access repo the plan was made from."""
    run_id = os.environ.get("GITHUB_RUN_ID")
    attempt = os.environ.get("GITHUB_RUN_ATTEMPT", "1")
    run: dict[str, object] = {
        "id": f"gha-{run_id}-{attempt}" if run_id else f"local-{uuid.uuid4().hex[:12]}",
        "commit": _rev(repo, "HEAD") or "",
    }
    server, repository = os.environ.get("GITHUB_SERVER_URL"), os.environ.get("GITHUB_REPOSITORY")
    if run_id and server and repository:
        run["url"] = f"{server}/{repository}/actions/runs/{run_id}"
    return run


def entry_json(
    item: ChangeResult | Decided, index: int, now: datetime, run: Mapping[str, object]
) -> dict[str, object]:
    decided = item if isinstance(item, Decided) else Decided(item)
    result = decided.result
    grant = result.change.grant
    run_id = str(run.get("id") or "run")
    line: dict[str, object] = {
        "id": f"{run.get('nonce') or run_id}:{index}",
        "time": format_rfc3339(now),
        "action": result.change.kind.value,
        "ok": result.ok,
        "provider": grant.provider,
        "scope": grant.scope,
        "role": grant.role,
        "principal": grant.principal,
        "request": grant.request,
        "pr": grant.pr,
        "begin": format_rfc3339(grant.begin) if grant.begin else None,
        "end": format_rfc3339(grant.end) if grant.end else None,
        "message": result.message,
        "cloud_request_id": result.cloud_request_id,
        "verified": result.verified,
        "reason": result.change.reason,
        "run": run_id,
        "commit": str(run.get("commit") or ""),
    }
    for extra in ("url", "actor"):
        if run.get(extra):
            line[extra] = str(run[extra])
    # The decision behind the change, so the trail reads without the access repository.
    for key in ("requester", "ticket", "policy"):
        value = getattr(decided, key)
        if value is not None:
            line[key] = value
    if decided.reason is not None:
        line["request_reason"] = decided.reason
    if decided.pr is not None:
        line["pr"] = decided.pr
    return line


def record(
    repo: Path,
    results: Sequence[ChangeResult | Decided],
    *,
    now: datetime,
    branch: str = DEFAULT_BRANCH,
    run: Mapping[str, object],
    attempts: int = MAX_ATTEMPTS,
    files: Mapping[str, bytes] | None = None,
) -> str | None:
    """Append one line per grant/revoke result in one commit on ``branch`` (with
    ``files``, the reconciler's own evidence files, replaced in the same commit); push it
    when the repo has an ``origin``. Returns the commit, or None when nothing changed."""
    changes = [
        r
        for r in results
        if (r.result if isinstance(r, Decided) else r).change.kind != ChangeKind.KEEP
    ]
    files = dict(files or {})
    if not changes and not files:
        return None
    branch = _ledger_branch(repo, branch)
    # One id and nonce for every line and retry of this call: retries never duplicate a line,
    # and two calls (a re-run of the same workflow) never collide.
    run = {**run, "id": _run_id(run), "nonce": uuid.uuid4().hex[:16]}
    path = f"{LEDGER_DIR}{now.strftime('%Y-%m')}.jsonl"
    lines = [json.dumps(entry_json(r, i, now, run), sort_keys=False) for i, r in enumerate(changes)]
    remote = _has_remote(repo)
    message = f"ledger: {len(changes)} change(s) by {run.get('id', 'run')}"

    def once() -> str:
        sha = _attempt(repo, branch, path, lines, message=message, remote=remote, files=files)
        if sha is None:
            raise _Raced(branch)
        return sha

    try:
        return retrying(
            once,
            policy=Backoff(attempts=attempts, base=0.2, cap=3.0),
            retryable=lambda exc: isinstance(exc, _Raced),
        )
    except _Raced:
        raise LedgerError(
            f"ledger: could not update {branch} after {attempts} attempts "
            "(another run kept pushing, or the push is not allowed); the cloud changes were made"
        ) from None


def _ledger_branch(repo: Path, branch: str) -> str:
    """Never the checked-out branch (main): passing it means the default ledger branch."""
    head = _out(_git(repo, "symbolic-ref", "-q", "--short", "HEAD", check=False))
    return DEFAULT_BRANCH if not branch or branch in (head, "HEAD") else branch


def _run_id(run: Mapping[str, object]) -> str:
    for key in ("id", "github_run_id"):
        if run.get(key):
            return str(run[key])
    return f"local-{uuid.uuid4().hex[:12]}"


def _attempt(
    repo: Path,
    branch: str,
    path: str,
    lines: list[str],
    *,
    message: str,
    remote: bool,
    files: Mapping[str, bytes],
) -> str | None:
    local_ref = f"refs/heads/{branch}"
    local = _rev(repo, local_ref)
    base = local
    if remote:
        base = _fetch(repo, branch)
        # Lines a previous run committed locally but never pushed are carried over.
        lines = _unpushed(repo, local, base, path) + lines
    sha = _commit_on(repo, base, path, lines, message=message, files=files)
    swap = _git(repo, "update-ref", local_ref, sha, local or "", check=False)
    if swap.returncode != 0:
        return None  # another process moved the local branch: rebuild on its tip
    if not remote:
        return sha
    push = _git(repo, "push", "-q", REMOTE, f"{sha}:{local_ref}", check=False)
    if push.returncode != 0:
        return None  # the remote moved (or refused): fetch and rebuild
    _git(repo, "update-ref", f"refs/remotes/{REMOTE}/{branch}", sha, check=False)
    return sha


def _fetch(repo: Path, branch: str) -> str | None:
    tracking = f"refs/remotes/{REMOTE}/{branch}"
    proc = _git(
        repo, "fetch", "-q", "--no-tags", REMOTE, f"+refs/heads/{branch}:{tracking}", check=False
    )
    if proc.returncode != 0:
        if b"couldn't find remote ref" in proc.stderr:
            return None  # first run: the branch does not exist yet
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise LedgerError(f"ledger: cannot fetch {branch} from {REMOTE}: {err}")
    return _rev(repo, tracking)


def _unpushed(repo: Path, local: str | None, base: str | None, path: str) -> list[str]:
    if local is None or local == base:
        return []
    if base is not None:
        is_ancestor = _git(repo, "merge-base", "--is-ancestor", local, base, check=False)
        if is_ancestor.returncode == 0:
            return []
    remote_lines = set(_lines_at(repo, base)) if base else set()
    return [line for line in _lines_at(repo, local) if line not in remote_lines]


def _lines_at(repo: Path, commit: str) -> list[str]:
    out: list[str] = []
    for content in _ledger_blobs(repo, commit):
        out.extend(line for line in content.decode("utf-8", "replace").splitlines() if line)
    return out


def _commit_on(
    repo: Path,
    base: str | None,
    path: str,
    lines: list[str],
    *,
    message: str,
    files: Mapping[str, bytes],
) -> str:
    existing = b""
    if base is not None:
        shown = _git(repo, "cat-file", "-p", f"{base}:{path}", check=False)
        existing = shown.stdout if shown.returncode == 0 else b""
    have = set(existing.decode("utf-8", "replace").splitlines())
    fresh = [line for line in dict.fromkeys(lines) if line not in have]
    content = existing + "".join(line + "\n" for line in fresh).encode()
    blob = _out(_git(repo, "hash-object", "-w", "--stdin", input_bytes=content))
    with tempfile.TemporaryDirectory(prefix="accessctl-ledger-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **_identity(repo)}
        if base is not None:
            _git(repo, "read-tree", f"{base}^{{tree}}", env=env)
        else:
            readme = _out(_git(repo, "hash-object", "-w", "--stdin", input_bytes=_BRANCH_README))
            _git(
                repo, "update-index", "--add", "--cacheinfo", f"100644,{readme},README.md", env=env
            )
        if lines or base is None:
            _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        for name, content in sorted(files.items()):
            sha = _out(_git(repo, "hash-object", "-w", "--stdin", input_bytes=content))
            _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{sha},{name}", env=env)
        tree = _out(_git(repo, "write-tree", env=env))
        parents = ["-p", base] if base else []
        return _out(_git(repo, "commit-tree", tree, *parents, "-m", message, env=env))


def _identity(repo: Path) -> dict[str, str]:
    """The configured git identity, or a fixed one (CI checkouts often have none)."""
    env: dict[str, str] = {}
    if not _out(_git(repo, "config", "user.name", check=False)):
        env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "accessctl"
    if not _out(_git(repo, "config", "user.email", check=False)):
        env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "accessctl@localhost"
    return env


def _ledger_blobs(repo: Path, commit: str) -> list[bytes]:
    listing = _git(repo, "ls-tree", "-r", "-z", commit, "--", LEDGER_DIR, check=False).stdout
    shas = []
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, _, name = item.partition(b"\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == b"blob" and name.endswith(b".jsonl"):
            shas.append(parts[2].decode())
    if not shas:
        return []
    out = _git(repo, "cat-file", "--batch", input_bytes=("\n".join(shas) + "\n").encode()).stdout
    blobs, pos = [], 0
    for _ in shas:
        nl = out.index(b"\n", pos)
        size = int(out[pos:nl].split()[2])
        blobs.append(out[nl + 1 : nl + 1 + size])
        pos = nl + 1 + size + 1
    return blobs


def refs(repo: Path, branch: str = DEFAULT_BRANCH) -> list[str]:
    """The ledger commits to read: the local branch and origin's copy, whichever exist."""
    found = [_rev(repo, f"refs/heads/{branch}"), _rev(repo, f"refs/remotes/{REMOTE}/{branch}")]
    return list(dict.fromkeys(sha for sha in found if sha))


def exists(repo: Path, branch: str = DEFAULT_BRANCH) -> bool:
    return bool(refs(repo, branch))


def read(repo: Path, branch: str = DEFAULT_BRANCH) -> list[LedgerEntry]:
    """Every entry of the ledger (local branch and origin/<branch> merged), oldest first.
    Lines that do not parse are skipped: the ledger is evidence, not configuration."""
    seen: dict[str, LedgerEntry] = {}
    for commit in refs(repo, branch):
        for line in _lines_at(repo, commit):
            entry = parse_line(line)
            if entry is not None:
                seen.setdefault(entry.id or line, entry)
    return sorted(seen.values(), key=lambda e: e.time)


def verify(repo: Path, branch: str = DEFAULT_BRANCH) -> list[str]:
    """Problems with the ledger's own history: it may only ever grow. One ``git log -p``
    over the branch; any commit that removes or changes a line is reported (a rewrite of
    the evidence), as is a merge or a ledger file that does not parse."""
    problems: list[str] = []
    for ref in refs(repo, branch):
        proc = _git(
            repo, "log", "--format=%x01%H", "--unified=0", "-p", "--no-renames", ref, "--",
            LEDGER_DIR, check=False,
        )  # fmt: skip
        for record in proc.stdout.split(b"\x01")[1:]:
            sha, _, diff = record.partition(b"\n")
            removed = sum(
                1
                for line in diff.split(b"\n")
                if line.startswith(b"-") and not line.startswith(b"--- ")
            )
            if removed:
                problems.append(
                    f"ledger commit {sha.decode()[:12]} removed or changed {removed} line(s)"
                )
        merges = _out(_git(repo, "rev-list", "--merges", "--count", ref, check=False))
        if merges not in ("", "0"):
            problems.append(f"the ledger branch has {merges} merge commit(s); it should be linear")
        bad = [line for line in _lines_at(repo, ref) if parse_line(line) is None]
        if bad:
            problems.append(f"{len(bad)} ledger line(s) do not parse")
    return list(dict.fromkeys(problems))


def parse_line(line: str) -> LedgerEntry | None:
    try:
        data = json.loads(line)
        return LedgerEntry(
            time=parse_rfc3339(data["time"]),
            action=str(data["action"]),
            ok=bool(data["ok"]),
            provider=str(data["provider"]),
            scope=str(data["scope"]),
            role=str(data["role"]),
            principal=str(data["principal"]),
            request=data.get("request"),
            begin=parse_rfc3339(data["begin"]) if data.get("begin") else None,
            end=parse_rfc3339(data["end"]) if data.get("end") else None,
            message=str(data.get("message") or ""),
            cloud_request_id=data.get("cloud_request_id"),
            verified=bool(data.get("verified")),
            run=str(data.get("run") or ""),
            commit=str(data.get("commit") or ""),
            id=str(data.get("id") or ""),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_file(repo: Path, name: str, branch: str = DEFAULT_BRANCH) -> bytes | None:
    """A file the reconciler keeps on the ledger branch (e.g. ``approvals.json``), from the
    newest of the local branch and origin's copy; None when there is none. Only the
    reconciler's job can push this branch (a ruleset protects it), so unlike a cache file
    in the work tree or an Actions cache, no other job can plant content here."""
    heads = refs(repo, branch)
    if not heads:
        return None
    newest = heads[0]
    if len(heads) > 1 and git.is_ancestor(repo, heads[0], heads[1]):
        newest = heads[1]
    shown = _git(repo, "cat-file", "blob", f"{newest}:{name}", check=False)
    return shown.stdout if shown.ok else None
