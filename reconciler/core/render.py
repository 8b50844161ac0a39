"""Plans and apply results as text for people, JSON for scripts, Markdown for job summaries.

Pure: returns strings and dicts. Text that came from a file (paths, roles, scopes,
messages) goes through ``core/escape`` before it reaches a terminal, JSON, Markdown or a
workflow command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from reconciler.core.escape import (
    annotation,
    clean_json,
    log_line,
    markdown_cell,
    markdown_text,
    terminal_text,
)
from reconciler.core.models import Change, ChangeKind, ChangeResult, Grant, Plan
from reconciler.core.timeutil import format_duration, format_rfc3339

SUMMARY_KEEP_ROWS = 200
_SIGN = {ChangeKind.GRANT: "+", ChangeKind.REVOKE: "-", ChangeKind.KEEP: " "}


@dataclass(frozen=True)
class Problem:
    """Something that kept the reconciler from acting: a bad file, a refused or unverifiable
    request, a scope that could not be read. ``file``/``line`` when it concerns a file,
    ``provider``/``scope`` when it concerns a scope."""

    code: str
    message: str
    file: str | None = None
    line: int | None = None
    provider: str | None = None
    scope: str | None = None
    severity: str = "error"  # error (exit 1), warning, or note (an intended outcome)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line or 1}: " if self.file else ""
        if self.scope:
            where += f"{self.provider}:{self.scope}: "
        return f"{where}{self.code}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "code": self.code,
            "message": self.message,
            "provider": self.provider,
            "scope": self.scope,
            "severity": self.severity,
        }


def _left(g: Grant, now: datetime) -> str:
    if g.end is None:
        return ""
    if g.end <= now:
        return " (ended)"
    return f" ({format_duration(g.end - now)} left)"


def _change_lines(change: Change, now: datetime) -> list[str]:
    g = change.grant
    head = (
        f"  {_SIGN[change.kind]} {change.kind.value:<6} {terminal_text(g.principal)}  "
        f"{terminal_text(g.role)}  on {terminal_text(g.provider)} {terminal_text(g.scope)}"
    )
    if change.kind is ChangeKind.KEEP:  # unchanged grants: one line each, like a listing
        until = f"  until {format_rfc3339(g.end)}{_left(g, now)}" if g.end else ""
        request = f"  ({terminal_text(g.request)})" if g.request else ""
        return [head + until + request]
    lines = [head]
    when = []
    if g.begin is not None and g.begin > now:
        when.append(f"from {format_rfc3339(g.begin)}")
    if g.end is not None:
        when.append(f"until {format_rfc3339(g.end)}{_left(g, now)}")
    if when:
        lines.append("      " + "  ".join(when))
    if g.request:
        pr = f" (PR #{g.pr})" if g.pr else ""
        lines.append(f"      request: {terminal_text(g.request)}{pr}")
    lines.append(f"      why: {terminal_text(change.reason)}")
    return lines


def summary_line(plan: Plan) -> str:
    if plan.empty:
        return f"No changes. {len(plan.keep)} managed grant(s) unchanged."
    return (
        f"Plan: {len(plan.grant)} to grant, {len(plan.revoke)} to revoke, "
        f"{len(plan.keep)} unchanged."
    )


def render_text(
    plan: Plan,
    now: datetime,
    problems: Sequence[Problem] = (),
    results: Sequence[ChangeResult] | None = None,
    *,
    show_keep: bool = True,
    title: str = "accessctl plan",
) -> str:
    """Terraform-like: ``+ grant``, ``- revoke``, ``  keep``, each with who/what/where/until/why."""
    out = [f"{title} at {format_rfc3339(now)}", ""]
    changes = [*plan.grant, *plan.revoke, *(plan.keep if show_keep else ())]
    for change in changes:
        out.extend(_change_lines(change, now))
    if changes:
        out.append("")
    out.append(summary_line(plan))
    if results is not None:
        out.extend(["", *render_results_text(results)])
    notes = [p for p in problems if p.severity == "note"]
    others = [p for p in problems if p.severity != "note"]
    if others:
        out.extend(["", f"{len(others)} problem(s):"])
        out.extend(log_line(f"  {p}") for p in others)
    if notes:
        out.extend(["", f"{len(notes)} note(s):"])
        out.extend(log_line(f"  {p}") for p in notes)
    return "\n".join(out)


def render_results_text(results: Sequence[ChangeResult]) -> list[str]:
    if not results:
        return ["Applied: nothing to do."]
    failed = [r for r in results if not r.ok]
    lines = [f"Applied: {len(results) - len(failed)} ok, {len(failed)} failed."]
    for r in results:
        g = r.change.grant
        status = "ok    " if r.ok else "FAILED"
        msg = f": {terminal_text(r.message)}" if r.message and not r.ok else ""
        lines.append(
            f"  {status} {_SIGN[r.change.kind]} {r.change.kind.value} {terminal_text(g.principal)} "
            f"{terminal_text(g.role)} on {terminal_text(g.scope)}{msg}"
        )
    return lines


def plan_json(plan: Plan, problems: Sequence[Problem] = ()) -> dict[str, object]:
    """``{"grant": [G], "revoke": [G], "keep": [G], "errors": [...]}``; every string from a
    file or a cloud is cleaned of control characters."""
    return clean_json(
        {
            "grant": [c.grant.to_json() for c in plan.grant],
            "revoke": [c.grant.to_json() for c in plan.revoke],
            "keep": [c.grant.to_json() for c in plan.keep],
            "errors": [p.to_json() for p in problems],
        }
    )


def result_json(result: ChangeResult) -> dict[str, object]:
    return clean_json(
        {
            "action": result.change.kind.value,
            **result.change.grant.to_json(),
            "reason": result.change.reason,
            "ok": result.ok,
            "message": result.message,
            "verified": result.verified,
            "sessions_ended_at": (
                format_rfc3339(result.sessions_ended_at) if result.sessions_ended_at else None
            ),
            "cloud_request_id": result.cloud_request_id,
        }
    )


def apply_json(
    plan: Plan, problems: Sequence[Problem], results: Sequence[ChangeResult]
) -> dict[str, object]:
    return {**plan_json(plan, problems), "results": [result_json(r) for r in results]}


def _md_row(change: Change, now: datetime, result: ChangeResult | None, with_result: bool) -> str:
    g = change.grant
    until = format_rfc3339(g.end) + _left(g, now) if g.end else ""
    request = markdown_cell(g.request) if g.request else ""
    if g.pr:
        request += f" (#{int(g.pr)})"
    status = ""
    if result is not None:
        status = "ok" if result.ok else "**failed**: " + markdown_text(result.message, 300)
    cells = [
        f"{_SIGN[change.kind].strip() or '='} {change.kind.value}",
        markdown_cell(g.principal),
        markdown_cell(g.role),
        f"{g.provider} {markdown_cell(g.scope)}",
        until,
        request,
        markdown_text(change.reason, 300),
    ]
    if with_result:
        cells.append(status)
    return "| " + " | ".join(cells) + " |"


def render_markdown(
    plan: Plan,
    now: datetime,
    problems: Sequence[Problem] = (),
    results: Sequence[ChangeResult] | None = None,
    *,
    title: str = "accessctl plan",
) -> str:
    """The job summary: a table of changes (and their outcome), then the problems."""
    out = [f"## {markdown_text(title)}", "", f"At {format_rfc3339(now)}. {summary_line(plan)}", ""]
    by_change = {id(r.change): r for r in results or ()}
    by_value = {r.change: r for r in results or ()}
    # Job summaries are capped at 1 MiB: every change is listed, unchanged grants up to a limit.
    rows = [*plan.grant, *plan.revoke, *plan.keep[:SUMMARY_KEEP_ROWS]]
    if rows:
        header = ["", "who", "role", "where", "until", "request", "why"]
        if results is not None:
            header.append("result")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for change in rows:
            result = by_change.get(id(change)) or by_value.get(change)
            if results is not None and result is None and change.kind is not ChangeKind.KEEP:
                result = ChangeResult(change, ok=False, message="not attempted")
            out.append(_md_row(change, now, result, results is not None))
        out.append("")
        if len(plan.keep) > SUMMARY_KEEP_ROWS:
            out.extend([f"…and {len(plan.keep) - SUMMARY_KEEP_ROWS} more unchanged grant(s).", ""])
    if problems:
        out.append(f"### {len(problems)} problem(s)")
        out.append("")
        out.extend(f"- {markdown_text(str(p), 600)}" for p in problems)
        out.append("")
    return "\n".join(out)


def render_annotations(
    problems: Sequence[Problem], results: Sequence[ChangeResult] = ()
) -> list[str]:
    """``::error`` workflow commands for every problem and every failed change."""
    lines = []
    for p in problems:
        level = {"warning": "warning", "note": "notice"}.get(p.severity, "error")
        if p.file:
            lines.append(annotation(level, f"{p.code}: {p.message}", file=p.file, line=p.line or 1))
        else:
            lines.append(annotation(level, str(p), title="accessctl"))
    for r in results:
        if not r.ok:
            g = r.change.grant
            msg = (
                f"{r.change.kind.value} {g.role} for {g.principal} on {g.scope} failed: {r.message}"
            )
            lines.append(annotation("error", msg, file=g.request, title="accessctl apply"))
    return lines
