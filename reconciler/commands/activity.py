"""``accessctl activity``: what each grant was used for, and who tried without one."""

from __future__ import annotations

import csv
import io
import os
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import click

from reconciler.commands.common import echo_json, handle_errors, write_step_summary
from reconciler.core.activity import ActivityReport, GrantActivity, LogEvent
from reconciler.core.audit import AuditEntry, AuditFilter
from reconciler.core.escape import annotation, csv_cell, log_line, markdown_cell, markdown_text
from reconciler.core.models import Config
from reconciler.core.timeutil import format_rfc3339
from reconciler.options import (
    at_option,
    format_option,
    optional_duration,
    optional_time,
    repo_option,
    trust_git_option,
)

CSV_FIELDS = (
    "kind",
    "request",
    "principal",
    "provider",
    "scope",
    "role",
    "time",
    "service",
    "action",
    "resource",
    "denied",
    "outside_window",
)


def _event_line(event: LogEvent, outside: bool) -> str:
    marks = (" DENIED" if event.denied else "") + (" AFTER-END" if outside else "")
    what = f"{event.service} {event.action}".strip()
    on = f" {event.resource}" if event.resource else ""
    return f"    {format_rfc3339(event.time)}  {what}{on}{marks}"


def _grant_block(a: GrantActivity) -> list[str]:
    g = a.grant
    lines = [
        f"{g.request}",
        f"  {g.principal}: {g.provider} {g.role} on {g.scope}",
        f"  window {format_rfc3339(g.begin)} -> {format_rfc3339(g.end)}: {a.calls} call(s), "
        f"{a.denied} denied, {a.after_end} after the end",
    ]
    if a.unread:
        lines.append("  ! the log of this scope could not be read (see errors)")
    lines += [_event_line(s.event, s.outside_window) for s in a.events]
    return lines


def render_text(report: ActivityReport) -> str:
    lines: list[str] = []
    if not report.grants:
        lines.append("No grants in the selection.")
    for a in report.grants:
        lines += [*_grant_block(a), ""]
    if report.unauthorized:
        lines.append("Unauthorized attempts (denied, no grant there):")
        for e in report.unauthorized:
            lines.append(f"  {e.principal} on {e.provider} {e.scope}")
            lines.append(_event_line(e, False))
        lines.append("")
    for err in report.errors:
        lines.append(f"error: {err.provider} {err.scope}: {err.message}")
    for a, code, text in report.anomalies:
        lines.append(f"! {code}: {a.grant.request}: {text}")
    return "\n".join(log_line(line) for line in lines).rstrip()


def render_csv(report: ActivityReport) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    rows: list[dict[str, object]] = []
    for a in report.grants:
        g = a.grant
        for s in a.events:
            rows.append(
                {"kind": "grant", "request": g.request, "role": g.role}
                | s.event.to_json(s.outside_window)
                | {"principal": g.principal, "provider": g.provider, "scope": g.scope}
            )
    for e in report.unauthorized:
        rows.append(
            {"kind": "unauthorized", "request": "", "role": e.role or ""}
            | e.to_json(True)
            | {"principal": e.principal, "provider": e.provider, "scope": e.scope}
        )
    for row in rows:
        writer.writerow({k: csv_cell(str(row.get(k, ""))) for k in CSV_FIELDS})
    return buf.getvalue().rstrip("\n")


def render_markdown(report: ActivityReport, now: datetime) -> str:
    out = [
        f"## accessctl activity ({format_rfc3339(now)})",
        "",
        "| request | principal | access | window | calls | denied | after end |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in report.grants:
        g = a.grant
        after = f"**{a.after_end}**" if a.after_end else "0"
        out.append(
            f"| {markdown_cell(g.request)} | {markdown_text(g.principal)} | "
            f"{markdown_cell(g.provider)} {markdown_cell(g.role)} on {markdown_cell(g.scope)} | "
            f"{format_rfc3339(g.begin)} → {format_rfc3339(g.end)} | {a.calls} | {a.denied} | "
            f"{after} |"
        )
    if report.unauthorized:
        out += ["", "**Unauthorized attempts**", ""]
        for e in report.unauthorized:
            out.append(
                f"- {format_rfc3339(e.time)} {markdown_text(e.principal)} on "
                f"{markdown_cell(e.scope)}: {markdown_text(e.service)} "
                f"{markdown_text(e.action)} (denied)"
            )
    if report.errors:
        out += ["", "**Not read**", ""]
        out += [f"- {markdown_cell(e.scope)}: {markdown_text(e.message)}" for e in report.errors]
    return "\n".join(out)


def github_annotations(report: ActivityReport) -> list[str]:
    out = [
        annotation("warning", text, file=a.grant.request, title=f"accessctl activity: {code}")
        for a, code, text in report.anomalies
    ]
    out += [
        annotation(
            "warning",
            f"{e.principal} was denied {e.service} {e.action} on {e.scope} at "
            f"{format_rfc3339(e.time)} without a grant there",
            title="accessctl activity: unauthorized",
        )
        for e in report.unauthorized
    ]
    out += [
        annotation("error", f"{e.scope}: {e.message}", title="accessctl activity")
        for e in report.errors
    ]
    return out


@click.command("activity")
@repo_option
@format_option("text", "json", "csv", "github")
@at_option
@trust_git_option
@click.option("--requester", metavar="LOGIN", help="Only this requester's grants.")
@click.option("--scope", metavar="SCOPE", help="Only this scope (exact, or a glob).")
@click.option(
    "--since", metavar="RFC3339", callback=optional_time, help="Only grants alive at or after this."
)
@click.option(
    "--until", metavar="RFC3339", callback=optional_time, help="Only grants merged before this."
)
@click.option(
    "--allowance",
    metavar="DURATION",
    callback=optional_duration,
    help="How long after a grant's end a call still counts inside its window (revocation "
    "propagation). Default: providers.<cloud>.activity_allowance, else 5m.",
)
@click.option(
    "--fail-on-anomaly",
    is_flag=True,
    help="Exit 1 when a grant was used after its end, had denied calls, or someone known "
    "was denied without a grant.",
)
@click.option(
    "--ledger-branch",
    default="accessctl-ledger",
    show_default=True,
    help="Where apply records what it did: when each grant was really revoked, so the "
    "sessions it left open are read to their end.",
)
@click.option("--no-ledger", is_flag=True, help="Ignore the ledger: windows from git only.")
@click.option(
    "--ended-after",
    metavar="RFC3339",
    callback=optional_time,
    help="A scheduled run's report of its own span: only grants whose window ended after "
    "this time and by --at, and only unauthorized attempts made in that span (the "
    "reconcile workflow passes the previous successful apply's time).",
)
@click.option(
    "--notify",
    is_flag=True,
    help="Send the anomalies (used-after-end, denied-attempts, unauthorized-attempt) to the "
    "notification sinks the policies configure. A sink that fails is a warning.",
)
@handle_errors
def activity_command(  # noqa: PLR0917 - click passes options as arguments
    repo: Path,
    fmt: str,
    now: datetime,
    trust_git: bool,
    requester: str | None,
    scope: str | None,
    since: datetime | None,
    until: datetime | None,
    allowance: timedelta | None,
    fail_on_anomaly: bool,
    ledger_branch: str,
    no_ledger: bool,
    ended_after: datetime | None,
    notify: bool,
) -> None:
    """What each grant's principal did in its scope, from the clouds' audit logs.

    For every grant in the selection (the filters of `audit`), the calls its principal
    made in its scope from the window's begin until a session could have outlived its end
    (AWS: the permission set's session length after the revocation the ledger records;
    GCP Cloud Audit Logs through Cloud Logging; AWS CloudTrail); calls after the end are
    flagged, denied calls counted, and denied calls by people the identities know, made
    where they held no grant, listed as unauthorized attempts.

    Exit codes: 0 every scope's log was read; 1 a scope's log could not be read (the
    others are still reported), or --fail-on-anomaly and something was flagged; 2 a bad
    flag or configuration.
    """
    from reconciler.activity.usecase import collect_activity, tip_config
    from reconciler.trail import collect

    trail = collect(
        repo, now=now, trust_git=trust_git, ledger_branch=None if no_ledger else ledger_branch
    )
    wanted = AuditFilter(requester=requester, scope=scope, since=since, until=until)
    entries = [e for e in trail.entries if wanted.admits(e)]
    config = tip_config(repo)
    if ended_after is not None and ended_after > now:
        raise click.BadParameter(
            f"{format_rfc3339(ended_after)} is after --at {format_rfc3339(now)}",
            param_hint="--ended-after",
        )
    reading = collect_activity(
        entries,
        config,
        now=now,
        scope_filter=scope,
        since=since,
        allowance=allowance,
        ended_after=ended_after,
    )
    # The ledger only tells when revokes happened; it is audit's to judge, so its
    # problems are not repeated here, and a ledger that cannot be read is a note.
    for note in [*trail.notes, *trail.outages, *reading.notes]:
        click.echo(f"note: {log_line(note)}", err=True)
    report = reading.report
    for err in report.errors:
        click.echo(f"error: {log_line(f'{err.provider} {err.scope}: {err.message}')}", err=True)
    if fmt == "json":
        echo_json(report.to_json())
    elif fmt == "csv":
        click.echo(render_csv(report))
    else:
        click.echo(render_text(report))
    if fmt == "github":
        for line in github_annotations(report):
            click.echo(line)
        write_step_summary(render_markdown(report, now))
    if notify:
        _send(report, config, now, {(e.file, e.commit): e for e in entries})
    if report.errors:
        sys.exit(1)
    if fail_on_anomaly and (report.anomalies or report.unauthorized):
        sys.exit(1)


def _send(
    report: ActivityReport,
    config: Config,
    now: datetime,
    requests: Mapping[tuple[str, str], AuditEntry],
) -> None:
    """The anomalies to the configured sinks; every problem is a warning on stderr and
    never changes the exit code (no URL or secret is ever in it)."""
    from reconciler import notify

    events = notify.activity_events(report, now, notify.context_of(os.environ), requests)
    notifiers, broken = notify.build(config, os.environ)
    for problem in [*broken, *notify.deliver(notifiers, events)]:
        click.echo(f"warning: {log_line(problem)}", err=True)
