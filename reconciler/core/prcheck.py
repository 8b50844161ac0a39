"""The PR gate's verdicts and their rendering: per changed file, then for the whole PR.

Pure: the command gathers the PR (files, author, reviews) and the parsed requests; this
module decides success / pending / failure for each file and writes the comment, the
job summary and the commit status description. Every piece of file text is escaped.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from reconciler.core.asking import ReviewRecord
from reconciler.core.escape import markdown_cell, markdown_code, markdown_text
from reconciler.core.judgment import Judgment
from reconciler.core.layout import under_requests
from reconciler.core.models import AccessRequest, Config, Decision, Policy
from reconciler.core.policy import approvals_needed
from reconciler.core.timeutil import format_duration, format_rfc3339
from reconciler.errors import Finding

State = Literal["success", "pending", "failure"]
MARKER = "<!-- accessctl:pr-check -->"
STATUS_CONTEXT = "accessctl/approval"
REQUESTS_DIR = "requests/"
_RANK: dict[State, int] = {"success": 0, "pending": 1, "failure": 2}


@dataclass(frozen=True)
class PathChange:
    """A changed path; a rename is a removal of the old path plus an addition of the new."""

    path: str
    kind: Literal["added", "modified", "removed"]


def split_changes(files: Iterable[tuple[str, str, str | None]]) -> list[PathChange]:
    """``(path, GitHub status, previous path)`` entries -> path changes, renames split."""
    out: list[PathChange] = []
    for path, status, previous in files:
        if status == "removed":
            out.append(PathChange(path, "removed"))
        elif status == "renamed" and previous and previous != path:
            out += [PathChange(previous, "removed"), PathChange(path, "added")]
        elif status in ("added", "copied"):
            out.append(PathChange(path, "added"))
        else:  # modified, changed, unchanged (mode change)
            out.append(PathChange(path, "modified"))
    return out


def is_request_path(path: str) -> bool:
    """Under requests/ in any letter case (see reconciler.core.layout)."""
    return under_requests(path)


@dataclass(frozen=True)
class Approval:
    """Where a request stands on approvals under the policy that would allow it."""

    policy: Policy
    needed: int
    counted: tuple[str, ...]  # lowercased logins whose approval counts
    eligible: tuple[str, ...]  # who may still approve (lowercased), excluding author/requester

    @property
    def missing(self) -> int:
        return max(self.needed - len(self.counted), 0)


@dataclass(frozen=True)
class FileVerdict:
    path: str
    kind: Literal["request", "revocation", "policy"]
    state: State
    request: AccessRequest | None = None
    decision: Decision | None = None
    approval: Approval | None = None
    findings: tuple[Finding, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Report:
    """Everything the gate says about one pull request at one head commit."""

    pr: int
    head: str
    base: str
    author: str
    verdicts: tuple[FileVerdict, ...] = ()
    problems: tuple[str, ...] = ()  # PR-wide failures (mixed changes...), plain text
    notes: tuple[str, ...] = ()
    other_paths: tuple[str, ...] = field(default=())
    reviews: ReviewRecord = field(default_factory=ReviewRecord)  # whom pr-check may ask

    @property
    def state(self) -> State:
        states: list[State] = [v.state for v in self.verdicts]
        if self.problems:
            states.append("failure")
        return max(states, key=_RANK.__getitem__, default="success")

    @property
    def findings(self) -> list[Finding]:
        return [f for v in self.verdicts for f in v.findings]


# --------------------------------------------------------------------------- judging
def approval_state(
    request: AccessRequest,
    config: Config,
    policy_name: str,
    reviewers: frozenset[str],
    pr_author: str,
) -> Approval:
    """Approvals counted and missing under ``policy_name`` (reviewers already filtered by
    the §3 review rule)."""
    policy = next(p for p in config.policies if p.name == policy_name)
    excluded = {request.requester.lower(), pr_author.lower()}
    eligible = config.expand(policy.approvers) - excluded
    counted = tuple(sorted({r.lower() for r in reviewers} & eligible))
    needed = approvals_needed(policy, request)
    return Approval(policy, needed, counted, tuple(sorted(eligible - set(counted))))


def judge_request_verdict(
    request: AccessRequest,
    findings: Sequence[Finding],
    static: Decision,
    judged: Judgment,
    approval: Approval | None,
) -> FileVerdict:
    """An added or modified request, from the one judgment (reconciler.core.judgment):
    allowed -> success; only approvals missing -> pending; anything else -> failure."""
    errors = tuple(f for f in findings if f.severity == "error")
    if errors or not static.allowed or not (judged.allowed or judged.waiting):
        return FileVerdict(
            request.path, "request", "failure", request, static, None, tuple(findings)
        )
    if judged.allowed and judged.decision is not None:
        return FileVerdict(request.path, "request", "success", request, judged.decision, approval)
    return FileVerdict(
        request.path, "request", "pending", request, static, approval, tuple(findings)
    )


def covering_policies(request: AccessRequest, config: Config) -> list[Policy]:
    """Policies for the request's provider, scope and role (who may approve it)."""
    return [
        p
        for p in config.policies
        if p.provider == request.provider
        and request.role in p.roles
        and any(fnmatch.fnmatchcase(request.scope, s) for s in p.scopes)
    ]


def allowing_policies(request: AccessRequest, config: Config) -> list[Policy]:
    """The policies that allow *this* request (cover its provider, scope and role and list
    its requester), whatever its window: whose approvers may also end it early."""
    return [
        p
        for p in covering_policies(request, config)
        if request.requester.lower() in config.expand(p.requesters)
    ]


def may_revoke(login: str, request: AccessRequest | None, path: str, config: Config) -> bool:
    """Whether ``login`` may delete the request file: its requester, or an eligible
    approver of a policy that allows that request (not of any policy that happens to cover
    the same scope and role). An unparseable file: only the directory's owner."""
    who = login.lower()
    owner = (request.requester if request else _directory_login(path)).lower()
    if who == owner:
        return True
    if request is None:
        return False
    eligible = set().union(
        *(config.expand(p.approvers) for p in allowing_policies(request, config))
    )
    return who in eligible - {owner}


def judge_revocation(
    path: str, request: AccessRequest | None, config: Config, pr_author: str
) -> FileVerdict:
    """A deleted request file (early revocation): its requester, or an eligible approver
    of a policy that allows that request, may delete it; anyone else may not."""
    owner = (request.requester if request else _directory_login(path)).lower()
    if pr_author.lower() == owner:
        return FileVerdict(path, "revocation", "success", request, note="revoked by its requester")
    if may_revoke(pr_author, request, path, config):
        return FileVerdict(path, "revocation", "success", request, note="revoked by an approver")
    finding = Finding(
        path,
        1,
        "E-PR-REVOKE",
        f"{pr_author} may not delete this request: only its requester ({owner}) or an "
        "eligible approver of a policy that allows it may revoke it early",
    )
    return FileVerdict(path, "revocation", "failure", request, findings=(finding,))


def _directory_login(path: str) -> str:
    parts = path.split("/")
    return parts[1] if len(parts) > 2 else ""


# --------------------------------------------------------------------------- rendering
def status_description(report: Report) -> str:
    """The commit status text (GitHub keeps 140 characters)."""
    state = report.state
    if state == "success":
        n = sum(1 for v in report.verdicts if v.kind == "request")
        text = f"{n} request(s) approved" if n else "may merge"
        glass = _break_glass(report)
        if glass:
            within = format_duration(min(_within(v) for v in glass))
            text = f"BREAK-GLASS, no approval needed: an approver must review within {within}"
        if any(v.kind == "revocation" for v in report.verdicts):
            text += "; revocation allowed"
        return _cut(text)
    if state == "failure":
        count = len(report.findings) + len(report.problems)
        first = (
            report.problems[0]
            if report.problems
            else str(report.findings[0].message)
            if report.findings
            else "refused"
        )
        return _cut(f"{count} problem(s): {first}")
    pending = [v.approval for v in report.verdicts if v.state == "pending" and v.approval]
    parts = [_needs(a) for a in pending]
    return _cut("; ".join(dict.fromkeys(parts)) or "waiting for approvals")


def _needs(a: Approval) -> str:
    who = ", ".join(a.policy.approvers)
    names = ", ".join(a.eligible)
    extra = f" ({names})" if names and names != who else ""
    return f"needs {a.missing} more approval{'s' if a.missing != 1 else ''} from {who}{extra}"


def _cut(text: str, limit: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_ICON: dict[State, str] = {"success": "✅", "pending": "⏳", "failure": "❌"}
_HEADLINE: dict[State, str] = {
    "success": "may merge",
    "pending": "waiting for approvals",
    "failure": "cannot merge",
}


def render_markdown(report: Report, now: datetime) -> str:
    """The PR comment (starts with the hidden marker) and job summary."""
    state = report.state
    lines = [
        MARKER,
        f"### {_ICON[state]} accessctl: {_HEADLINE[state]}"
        + (" (🚨 break-glass: review required after the merge)" if _break_glass(report) else ""),
        "",
        f"Pull request \\#{report.pr} by {_code(report.author)}, checked at "
        f"{markdown_code(report.head[:12])} against the policies of the base commit "
        f"{markdown_code(report.base[:12])} ({format_rfc3339(now)}).",
        "",
    ]
    lines += [f"- ❌ {markdown_text(p)}" for p in report.problems]
    lines += [f"- {markdown_text(n)}" for n in report.notes]
    if report.problems or report.notes:
        lines.append("")
    lines += _break_glass_notice(report)
    requests = [v for v in report.verdicts if v.kind == "request"]
    if requests:
        lines += _request_table(requests)
    revocations = [v for v in report.verdicts if v.kind == "revocation"]
    if revocations:
        lines += ["", "**Early revocations** (deleted request files)", ""]
        lines += [
            f"- {_ICON[v.state]} {_code(v.path)}: {markdown_text(v.note or _first(v))}"
            for v in revocations
        ]
    problems = [f for v in report.verdicts for f in v.findings]
    if problems:
        lines += ["", "**Problems**", ""]
        lines += [
            f"- {markdown_code(f'{f.file}:{f.line}')} {markdown_code(f.code)} {markdown_text(f.message)}"
            for f in problems
        ]
    return "\n".join(lines) + "\n"


def _is_break_glass(v: FileVerdict) -> bool:
    """A break-glass request the gate lets through (allowed under a break-glass policy)."""
    return (
        v.kind == "request"
        and v.state == "success"
        and v.request is not None
        and v.request.break_glass
        and v.approval is not None
        and v.approval.policy.break_glass is not None
    )


def _break_glass(report: Report) -> list[FileVerdict]:
    return [v for v in report.verdicts if _is_break_glass(v)]


def _within(v: FileVerdict) -> timedelta:
    assert v.approval is not None and v.approval.policy.break_glass is not None
    return v.approval.policy.break_glass.review_within


def _break_glass_notice(report: Report) -> list[str]:
    """Said loudly, before anything else: access without approval, and the review it owes."""
    out: list[str] = []
    for v in _break_glass(report):
        assert v.request is not None and v.approval is not None
        policy, within = v.approval.policy, format_duration(_within(v))
        assert policy.break_glass is not None
        who = _codes(v.approval.eligible) or "nobody: fix the policy's approvers"
        out += [
            "> [!CAUTION]",
            f"> 🚨 **BREAK-GLASS**: {_code(v.path)} is emergency access **without approval** "
            f"for {_code(v.request.requester)} (policy {_code(policy.name)}: at most "
            f"{format_duration(policy.break_glass.max_duration)}, ticket "
            f"{_code(v.request.ticket or '')}).",
            ">",
            f"> After the merge, an eligible approver of {_code(policy.name)} ({who}; not the "
            f"requester, not the author) **must approve this pull request within {within}** of "
            "the merge. Until then `accessctl status` shows it `break-glass-unreviewed` and "
            "`accessctl audit` reports it; after that it is `break-glass-review-overdue`.",
            "",
        ]
    return out


def _first(v: FileVerdict) -> str:
    return v.findings[0].message if v.findings else ""


def _code(text: str) -> str:
    """An identifier as an inline code span, safe in a table cell too (core.escape)."""
    return markdown_cell(text)


def _codes(items: Iterable[str]) -> str:
    return ", ".join(_code(i) for i in items)


def _request_table(verdicts: Sequence[FileVerdict]) -> list[str]:
    lines = [
        "| | file | who | gets | where | for how long | why | policy | approvals |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        r = v.request
        if r is None:
            continue
        principal = v.decision.principal if v.decision else None
        cells = [
            _ICON[v.state],
            _code(v.path),
            _code(r.requester) + (f" as {_code(principal)}" if principal else ""),
            _code(r.role),
            f"{_code(r.provider)} {_code(r.scope)}",
            _how_long(r, v.decision),
            markdown_text(r.reason, limit=300)
            + (f" (ticket {markdown_text(r.ticket)})" if r.ticket else ""),
            _code(_policy_name(v)),
            _approvals_cell(v),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _policy_name(v: FileVerdict) -> str:
    if v.approval:
        return v.approval.policy.name
    return (v.decision.policy if v.decision else None) or "none"


def _how_long(r: AccessRequest, decision: Decision | None) -> str:
    parts = []
    if decision and decision.window and decision.window.end > decision.window.begin:
        parts.append(format_duration(decision.window.length))
    elif r.duration:
        parts.append(format_duration(r.duration))
    if r.start:
        parts.append(f"from {format_rfc3339(r.start)}")
    if r.expires:
        parts.append(f"until {format_rfc3339(r.expires)}")
    return _code(" ".join(parts) or "unknown")


def _approvals_cell(v: FileVerdict) -> str:
    a = v.approval
    if a is None:
        return "not checked" if v.state == "failure" else "none needed"
    if _is_break_glass(v):
        return f"none before the merge (break-glass): review within {format_duration(_within(v))}"
    text = f"{len(a.counted)}/{a.needed}: " + (_codes(a.counted) or "none yet")
    if a.missing:
        text += f"; missing {a.missing} from {_codes(a.policy.approvers)}"
        if a.eligible:
            text += f" ({_codes(a.eligible)})"
    return text


def status_state(state: State) -> str:
    """Commit status state for a verdict (GitHub: success, pending, failure, error)."""
    return state
