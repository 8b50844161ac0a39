"""``accessctl audit``: the trail of every request version, from git, the ledger and GitHub."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import click

from reconciler.commands.common import handle_errors, write_step_summary
from reconciler.core.audit import AuditEntry, AuditFilter, short
from reconciler.core.escape import (
    annotation,
    clean_json,
    csv_cell,
    log_line,
    markdown_cell,
    markdown_code,
    markdown_text,
)
from reconciler.core.timeutil import format_duration, format_rfc3339
from reconciler.options import (
    at_option,
    format_option,
    optional_time,
    repo_option,
    trust_git_option,
)
from reconciler.trail import LedgerFacts, Trail, collect, stray_findings

CSV_FIELDS = (
    "file",
    "commit",
    "requester",
    "provider",
    "scope",
    "role",
    "reason",
    "pr",
    "approvers",
    "approved_at",
    "begin",
    "end",
    "granted_at",
    "revoked_at",
    "sessions_ended_at",
    "removed_at",
    "grant_lateness",
    "revoke_lateness",
    "state",
    "break_glass",
    "reviewed_after_by",
    "reviewed_after_at",
    "anomaly_codes",
    "anomalies",
    "events",
)


def entries_json(
    entries: Sequence[AuditEntry],
    ledger: LedgerFacts | None = None,
    activity: Mapping[tuple[str, str], dict[str, object]] | None = None,
) -> str:
    """``{"requests": [...], "ledger": {...}}``, one entry per line: readable, and the C
    encoder keeps a 50,000-entry audit fast (``indent=`` would fall back to the pure-Python
    one)."""
    tail = json.dumps(clean_json(ledger.to_json()) if ledger is not None else None)
    if not entries:
        return '{"requests": [], "ledger": ' + tail + "}"
    rows = ",\n".join("  " + json.dumps(clean_json(_row(e, activity))) for e in entries)
    return '{"requests": [\n' + rows + '\n],\n"ledger": ' + tail + "}"


def _row(
    e: AuditEntry, activity: Mapping[tuple[str, str], dict[str, object]] | None
) -> dict[str, object]:
    row = e.to_json()
    if activity is not None:  # audit --activity: the summary, null where no grant was held
        row["activity"] = activity.get((e.file, e.commit))
    return row


def with_activity(
    entries: list[AuditEntry], now: datetime, scope: str | None, since: datetime | None, repo: Path
) -> tuple[list[AuditEntry], dict[tuple[str, str], dict[str, object]], list[str]]:
    """``--activity``: each entry's activity summary (reconciler.activity), the anomalies
    ``used-after-end`` and ``denied-attempts`` added, and the scopes that could not be read."""
    from reconciler.activity.usecase import collect_activity, tip_config
    from reconciler.core.activity import anomalies_of
    from reconciler.core.audit import Anomaly

    reading = collect_activity(entries, tip_config(repo), now=now, scope_filter=scope, since=since)
    found = {(a.grant.request, a.grant.version): a for a in reading.report.grants}
    out = []
    for e in entries:
        a = found.get((e.file, e.commit))
        extra = tuple(Anomaly(code, text) for code, text in anomalies_of(a)) if a else ()  # type: ignore[arg-type]
        out.append(replace(e, anomalies=e.anomalies + extra) if extra else e)
    errors = [
        f"activity: {err.provider} {err.scope}: {err.message}" for err in reading.report.errors
    ]
    return out, {k: a.summary() for k, a in found.items()}, errors


def _t(value: datetime | None) -> str:
    return format_rfc3339(value) if value else "-"


def lateness(seconds: int | None) -> str:
    """``+5m``, ``-2m``, ``0``; ``-`` when not applicable."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    sign = "+" if seconds > 0 else "-"
    return sign + format_duration(timedelta(seconds=abs(seconds)))


def ledger_lines(ledger: LedgerFacts | None) -> list[str]:
    """The ledger as evidence, for people: where it stands and each problem."""
    if ledger is None:
        return []
    if not ledger.present:
        head = f"ledger {ledger.branch}: NOT FOUND"
    else:
        where = f" @ {short(ledger.head)}" if ledger.head else ""
        if ledger.verified:
            trust = "verified: written by the reconciler"
        elif ledger.verified is None:
            why = f" ({ledger.unverified_reason})" if ledger.unverified_reason else ""
            trust = f"not verified{why}"
        else:
            trust = "PROBLEMS FOUND"
        head = f"ledger {ledger.branch}{where}: {trust}"
    problems = [f"  ! {p.code}: {p.message}" for p in ledger.problems]
    return [head, *problems]


def render_text(trail: Trail, entries: Sequence[AuditEntry], now: datetime) -> str:
    """A readable timeline: the ledger's standing, then one block per version, its events
    in time order."""
    blocks = ["\n".join(log_line(line) for line in ledger_lines(trail.ledger))]
    if not entries:
        blocks.append("No request versions on this branch match.")
        return "\n\n".join(b for b in blocks if b)
    blocks += [_text_block(e, now) for e in entries]
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.state] = counts.get(e.state, 0) + 1
    anomalies = sum(len(e.anomalies) for e in entries)
    events = sum(len(e.events) for e in entries)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    blocks.append(
        f"{len(entries)} version(s) as of {format_rfc3339(now)}: {summary}; "
        f"{anomalies} anomaly(ies), {events} event(s)"
    )
    return "\n\n".join(b for b in blocks if b)


def _text_block(e: AuditEntry, now: datetime) -> str:
    what = f"{e.provider} {e.role} on {e.scope}" if e.provider else "(invalid request file)"
    glass = "  BREAK-GLASS" if e.break_glass else ""
    lines = [
        f"{e.file} @ {short(e.commit)}  [{e.state}]{glass}",
        f"  {e.requester or '?'}: {what}",
    ]
    if e.policy:
        lines[-1] += f"  (policy {e.policy})"
    if e.reason:
        lines.append(f"  reason: {e.reason}" + (f"  ticket: {e.ticket}" if e.ticket else ""))
    events: list[tuple[datetime, int, str]] = []
    if e.committed_at:
        via = f"PR #{e.pr}, " if e.pr else ""
        events.append((e.committed_at, 0, f"requested   by {e.author}"))
        events.append((e.committed_at, 0, f'merged      {via}{short(e.commit)} "{e.subject}"'))
    if e.approved_at:
        if e.approvers is None:
            who = "the merge (reviews not checked: git only)"
        elif e.approvers:
            who = ", ".join(e.approvers)
        elif e.break_glass:
            who = "nobody: break-glass, emergency access without approval"
        else:
            who = "the merge alone (no review counted)"
        events.append((e.approved_at, 1, f"approved    by {who}"))
    if e.begin and e.end:
        events.append((e.begin, 2, f"begins      window of {format_duration(e.end - e.begin)}"))
        events.append((e.end, 5, "ends"))
    if e.removal:
        verb = "deleted" if e.removal.deleted else "replaced"
        events.append((e.removal.at, 4, f"{verb:<11} by {short(e.removal.commit)}"))
    events += [(t, 3, f"ledger      {text}") for t, text in e.timeline]
    if e.reviewed_after_at is not None:  # break-glass: the follow-up, never an approval
        events.append(
            (e.reviewed_after_at, 3, f"reviewed    after the merge by {e.reviewed_after_by}")
        )
    for when, _, text in sorted(events, key=lambda x: (x[0], x[1])):
        mark = " " if when <= now else "~"  # ~ marks what lies after --at
        lines.append(f"  {mark}{format_rfc3339(when)}  {text}")
    if e.state == "active" and e.end:
        lines.append(f"   {format_duration(e.end - now)} left")
    if e.grant_lateness is not None or e.revoke_lateness is not None:
        lines.append(
            f"  lateness: grant {lateness(e.grant_lateness)}, revoke {lateness(e.revoke_lateness)}"
        )
    lines += [f"  * {ev.code}: {ev.message}" for ev in e.events]
    lines += [f"  ! {a.code}: {a.message}" for a in e.anomalies]
    # Paths, reasons, authors and subjects come from git: none may start a log line (a
    # "::error::" workflow command in a scheduled job) or carry terminal escapes.
    return "\n".join(log_line(line) for line in lines)


def render_csv(entries: Sequence[AuditEntry]) -> str:
    """The JSON fields as columns; ``anomalies`` and ``events`` hold their JSON lists (the
    objects with their codes), ``anomaly_codes`` the codes alone, for a filter."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for e in entries:
        row = e.to_json()
        row["approvers"] = "; ".join(e.approvers) if e.approvers is not None else ""
        row["anomaly_codes"] = "; ".join(a.code for a in e.anomalies)
        row["anomalies"] = json.dumps(row["anomalies"]) if e.anomalies else ""
        row["break_glass"] = "true" if e.break_glass else "false"
        row["events"] = json.dumps(row["events"]) if e.events else ""
        writer.writerow({k: "" if row[k] is None else csv_cell(str(row[k])) for k in CSV_FIELDS})
    return buf.getvalue().rstrip("\n")


def _markdown_ledger(ledger: LedgerFacts | None) -> list[str]:
    if ledger is None:
        return []
    lines = ledger_lines(ledger)
    out = [f"**{markdown_text(lines[0])}**"]
    out += [
        f"- ⚠️ `{p.code}`: {markdown_text(p.message)}"
        + (f" ({markdown_code(short(p.commit))})" if p.commit else "")
        for p in ledger.problems
    ]
    return ["\n".join(out), ""]


def render_markdown(trail: Trail, entries: Sequence[AuditEntry], now: datetime) -> str:
    head = [f"## accessctl audit ({format_rfc3339(now)})", ""]
    for cause in trail.outages:
        head += [f"> **Incomplete:** {markdown_text(cause)}", ""]
    head += _markdown_ledger(trail.ledger)
    rows = [
        "\n".join(head)
        + "\n| file | requester | access | approved | window | granted | revoked | state "
        "| anomalies | events |\n|---|---|---|---|---|---|---|---|---|---|"
    ]
    for e in entries:
        provider, role, scope = (markdown_cell(v or "?") for v in (e.provider, e.role, e.scope))
        access = f"{provider} {role} on {scope}"
        approved = _t(e.approved_at)
        if e.pr:
            approved += f" (#{int(e.pr)})"
        if e.approvers:
            approved += " by " + ", ".join(markdown_text(a) for a in e.approvers)
        if e.reviewed_after_at is not None:  # break-glass: its follow-up, not an approval
            who = markdown_text(e.reviewed_after_by or "?")
            approved += f"; reviewed after the merge by {who} at {_t(e.reviewed_after_at)}"
        granted, revoked = _t(e.granted_at), _t(e.revoked_at)
        if e.grant_lateness is not None:
            granted += f" ({lateness(e.grant_lateness)})"
        if e.revoke_lateness is not None:
            revoked += f" ({lateness(e.revoke_lateness)})"
        if e.sessions_ended_at is not None:
            revoked += f"; sessions before {_t(e.sessions_ended_at)} denied"
        rows.append(
            "| "
            + " | ".join(
                [
                    markdown_cell(e.file),
                    markdown_text(e.requester or "?"),
                    access,
                    approved,
                    f"{_t(e.begin)} → {_t(e.end)}",
                    granted,
                    revoked,
                    f"**{e.state}**" + (" 🚨 break-glass" if e.break_glass else ""),
                    "<br>".join(f"`{a.code}` {markdown_text(a.message)}" for a in e.anomalies),
                    "<br>".join(f"`{v.code}` {markdown_text(v.message)}" for v in e.events),
                ]
            )
            + " |"
        )
    return "\n".join(rows)


def github_annotations(trail: Trail, entries: Sequence[AuditEntry]) -> list[str]:
    """Workflow annotations: ledger problems (errors; a missing ledger: a warning), an
    incomplete audit (an error, its cause in the log and the summary), each anomaly."""
    out = []
    ledger = trail.ledger
    for p in ledger.problems if ledger is not None else ():
        level = "warning" if p.code == "ledger-missing" else "error"
        out.append(annotation(level, f"{p.code}: {p.message}", title="accessctl ledger"))
    if trail.incomplete:
        out.append(
            annotation(
                "error",
                "the audit is incomplete: some approvals or facts could not be verified "
                "(the cause is in the log and the job summary)",
                title="accessctl audit",
            )
        )
    for e in entries:
        for a in e.anomalies:
            out.append(
                annotation("warning", a.message, file=e.file, title=f"accessctl audit: {a.code}")
            )
    return out


@click.command("audit")
@repo_option
@format_option("text", "json", "csv", "markdown", "github")
@at_option
@trust_git_option
@click.option("--requester", metavar="LOGIN", help="Only this requester's requests.")
@click.option(
    "--scope", metavar="SCOPE", help="Only this scope (exact, or a glob like projects/pay-*)."
)
@click.option(
    "--since",
    metavar="RFC3339",
    callback=optional_time,
    help="Only versions alive at or after this time.",
)
@click.option(
    "--until",
    metavar="RFC3339",
    callback=optional_time,
    help="Only versions merged before this time.",
)
@click.option(
    "--ref", default="HEAD", show_default=True, help="The branch whose history is audited."
)
@click.option(
    "--ledger-branch",
    default="accessctl-ledger",
    show_default=True,
    help="Where apply records what it did (local branch or origin/<branch>).",
)
@click.option("--no-ledger", is_flag=True, help="Ignore the ledger: git history only.")
@click.option(
    "--activity",
    "with_activity_logs",
    is_flag=True,
    help="Also read the clouds' audit logs (as `accessctl activity` does): each entry's "
    "calls, denied calls and calls after its end; anomalies used-after-end, denied-attempts.",
)
@click.option(
    "--fail-on-anomaly",
    is_flag=True,
    help="Exit 1 when any listed version has an anomaly, or the ledger is missing or has a "
    "problem (events such as an early deletion never count).",
)
@handle_errors
def audit_command(  # noqa: PLR0917 - click passes options as arguments
    repo: Path,
    fmt: str,
    now: datetime,
    trust_git: bool,
    requester: str | None,
    scope: str | None,
    since: datetime | None,
    until: datetime | None,
    ref: str,
    ledger_branch: str,
    no_ledger: bool,
    with_activity_logs: bool,
    fail_on_anomaly: bool,
) -> None:
    """The audit trail: every version of every request file that reached the branch.

    One pass over the branch's first-parent history, joined with the ledger branch
    (what apply granted and revoked, when, how late, and whether it failed; verified, not
    believed) and, without --trust-git and with GITHUB_TOKEN/GITHUB_REPOSITORY set, each
    version's pull request and approvers. States are as of --at; an approval GitHub could
    not confirm is `unverified`. Each anomaly and event has a stable code (docs/audit.md).

    Exit codes: 0 the trail was printed (anomalies are part of it; add --fail-on-anomaly
    to exit 1 on them, on ledger problems and on a missing ledger); 1 GitHub or the ledger
    could not be read, so the trail is incomplete (the cause is printed once, on stderr);
    2 not a git repository, a --ref that names no commit, or a bad flag.
    """
    trail = collect(
        repo,
        now=now,
        trust_git=trust_git,
        ref=ref,
        ledger_branch=None if no_ledger else ledger_branch,
    )
    strays = stray_findings(repo, ref)
    notes = trail.notes + [f"{f.file}: {f.message}" for f in strays]
    wanted = AuditFilter(requester=requester, scope=scope, since=since, until=until)
    entries = [e for e in trail.entries if wanted.admits(e)]
    activity: dict[tuple[str, str], dict[str, object]] | None = None
    unread: list[str] = []
    if with_activity_logs:
        entries, activity, unread = with_activity(entries, now, scope, since, repo)
        trail.outages.extend(unread)
    for note in notes:
        click.echo(f"note: {log_line(note)}", err=True)
    for problem in trail.ledger.problems if trail.ledger is not None else ():
        click.echo(f"warning: LEDGER: {log_line(problem.message)} [{problem.code}]", err=True)
    for cause in trail.outages:  # said once, here, in words
        click.echo(f"error: {log_line(cause)}", err=True)
    if fmt == "json":
        click.echo(entries_json(entries, trail.ledger, activity))
    elif fmt == "csv":
        click.echo(render_csv(entries))
    elif fmt == "markdown":
        click.echo(render_markdown(trail, entries, now))
    else:
        click.echo(render_text(trail, entries, now))
    if fmt == "github":  # a scheduled compliance job: annotations, a summary table
        for stray in strays:
            click.echo(annotation("warning", stray.message, file=stray.file, title="accessctl"))
        for line in github_annotations(trail, entries):
            click.echo(line)
        write_step_summary(render_markdown(trail, entries, now))
    if trail.incomplete:
        sys.exit(1)
    flagged = trail.ledger is not None and bool(trail.ledger.problems)
    if fail_on_anomaly and (flagged or any(e.anomalies for e in entries)):
        sys.exit(1)
