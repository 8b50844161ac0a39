"""The ledger: what ``apply`` did, as JSON lines on a dedicated branch (never on main).

Each apply that changed something appends one line per change to
``ledger/<YYYY-MM>.jsonl`` on the branch ``accessctl-ledger`` in ONE commit, built with
git plumbing (hash-object, a throw-away index, commit-tree, update-ref with the old value)
so the work tree, the index and main are never touched. With a remote, the commit is
pushed without force; when another run pushed first, the lines are re-applied on the new
tip and the push retried. Lines carry a unique id, so a retry never duplicates one.

With GitHub credentials (in Actions) the commit is made by GitHub itself through its Git
database API, which signs it for the token's bot, and its new head is anchored in a commit
status nobody can delete; ``inspect`` checks both, so only lines the reconciler wrote are
believed (the threat model: docs/ledger.md).

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
import re
import tempfile
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import git
from reconciler.core.audit import LedgerEntry
from reconciler.core.models import ChangeKind, ChangeResult
from reconciler.core.timeutil import format_rfc3339, parse_rfc3339
from reconciler.errors import AccessctlError
from reconciler.retry import Backoff, retrying
from reconciler.sinks import Decided

if TYPE_CHECKING:
    from reconciler.github import CommitInfo, GitHubClient

DEFAULT_BRANCH = "accessctl-ledger"
DEFAULT_IDENTITY = "github-actions[bot]"  # who Actions' GITHUB_TOKEN writes as
REMOTE = "origin"
LEDGER_DIR = "ledger/"
MAX_ATTEMPTS = 6
# Commit statuses on the ledger's first commit record every head apply wrote. A status can
# be neither edited nor deleted; GitHub keeps at most 1000 per commit and context, so the
# context names the day it was written (accessctl/ledger/2026-12-01).
ANCHOR_CONTEXT = "accessctl/ledger"
_ANCHOR = re.compile(r"ledger head ([0-9a-f]{40})")
_WEB_FLOW = "web-flow"  # the account GitHub commits as when it signs a commit it made
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


@dataclass(frozen=True)
class LedgerProblem:
    """Something wrong with the ledger as evidence; ``commit`` names the ledger commit at
    fault, when one is.

    code: ledger-missing | ledger-line-removed | ledger-rewritten | ledger-forged |
    ledger-diverged | ledger-unparsable
    """

    code: str
    message: str
    commit: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "commit": self.commit}


@dataclass
class LedgerReport:
    """What ``inspect`` found: the ledger read, the lines believed, and every problem.

    ``verified`` is False when there is a problem, True when every check passed (GitHub's
    included), None when the checks that need GitHub could not run (no client, no copy on
    origin, or GitHub did not answer: ``unverified_reason`` says which); ``entries`` then
    holds every line."""

    branch: str
    present: bool
    head: str | None
    verified: bool | None
    problems: list[LedgerProblem]
    entries: list[LedgerEntry]
    forged: list[LedgerEntry]
    unverified_reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "branch": self.branch,
            "present": self.present,
            "head": self.head,
            "verified": self.verified,
            "problems": [p.to_json() for p in self.problems],
        }


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
        "sessions_ended_at": (
            format_rfc3339(result.sessions_ended_at) if result.sessions_ended_at else None
        ),
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
    if decided.break_glass:  # emergency access without approval: said on every line of it
        line["break_glass"] = True
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
    github: GitHubClient | None = None,
) -> str | None:
    """Append one line per grant/revoke result in one commit on ``branch`` (with
    ``files``, the reconciler's own evidence files, replaced in the same commit); push it
    when the repo has an ``origin``. Returns the commit, or None when nothing changed.

    With ``github`` and an ``origin``, GitHub makes the commit (signed for the token's bot)
    and moves the branch, fast-forward only; the new head is then anchored (``_anchor``)."""
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
    api = github if remote else None
    message = f"ledger: {len(changes)} change(s) by {run.get('id', 'run')}"

    def once() -> str:
        if api is not None:
            sha = _attempt_api(repo, branch, path, lines, message=message, files=files, github=api)
        else:
            sha = _attempt(repo, branch, path, lines, message=message, remote=remote, files=files)
        if sha is None:
            raise _Raced(branch)
        return sha

    try:
        sha = retrying(
            once,
            policy=Backoff(attempts=attempts, base=0.2, cap=3.0),
            retryable=lambda exc: isinstance(exc, _Raced),
        )
    except _Raced:
        raise LedgerError(
            f"ledger: could not update {branch} after {attempts} attempts "
            "(another run kept pushing, or the push is not allowed); the cloud changes were made"
        ) from None
    if api is not None:
        _anchor(repo, sha, api)
    return sha


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


def _attempt_api(
    repo: Path,
    branch: str,
    path: str,
    lines: list[str],
    *,
    message: str,
    files: Mapping[str, bytes],
    github: GitHubClient,
) -> str | None:
    """One try through GitHub's Git database: a tree over origin's tip, a commit GitHub
    writes (and signs), the branch moved fast-forward only. None when another writer moved
    it first. ``git fetch`` then brings the commit here."""
    local_ref = f"refs/heads/{branch}"
    local = _rev(repo, local_ref)
    base = _fetch(repo, branch)
    lines = _unpushed(repo, local, base, path) + lines
    content, fresh = _content(repo, base, path, lines)
    tree_files = dict(files)
    if fresh or base is None:
        tree_files[path] = content
    if base is None:
        tree_files["README.md"] = _BRANCH_README
    base_tree = _out(_git(repo, "rev-parse", f"{base}^{{tree}}")) if base else None
    tree = github.create_tree(tree_files, base_tree)
    commit = github.create_commit(message, tree, [base] if base else [])
    moved = github.update_ref(branch, commit.sha) if base else github.create_ref(branch, commit.sha)
    if not moved:
        return None
    # Bring the commit here; a failure now only leaves this clone behind origin.
    _fetch_quietly(repo, branch)
    # The local branch follows (its unpushed lines, if any, are in this commit now).
    _git(repo, "update-ref", local_ref, commit.sha, local or "", check=False)
    return commit.sha


def _anchor(repo: Path, head: str, github: GitHubClient) -> None:
    """Record ``head`` in a commit status on the ledger's first commit: statuses cannot be
    edited or deleted, so a later rewrite of the branch (a force push, a deleted and
    recreated branch on the same root) leaves a recorded head that is no longer in it."""
    context = f"{ANCHOR_CONTEXT}/{datetime.now(UTC):%Y-%m-%d}"
    try:
        github.create_status(_root(repo, head), "success", f"ledger head {head}", context)
    except AccessctlError as exc:
        raise LedgerError(
            f"ledger: {head[:12]} was written but not anchored ({exc}); a rewrite of the "
            "ledger before the next anchored run would go unnoticed. The reconcile job needs "
            "the `statuses: write` permission."
        ) from None


def _root(repo: Path, head: str) -> str:
    return _chain(repo, head)[0][0]


def _chain(repo: Path, head: str) -> list[tuple[str, str | None]]:
    """The ledger's own line of commits, root first: each commit with its first parent
    (None for the root). Merged side lines are not followed: what a merge brought in
    counts as the merge commit's."""
    first: dict[str, str | None] = {}
    for line in _out(_git(repo, "rev-list", "--parents", head)).splitlines():
        sha, *parents = line.split()
        first[sha] = parents[0] if parents else None
    chain: list[tuple[str, str | None]] = []
    current: str | None = _rev(repo, head) or head
    while current is not None and current in first:
        chain.append((current, first[current]))
        current = first[current]
    return chain[::-1]


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
    content, _ = _content(repo, base, path, lines)
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


def _content(repo: Path, base: str | None, path: str, lines: list[str]) -> tuple[bytes, bool]:
    """The month's file at ``base`` with ``lines`` appended (those not in it yet), and
    whether any was new."""
    existing = b""
    if base is not None:
        shown = _git(repo, "cat-file", "blob", f"{base}:{path}", check=False)
        existing = shown.stdout if shown.returncode == 0 else b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    have = set(existing.decode("utf-8", "replace").splitlines())
    fresh = [line for line in dict.fromkeys(lines) if line not in have]
    return existing + "".join(line + "\n" for line in fresh).encode(), bool(fresh)


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


# -- reading: what the ledger says, and whether to believe it ---------------------------


@dataclass
class _Step:
    """One commit of the ledger's line: the lines it added and how many it removed."""

    sha: str
    added: list[str] = field(default_factory=list)
    removed: int = 0


def inspect(
    repo: Path,
    branch: str = DEFAULT_BRANCH,
    *,
    github: GitHubClient | None = None,
    identity: str = DEFAULT_IDENTITY,
    fetch: bool = True,
) -> LedgerReport:
    """Read the ledger and check it as evidence.

    The branch is fetched from origin first (``fetch``; a single-branch clone lacks it), then
    the newer of the local branch and ``origin/<branch>`` is read along its first parents,
    blob by blob (never through diffs, which ``.gitattributes`` can blind). Every commit
    must keep its parent's lines (else ``ledger-line-removed``). With ``github``: every
    commit must be one GitHub verified as written by ``identity`` (else its lines are
    ``forged``: never believed), and every head the reconciler anchored must still be in the
    history read (else ``ledger-rewritten``)."""
    report = _inspect(repo, branch, github, identity, fetch)
    if fetch and any(p.code == "ledger-rewritten" for p in report.problems):
        # A run may have written (and anchored) a newer head since we fetched: look again.
        again = _inspect(repo, branch, github, identity, True)
        if again.head != report.head:
            return again
    return report


def _inspect(
    repo: Path, branch: str, github: GitHubClient | None, identity: str, fetch: bool
) -> LedgerReport:
    git.require_repository(repo)
    problems: list[LedgerProblem] = []
    fetched = _fetch_quietly(repo, branch) if fetch and _has_remote(repo) else None
    local = _rev(repo, f"refs/heads/{branch}")
    remote = _rev(repo, f"refs/remotes/{REMOTE}/{branch}")
    if local is None and remote is None:
        why = f"no ledger branch {branch} in this clone" + (f" ({fetched})" if fetched else "")
        missing = LedgerProblem("ledger-missing", why + ": nothing apply did can be shown")
        return LedgerReport(branch, False, None, False, [missing], [], [])
    if fetched == _ABSENT:
        gone = f"{REMOTE} has no {branch} (deleted?); only this clone's copy can be read"
        problems.append(LedgerProblem("ledger-missing", gone))
    head = _choose_head(repo, branch, local, remote, problems)
    steps = _walk(repo, head)
    problems += [
        LedgerProblem(
            "ledger-line-removed",
            f"ledger commit {s.sha[:12]} removed or changed {s.removed} line(s)",
            s.sha,
        )
        for s in steps
        if s.removed
    ]
    if fetched not in (None, _ABSENT):  # a stale copy cannot be held against the anchors
        verdicts, reason = None, f"{branch} could not be fetched ({fetched})"
    else:
        verdicts, reason = _verdicts(
            repo, github=github, identity=identity, remote=remote, steps=steps, problems=problems
        )
    entries, forged = _believe(steps, verdicts, problems)
    verified = False if problems else (None if verdicts is None else True)
    return LedgerReport(branch, True, head, verified, problems, entries, forged, reason)


_ABSENT = f"{REMOTE} has no such branch"


def _fetch_quietly(repo: Path, branch: str) -> str | None:
    """Fetch origin's branch into ``origin/<branch>`` (whatever the clone's refspec, so a
    single-branch clone gets it too). None when fetched; else why not (``_ABSENT``: origin
    has no such branch)."""
    tracking = f"+refs/heads/{branch}:refs/remotes/{REMOTE}/{branch}"
    proc = _git(repo, "fetch", "-q", "--no-tags", REMOTE, tracking, check=False)
    if proc.ok:
        return None
    if b"couldn't find remote ref" in proc.stderr:
        return _ABSENT
    return f"fetch from {REMOTE} failed: {proc.error()}"


def _choose_head(
    repo: Path, branch: str, local: str | None, remote: str | None, problems: list[LedgerProblem]
) -> str:
    """The newer of the two copies when one descends from the other; origin's when they
    have diverged (the shared record), with a problem naming this clone's."""
    if local is None or remote is None or local == remote:
        found = local or remote
        assert found is not None
        return found
    if git.is_ancestor(repo, local, remote):
        return remote
    if git.is_ancestor(repo, remote, local):
        return local
    problems.append(
        LedgerProblem(
            "ledger-diverged",
            f"this clone's {branch} ({local[:12]}) and {REMOTE}'s ({remote[:12]}) have "
            f"diverged; {REMOTE}'s is read",
            local,
        )
    )
    return remote


def _walk(repo: Path, head: str) -> list[_Step]:
    """The ledger's line of commits, oldest first, each with the lines it added to
    the ledger files and the number it removed or changed, from the blobs themselves."""
    steps: list[_Step] = []
    files: dict[str, list[str]] = {}  # ledger file -> its lines at the previous commit
    history = _first_parent_changes(repo, head)
    wanted = [b for _, changes in history for p, b in changes.items() if b and _is_ledger(p)]
    blobs = _BlobReader(repo, wanted)
    for sha, changes in history:
        step = _Step(sha)
        for path, blob in sorted(changes.items()):
            if not _is_ledger(path):
                continue
            old, new = files.get(path, []), _lines(blobs.get(blob)) if blob else []
            if new[: len(old)] == old:
                step.added += new[len(old) :]
            else:  # lines were removed, changed or reordered: count what is gone
                gone = Counter(old) - Counter(new)
                step.removed += sum(gone.values())
                extra = Counter(new) - Counter(old)
                for line in new:
                    if extra[line] > 0:
                        step.added.append(line)
                        extra[line] -= 1
            files[path] = new
            if blob is None:
                del files[path]
        steps.append(step)
    return steps


def _first_parent_changes(repo: Path, head: str) -> list[tuple[str, dict[str, str | None]]]:
    """Per commit of the ledger's line, root first: ``path -> new blob`` (None when
    deleted) for every file it changed against its first parent. One ``git diff-tree
    --stdin --raw``: object names only, so no diff driver or attribute is ever consulted."""
    chain = _chain(repo, head)
    pairs = "".join(f"{sha} {parent}\n" if parent else f"{sha}\n" for sha, parent in chain)
    out = _git(
        repo, "diff-tree", "--stdin", "-r", "--raw", "-z", "--no-renames", "--root",
        "--no-ext-diff", "--no-textconv", input_bytes=pairs.encode(),
    ).stdout  # fmt: skip
    changes: dict[str, dict[str, str | None]] = {sha: {} for sha, _ in chain}
    current: dict[str, str | None] = {}
    tokens = iter(out.split(b"\0"))
    for token in tokens:
        if token.startswith(b":"):  # ":old_mode new_mode old_sha new_sha status", then path
            parts = token[1:].split()
            path = next(tokens, b"").decode("utf-8", "surrogateescape")
            if len(parts) == 5:
                current[path] = None if parts[4].startswith(b"D") else parts[3].decode()
        elif token.strip():  # the commit the following changes belong to
            current = changes.setdefault(token.strip().decode(), {})
    return [(sha, changes[sha]) for sha, _ in chain]


def _is_ledger(path: str) -> bool:
    return path.startswith(LEDGER_DIR) and path.endswith(".jsonl")


def _lines(content: bytes | None) -> list[str]:
    text = (content or b"").decode("utf-8", "replace")
    return [line for line in text.splitlines() if line.strip()]


class _BlobReader:
    """Blobs read in batches as the walk reaches them, so a long ledger (each month's file
    is stored again by every commit) is never held in memory at once."""

    BATCH = 64

    def __init__(self, repo: Path, shas: Sequence[str]) -> None:
        self.repo, self.pending = repo, list(dict.fromkeys(shas))
        self.index = {sha: i for i, sha in enumerate(self.pending)}
        self.position = 0
        self.cache: dict[str, bytes] = {}

    def get(self, sha: str) -> bytes:
        if sha not in self.cache and self.index.get(sha, -1) >= self.position:
            while sha not in self.cache and self.position < len(self.pending):
                batch = self.pending[self.position : self.position + self.BATCH]
                self.position += len(batch)
                self.cache = git.read_blobs(self.repo, batch)
        if sha not in self.cache:  # seen in an earlier batch (a reverted file): read again
            self.cache.update(git.read_blobs(self.repo, [sha]))
        return self.cache.get(sha, b"")


def _verdicts(
    repo: Path,
    *,
    github: GitHubClient | None,
    identity: str,
    remote: str | None,
    steps: list[_Step],
    problems: list[LedgerProblem],
) -> tuple[dict[str, str | None] | None, str]:
    """``sha -> None`` for a commit GitHub verified as written by ``identity``, else why
    not; None (with the reason) when GitHub cannot be asked. Also the anchor check."""
    if github is None:
        return None, "no GitHub credentials: who wrote the ledger is not checked"
    if remote is None:
        return None, f"the ledger is not on {REMOTE}: GitHub cannot vouch for it"
    head = steps[-1].sha
    try:
        # GitHub keeps the commits a force push dropped: a copy here that is ahead of
        # origin's is still checked commit by commit.
        listed = github.history(head) or github.history(remote)
        anchors = _anchored_heads(github, _root(repo, head), identity)
    except AccessctlError as exc:
        return None, f"GitHub could not be asked ({exc})"
    known = {c.sha: c for c in listed}
    problems += _rewrites(repo, anchors, remote, identity)
    return {s.sha: _why_not_ours(known.get(s.sha), identity) for s in steps}, ""


def _rewrites(
    repo: Path, anchors: list[tuple[str, datetime | None]], remote: str, identity: str
) -> list[LedgerProblem]:
    """Every anchored head must still be in origin's branch: the shared record."""
    out = []
    for anchored, when in anchors:
        if git.commit_exists(repo, anchored) and git.is_ancestor(repo, anchored, remote):
            continue
        stamp = f" on {format_rfc3339(when)}" if when else ""
        out.append(
            LedgerProblem(
                "ledger-rewritten",
                f"the ledger on {REMOTE} was rewritten: head {anchored[:12]}, which {identity} "
                f"recorded{stamp}, is no longer in its history (a force push, or the branch "
                "deleted and written again)",
                anchored,
            )
        )
    return out


def _anchored_heads(
    github: GitHubClient, root: str, identity: str
) -> list[tuple[str, datetime | None]]:
    """The heads ``identity`` anchored on ``root`` (statuses of anybody else are ignored)."""
    out: list[tuple[str, datetime | None]] = []
    for status in github.commit_statuses(root):
        if status.creator.lower() != identity.lower():
            continue
        if not status.context.startswith(ANCHOR_CONTEXT):
            continue
        found = _ANCHOR.search(status.description)
        if found:
            out.append((found.group(1), status.created_at))
    return list(dict.fromkeys(out))


def _why_not_ours(commit: CommitInfo | None, identity: str) -> str | None:
    """None when GitHub signed ``commit`` as made by ``identity``; else the reason."""
    if commit is None:
        return "GitHub does not have it: it was never pushed"
    if not commit.verified:
        return f"GitHub did not verify a signature ({commit.reason or 'unsigned'})"
    if (commit.author or "").lower() != identity.lower():
        return f"authored by {commit.author or 'an unknown account'}, not {identity}"
    if (commit.committer or "").lower() not in (identity.lower(), _WEB_FLOW):
        return f"committed by {commit.committer or 'an unknown account'}"
    return None


def _believe(
    steps: list[_Step], verdicts: dict[str, str | None] | None, problems: list[LedgerProblem]
) -> tuple[list[LedgerEntry], list[LedgerEntry]]:
    """Split the lines into believed and forged ones (by the commit that added them)."""
    entries: dict[str, LedgerEntry] = {}
    forged: list[LedgerEntry] = []
    for step in steps:
        why = verdicts.get(step.sha, "unknown commit") if verdicts is not None else None
        parsed = [(line, parse_line(line)) for line in step.added]
        if why is not None:
            problems.append(
                LedgerProblem(
                    "ledger-forged",
                    f"ledger commit {step.sha[:12]} was not written by the reconciler ({why}); "
                    f"its {len(step.added)} line(s) are not believed",
                    step.sha,
                )
            )
            forged += [e for _, e in parsed if e is not None]
            continue
        bad = [line for line, e in parsed if e is None]
        if bad:
            problems.append(
                LedgerProblem(
                    "ledger-unparsable",
                    f"ledger commit {step.sha[:12]} added {len(bad)} line(s) that do not parse",
                    step.sha,
                )
            )
        for line, e in parsed:
            if e is not None:
                entries.setdefault(e.id or line, e)
    return sorted(entries.values(), key=lambda e: e.time), sorted(forged, key=lambda e: e.time)


# -- the older reading API, now views of ``inspect`` ------------------------------------


def refs(repo: Path, branch: str = DEFAULT_BRANCH) -> list[str]:
    """The ledger commits to read: the local branch and origin's copy, whichever exist."""
    found = [_rev(repo, f"refs/heads/{branch}"), _rev(repo, f"refs/remotes/{REMOTE}/{branch}")]
    return list(dict.fromkeys(sha for sha in found if sha))


def exists(repo: Path, branch: str = DEFAULT_BRANCH) -> bool:
    return bool(refs(repo, branch))


def read(repo: Path, branch: str = DEFAULT_BRANCH) -> list[LedgerEntry]:
    """Every line the ledger ever held (removed ones included), oldest first; nothing is
    fetched and nobody's authorship is checked (``inspect`` does both). Lines that do not
    parse are skipped: the ledger is evidence, not configuration."""
    return inspect(repo, branch, fetch=False).entries if exists(repo, branch) else []


def verify(repo: Path, branch: str = DEFAULT_BRANCH) -> list[str]:
    """The problems ``inspect`` finds without GitHub and without fetching, as sentences."""
    if not exists(repo, branch):
        return []
    return [p.message for p in inspect(repo, branch, fetch=False).problems]


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
            sessions_ended_at=(
                parse_rfc3339(data["sessions_ended_at"]) if data.get("sessions_ended_at") else None
            ),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def read_file(
    repo: Path,
    name: str,
    branch: str = DEFAULT_BRANCH,
    *,
    github: GitHubClient | None = None,
    identity: str | None = None,
) -> bytes | None:
    """A file the reconciler keeps on the ledger branch (e.g. ``approvals.json``), from the
    newest of the local branch and origin's copy; None when there is none.

    With ``github``, only content the reconciler itself wrote is returned: the version set
    by the newest commit that changed ``name`` and that GitHub verified as written by
    ``identity`` (default: the client's bot login); usually one call. Content anyone else
    committed is passed over, and when GitHub cannot be asked nothing is returned (the
    caller verifies everything afresh)."""
    heads = refs(repo, branch)
    if not heads:
        return None
    newest = heads[0]
    if len(heads) > 1 and git.is_ancestor(repo, heads[0], heads[1]):
        newest = heads[1]
    if github is None:
        shown = _git(repo, "cat-file", "blob", f"{newest}:{name}", check=False)
        return shown.stdout if shown.ok else None
    who = identity or github.bot_login
    changes = [(sha, c[name]) for sha, c in _first_parent_changes(repo, newest) if name in c]
    for sha, blob in reversed(changes):
        try:
            ours = _why_not_ours(github.commit(sha), who) is None
        except AccessctlError:
            return None
        if ours:
            return git.read_blobs(repo, [blob]).get(blob) if blob else None
    return None
