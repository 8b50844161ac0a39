"""The audit trail and the status of requests, as use cases beside app.py.

``collect`` reads the branch's history (``reconciler.history``), the ledger and, when
credentials are there, GitHub, and judges every version with the one judgment; the
``audit`` and ``status`` commands only parse flags and render what comes back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import git
from reconciler.core import layout
from reconciler.core.audit import (
    AuditEntry,
    LedgerEntry,
    PullInfo,
    RemovedBy,
    State,
    Version,
    settle,
)
from reconciler.core.escape import clean_json
from reconciler.core.judgment import Approval, judge_request, shown_state
from reconciler.core.models import Settings
from reconciler.core.policy import compute_window
from reconciler.core.timeutil import format_duration, format_rfc3339
from reconciler.errors import AccessctlError, ConfigError, Finding, GitHubError

if TYPE_CHECKING:
    from reconciler.approvals import ApprovalRecord, FileChange
    from reconciler.approvals_github import GitHubApprovals
    from reconciler.github import GitHubClient


def github_configured(trust_git: bool) -> bool:
    """GitHub is consulted only without --trust-git and when Actions-style credentials exist."""
    return not trust_git and bool(
        os.environ.get("GITHUB_TOKEN") and os.environ.get("GITHUB_REPOSITORY")
    )


# -- the ledger, as evidence ------------------------------------------------------------


@dataclass(frozen=True)
class LedgerProblem:
    """Something wrong with the ledger as evidence (``reconciler.ledger.LedgerProblem``)."""

    code: str
    message: str
    commit: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "commit": self.commit}


@dataclass(frozen=True)
class LedgerFacts:
    """The ledger as the audit uses it: the lines believed (written by the reconciler), the
    forged ones (shown, never believed) and every problem (``reconciler.ledger.inspect``).
    ``verified`` None: who wrote it could not be checked (no GitHub)."""

    branch: str
    present: bool
    head: str | None
    verified: bool | None
    problems: tuple[LedgerProblem, ...] = ()
    entries: tuple[LedgerEntry, ...] = ()
    forged: tuple[LedgerEntry, ...] = ()
    unverified_reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "branch": self.branch,
            "present": self.present,
            "head": self.head,
            "verified": self.verified,
            "problems": [p.to_json() for p in self.problems],
        }


def inspect_ledger(
    repo: Path, branch: str, *, github: GitHubClient | None, identity: str
) -> LedgerFacts:
    """The ledger verified, not believed (``reconciler.ledger.inspect``): fetched from
    origin, its history checked, and with ``github`` each commit's author verified. Raises
    AccessctlError when it cannot be read at all."""
    from reconciler import ledger

    report = ledger.inspect(repo, branch, github=github, identity=identity)
    return LedgerFacts(
        branch=report.branch,
        present=report.present,
        head=report.head,
        verified=report.verified,
        problems=tuple(LedgerProblem(p.code, p.message, p.commit) for p in report.problems),
        entries=tuple(report.entries),
        forged=tuple(report.forged),
        unverified_reason=report.unverified_reason,
    )


# -- GitHub, said once when it is down ----------------------------------------------------


_FAILED = re.compile(r"GitHub: (?P<what>.+?) failed(?: \((?P<why>.*)\)|: (?P<wait>.*))$", re.S)
_STATUS = re.compile(r"^(?P<code>\d{3}): (?P<message>.*)$", re.S)
_RETRIED = re.compile(r"too many (?P<code>\d{3}) error responses")


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "an error"


def outage_words(error: str) -> str:
    """A GitHub failure (``reconciler.github``'s wording, maybe with a library's text
    inside) said in words a person acts on, without the library's text."""
    text = error.split("approval could not be verified: ", 1)[-1]
    text = text.split("cannot tell who removed it: ", 1)[-1]
    m = _FAILED.search(text)
    if m is None:
        return "GitHub could not be read"
    what, why = m["what"], m["why"] or ""
    status = _STATUS.match(why)
    retried = _RETRIED.search(why)
    if m["wait"]:
        said = m["wait"]
    elif status:
        said = f"it answered {status['code']} ({status['message'][:200]})"
    elif retried:
        said = f"it kept answering {retried['code']} ({_phrase(int(retried['code']))})"
    elif "refused" in why.lower():
        said = "the connection was refused"
    elif "timed out" in why.lower() or "timeout" in why.lower():
        said = "it did not answer in time"
    elif any(k in why.lower() for k in ("name or service", "getaddrinfo", "resolve")):
        said = "its address could not be resolved"
    else:
        said = "the connection failed"
    return f"GitHub could not be read while {what}: {said}"


@dataclass
class _Lookups:
    """GitHub's answers for the versions; the first outage stops every further call (the
    next versions rest on the verified approvals the reconciler stored, or are unverified)."""

    source: GitHubApprovals
    outage: str | None = None
    pulls: dict[tuple[str, str], PullInfo] = field(default_factory=dict)
    removers: dict[tuple[str, str], RemovedBy] = field(default_factory=dict)

    def pull_of(self, change: FileChange) -> PullInfo:
        if self.outage is None:
            record = self.source.lookup([change])[change.path]
            if record.transient:
                self.outage = outage_words(record.error or "")
        else:
            record = self.source.cache.get(change) or _unverified(change)
        return _pull_info(record)

    def with_reviews(self, pull: PullInfo) -> PullInfo:
        """A break-glass version's pull request with its reviews as GitHub lists them now,
        for the follow-up review (never the approvals recorded at grant time); while
        GitHub is down, marked unverified."""
        if pull.number is None or pull.merged_at is None or pull.error:
            return pull
        if self.outage is None:
            try:
                reviews = self.source.current_reviews(pull.number)
            except GitHubError as exc:
                self.outage = outage_words(f"approval could not be verified: {exc}")
            else:
                return replace(pull, reviews=tuple(reviews))
        return replace(pull, reviews_error=self.outage)

    def remover_of(self, v: Version) -> RemovedBy:
        assert v.removal is not None
        if self.outage is not None:
            return RemovedBy(None, unknown=True)
        who = self.source.remover(v.removal, v.path)
        if who.login is None and who.error:
            self.outage = outage_words(who.error)
            return RemovedBy(None, unknown=True)
        return RemovedBy(who.login, who.pr)


def _unverified(change: FileChange) -> ApprovalRecord:
    from reconciler.approvals import ApprovalRecord

    return ApprovalRecord(
        change.path, change.commit, None, None, error="GitHub is unreachable", transient=True
    )


def _pull_info(record: ApprovalRecord) -> PullInfo:
    from reconciler.approvals_github import NO_PULL_REQUEST

    if record.error == NO_PULL_REQUEST:
        return PullInfo(number=None)
    return PullInfo(
        number=record.pr,
        merged_at=record.approved_at,
        approvals=record.approvals,
        error=record.error,
        transient=record.transient,
    )


def look_up(
    source: GitHubApprovals, versions: Sequence[Version], *, down: str | None = None
) -> _Lookups:
    """Each version's merged pull request (cached lookup), and who deleted each request
    file deleted before its window (as git dates it) was over. ``down``: GitHub is known to
    be unreachable (only the approvals the reconciler stored are read)."""
    from reconciler.approvals import FileChange

    found = _Lookups(source, outage=down)
    for v in versions:
        change = FileChange(v.path, v.commit, v.blob, v.committed_at, v.author)
        pull = found.pull_of(change)
        if v.request is not None and v.request.break_glass and not v.findings:
            pull = found.with_reviews(pull)
        found.pulls[(v.commit, v.path)] = pull
    for v in versions:
        removal, request = v.removal, v.request
        if removal is None or not removal.deleted or request is None or v.findings:
            continue
        if removal.at < compute_window(request, v.committed_at).end:
            found.removers[(removal.commit, v.path)] = found.remover_of(v)
    return found


# -- the use case -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Builder:
    """build_audit with its context, applied to a chunk of versions (maybe in a worker)."""

    at: datetime
    ledger: LedgerFacts | None
    pulls: dict[tuple[str, str], PullInfo] | None
    removers: dict[tuple[str, str], RemovedBy] | None = None
    at_tip: bool = False
    tolerance: timedelta = Settings().late_tolerance

    def __call__(self, versions: list[Version]) -> list[AuditEntry]:
        from reconciler.core.audit import build_audit

        present = self.ledger is not None and self.ledger.present
        return build_audit(
            versions,
            at=self.at,
            trust_git=self.pulls is None,
            ledger=list(self.ledger.entries) if present and self.ledger else None,
            forged=list(self.ledger.forged) if present and self.ledger else [],
            pulls=self.pulls,
            removers=self.removers,
            at_tip=self.at_tip,
            tolerance=self.tolerance,
        )


@dataclass
class Trail:
    """What ``collect`` read: the entries, the ledger as evidence, notes for stderr, and
    the outages (each said once, in words) that left something unverified."""

    entries: list[AuditEntry]
    ledger: LedgerFacts | None  # None: not consulted (--no-ledger)
    settings: Settings
    notes: list[str] = field(default_factory=list)
    outages: list[str] = field(default_factory=list)
    github_down: str | None = None  # why GitHub could not be read, once it failed

    @property
    def incomplete(self) -> bool:
        """Something could not be read or verified: the run must fail."""
        return bool(self.outages) or any(e.state == "unverified" for e in self.entries)


def tip_settings(repo: Path, tip: str | None) -> Settings:
    """``settings:`` of the policies at the tip (defaults where unset or invalid)."""
    if tip is None:
        return Settings()
    from reconciler.repo import load_config

    with git.Tree(repo, tip) as tree:
        config, _ = load_config(tree)
    return config.settings


def resolve_ref(repo: Path, ref: str) -> str | None:
    """The commit ``ref`` names; None for HEAD of an empty repository. ConfigError (exit 2)
    for anything else that names no commit."""
    git.require_repository(repo)
    tip = git.resolve(repo, ref)
    if tip is None and ref != "HEAD":
        raise ConfigError(
            f"--ref {ref!r} is not a branch, tag or commit in {repo} (try a branch name like "
            "main, or origin/main after git fetch)"
        )
    return tip


def collect(
    repo: Path,
    *,
    now: datetime,
    trust_git: bool,
    ref: str = "HEAD",
    ledger_branch: str | None = "accessctl-ledger",
    only_current: bool = False,
) -> Trail:
    """Read history, ledger and (maybe) GitHub, and judge every version.

    ``only_current``: just the versions still on the branch, plus deleted ones (what
    ``status`` shows), those on the branch judged by the policies at ``ref`` as plan/apply
    judge them; otherwise every version by the policies of its own commit."""
    from reconciler import history

    tip = resolve_ref(repo, ref)
    settings = tip_settings(repo, tip)
    trail = Trail([], None, settings)
    if history.is_shallow(repo):
        trail.notes.append("this is a shallow clone: history before its boundary is not audited")
    source = _github_source(repo) if github_configured(trust_git) else None
    if ledger_branch:
        trail.ledger = _ledger(repo, ledger_branch, source, settings, trail)
    build = _Builder(
        now, trail.ledger, None, at_tip=only_current, tolerance=settings.late_tolerance
    )
    if source is not None:
        versions = history.load_versions(repo, ref, current_only=only_current)
        # GitHub already failed us (the ledger's check): not asked again, not said twice.
        found = look_up(source, versions, down=trail.github_down)
        if found.outage and found.outage not in trail.outages:
            trail.outages.append(found.outage)
        build = _Builder(
            now,
            trail.ledger,
            found.pulls,
            found.removers,
            only_current,
            settings.late_tolerance,
        )
        entries = build(versions)
    else:
        if not trust_git:
            trail.notes.append(
                "no GitHub credentials: approvals not verified, pull requests not shown"
            )
        entries = history.map_versions(repo, ref, build, current_only=only_current)
    # Chunks were settled on their own; an AWS assignment may be shared across them.
    trail.entries = settle(entries, at=now, tolerance=settings.late_tolerance)
    return trail


def _github_source(repo: Path) -> GitHubApprovals:
    from reconciler.approvals_github import GitHubApprovals

    return GitHubApprovals.from_env(repo)


def _ledger(
    repo: Path, branch: str, source: GitHubApprovals | None, settings: Settings, trail: Trail
) -> LedgerFacts | None:
    """The ledger, verified; when it cannot be read at all, an outage (no ledger facts,
    and no accusation resting on their absence)."""
    github = source.client if source is not None else None
    try:
        facts = inspect_ledger(repo, branch, github=github, identity=settings.reconciler_identity)
    except AccessctlError as exc:
        trail.outages.append(f"the ledger branch {branch} could not be read: {exc}")
        return None
    asked = _GITHUB_UNASKED.match(facts.unverified_reason) if facts.verified is None else None
    if github is not None and asked:  # GitHub is down: said once, as the run's cause
        trail.github_down = outage_words(asked["error"])
        trail.outages.append(trail.github_down)
        return replace(facts, unverified_reason=OUTAGE_SEE_ABOVE)
    return facts


_GITHUB_UNASKED = re.compile(r"^GitHub could not be asked \((?P<error>.*)\)$", re.S)
OUTAGE_SEE_ABOVE = "GitHub could not be read (the cause is reported once for the run)"


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
    """Requests on the branch, and deleted ones whose window would still be open (an early
    revocation stays visible, state revoked, until then), and former versions (deleted or
    edited since) whose break-glass follow-up review is still owed (neither hides it)."""
    return [
        Row(
            e.file,
            e.requester,
            e.provider,
            e.scope,
            e.role,
            shown_state(e.state, e.follow_up),
            e.begin,
            e.end,
            _note(e),
        )
        for e in entries
        if e.removal is None
        or (e.state == "revoked" and e.end is not None and e.end > now)
        or (e.follow_up is not None and e.follow_up.owed)
    ]


def _note(entry: AuditEntry) -> str:
    review = [a for a in entry.anomalies if a.code.startswith("break-glass-")]
    first = review[:1] or entry.anomalies[:1] or entry.events[:1]
    return str(first[0]) if first else ""


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
