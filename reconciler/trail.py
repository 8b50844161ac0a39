"""The audit trail and the status of requests, as use cases beside app.py.

``collect`` reads the branch's history (``reconciler.history``), the ledger and, when
credentials are there, GitHub, and judges every version with the one judgment; the
``audit`` and ``status`` commands only parse flags and render what comes back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reconciler import git
from reconciler.core import layout
from reconciler.core.audit import AuditEntry, LedgerEntry, PullInfo, State, Version
from reconciler.core.escape import clean_json
from reconciler.core.judgment import Approval, judge_request
from reconciler.core.timeutil import format_duration, format_rfc3339
from reconciler.errors import ConfigError, Finding


def github_configured(trust_git: bool) -> bool:
    """GitHub is consulted only without --trust-git and when Actions-style credentials exist."""
    return not trust_git and bool(
        os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_REPOSITORY")
    )


def pull_infos(repo: Path, versions: Sequence[Version]) -> dict[tuple[str, str], PullInfo]:
    """Each version's commit -> its merged pull request, through the cached GitHub lookup.

    The lookup answers one record per path, so versions go in rounds where every path
    appears at most once (the n-th version of every file in round n)."""
    from reconciler.approvals import FileChange
    from reconciler.approvals_github import NO_PULL_REQUEST, GitHubApprovals

    source = GitHubApprovals.from_env(repo)
    rounds: list[list[FileChange]] = []
    seen: dict[str, int] = {}
    for v in versions:
        n = seen.get(v.path, 0)
        seen[v.path] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(FileChange(v.path, v.commit, v.blob, v.committed_at, v.author))
    out: dict[tuple[str, str], PullInfo] = {}
    for changes in rounds:
        for path, record in source.lookup(changes).items():
            if record.error == NO_PULL_REQUEST:
                info = PullInfo(number=None)
            else:
                info = PullInfo(
                    number=record.pr,
                    merged_at=record.approved_at,
                    approvals=record.approvals,
                    error=record.error,
                )
            out[(record.commit, path)] = info
    return out


@dataclass(frozen=True)
class _Builder:
    """build_audit with its context, applied to a chunk of versions (maybe in a worker)."""

    at: datetime
    ledger: list[LedgerEntry] | None
    pulls: dict[tuple[str, str], PullInfo] | None
    at_tip: bool = False

    def __call__(self, versions: list[Version]) -> list[AuditEntry]:
        from reconciler.core.audit import build_audit

        return build_audit(
            versions,
            at=self.at,
            trust_git=self.pulls is None,
            ledger=self.ledger,
            pulls=self.pulls,
            at_tip=self.at_tip,
        )


def collect(
    repo: Path,
    *,
    now: datetime,
    trust_git: bool,
    ref: str = "HEAD",
    ledger_branch: str | None = "accessctl-ledger",
    only_current: bool = False,
) -> tuple[list[AuditEntry], list[str]]:
    """Read history, ledger and (maybe) GitHub; return the entries and notes for stderr.

    ``only_current``: just the versions still on the branch, plus deleted ones (what
    ``status`` shows), those on the branch judged by the policies at ``ref`` as plan/apply
    judge them; otherwise every version by the policies of its own commit."""
    from reconciler import history, ledger

    notes: list[str] = []
    if history.is_shallow(repo):
        notes.append("this is a shallow clone: history before its boundary is not audited")
    entries_ledger: list[LedgerEntry] | None = None
    if ledger_branch and ledger.exists(repo, ledger_branch):
        entries_ledger = ledger.read(repo, ledger_branch)
        notes += [f"LEDGER: {p}" for p in ledger.verify(repo, ledger_branch)]
    pulls = None
    if github_configured(trust_git):
        versions = history.load_versions(repo, ref, current_only=only_current)
        pulls = pull_infos(repo, versions)
        return _Builder(now, entries_ledger, pulls, only_current)(versions), notes
    if not trust_git:
        notes.append("no GitHub credentials: approvals not verified, pull requests not shown")
    build = _Builder(now, entries_ledger, None, only_current)
    return history.map_versions(repo, ref, build, current_only=only_current), notes


@dataclass(frozen=True)
class Row:
    """One line of status: a request file and where it stands at --at."""

    file: str
    requester: str | None
    provider: str | None
    scope: str | None
    role: str | None
    state: State
    begin: datetime | None
    end: datetime | None
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return clean_json(
            {
                "file": self.file,
                "requester": self.requester,
                "provider": self.provider,
                "scope": self.scope,
                "role": self.role,
                "state": self.state,
                "begin": format_rfc3339(self.begin) if self.begin else None,
                "end": format_rfc3339(self.end) if self.end else None,
            }
        )

    def time_left(self, now: datetime) -> str:
        if self.state == "active" and self.end:
            return f"{format_duration(self.end - now)} left"
        if self.state == "scheduled" and self.begin:
            return f"starts in {format_duration(self.begin - now)}"
        if self.state == "expired" and self.end:
            return f"ended {format_duration(now - self.end)} ago"
        return self.note


def committed_rows(entries: list[AuditEntry], now: datetime) -> list[Row]:
    """Requests on the branch, and deleted ones whose window would still be open: an early
    revocation stays visible (state revoked) until then."""
    return [
        Row(e.file, e.requester, e.provider, e.scope, e.role, e.state, e.begin, e.end, _note(e))
        for e in entries
        if e.removal is None or (e.state == "revoked" and e.end is not None and e.end > now)
    ]


def _note(entry: AuditEntry) -> str:
    return entry.anomalies[0] if entry.anomalies else ""


def uncommitted_rows(repo: Path, now: datetime) -> list[Row]:
    """Request files in the work tree that the branch does not hold yet: pending (waiting
    for a pull request and its merge), judged as if merged now, like the PR check does."""
    from reconciler.core.validate import check_request_now
    from reconciler.repo import REQUESTS, WorkTree, load_config, load_requests

    listed = git.text(repo, "status", "--porcelain", "--untracked-files=all", "--", f"{REQUESTS}/")
    paths = sorted(
        line[3:]
        for line in listed.splitlines()
        if line[:2].strip() not in ("D", "") and line[3:].endswith((".yaml", ".yml"))
    )
    if not paths:
        return []
    tree = WorkTree(repo)
    config, _ = load_config(tree)
    requests, findings = load_requests(tree, config, paths)
    bad = {f.file for f in findings if f.severity == "error"}
    rows = []
    for request in requests:
        # As if merged now (the PR check's view): the one judgment, reviews not yet known.
        judged = judge_request(request, config, Approval(now), now)
        _, found = check_request_now(request, config, now)  # the findings, worded for people
        refused = not judged.allowed or request.path in bad
        window = judged.window
        rows.append(
            Row(
                request.path,
                request.requester,
                request.provider,
                request.scope,
                request.role,
                "rejected" if refused else "pending",
                window.begin if window else None,
                window.end if window else None,
                found[0].message if found else "not on the branch yet: open a pull request",
            )
        )
    parsed = {r.path for r in requests}
    rows += [
        Row(p, None, None, None, None, "rejected", None, None, "invalid: run accessctl validate")
        for p in sorted(bad - parsed)
    ]
    return rows


def whoami(repo: Path) -> str:
    """The GitHub login of the person at the keyboard: ``git config github.user``, else the
    identities entry whose principal carries ``git config user.email``."""
    login = git.config_value(repo, "github.user")
    if login:
        return login
    email = git.config_value(repo, "user.email").lower()
    if email:
        from reconciler.repo import WorkTree, load_config

        config, _ = load_config(WorkTree(repo))
        for name, principals in config.identities.items():
            for principal in principals.values():
                if principal.lower().split(":", 1)[-1] == email:
                    return name
    raise ConfigError(
        "cannot tell who you are: set `git config github.user YOUR-LOGIN`, add your e-mail "
        "to identities in policies/, or pass --requester LOGIN"
    )


def stray_findings(repo: Path, ref: str = "HEAD") -> list[Finding]:
    """Entries under requests/ (any letter case) at ``ref`` that are not request files:
    ignored by every command, and said so (warnings), so a person can clean them up."""
    tip = git.resolve(repo, ref)
    if tip is None:
        return []
    out = []
    for path, (mode, _) in sorted(git.ls_tree(repo, tip).items()):
        if layout.classify(path, mode) is layout.Kind.STRAY:
            problem = layout.stray_problem(path, mode)
            out.append(
                Finding(path, 1, problem.code, f"{problem.message}; ignored", severity="warning")
            )
    return out
