"""``accessctl status``: every request on the branch, its state and the time it has left."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click

from reconciler.commands.common import echo_json, handle_errors
from reconciler.core.escape import log_line, terminal_text
from reconciler.core.timeutil import format_rfc3339
from reconciler.options import at_option, format_option, repo_option, trust_git_option
from reconciler.trail import (
    Row,
    collect,
    committed_rows,
    stray_findings,
    uncommitted_rows,
    whoami,
)

# States whose row is followed by its note (why, or what a person must do).
_NOTED = frozenset(
    {
        "pending",
        "rejected",
        "revoked",
        "unverified",
        "suspended",
        "break-glass-unreviewed",
        "break-glass-review-overdue",
    }
)


def render_text(rows: list[Row], now: datetime) -> str:
    if not rows:
        return "No requests."
    # Paths and values come from files: a newline in a name must not start a log line.
    width = max(len(log_line(r.file)) for r in rows)
    lines = []
    for r in rows:
        what = f"{r.requester or '?'}: {r.provider} {r.role} on {r.scope}" if r.provider else ""
        left = r.time_left(now) if r.state in ("active", "scheduled", "expired") else ""
        file, what, left = log_line(r.file), terminal_text(what), terminal_text(left)
        lines.append(f"{file:<{width}}  {r.state:<9}  {left:<16}  {what}".rstrip())
        if r.note and r.state in _NOTED:
            lines.append(f"{'':<{width}}  ! {terminal_text(r.note)}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    lines.append("")
    lines.append(
        f"{len(rows)} request(s) at {format_rfc3339(now)}: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    return "\n".join(lines)


@click.command("status")
@repo_option
@format_option("text", "json")
@at_option
@trust_git_option
@click.option("--requester", metavar="LOGIN", help="Only this requester's requests.")
@click.option(
    "--mine",
    is_flag=True,
    help="Only yours (git config github.user, or your e-mail in identities).",
)
@click.option("--ref", default="HEAD", show_default=True, help="The branch to read.")
@handle_errors
def status_command(  # noqa: PLR0917 - click passes options as arguments
    repo: Path,
    fmt: str,
    now: datetime,
    trust_git: bool,
    requester: str | None,
    mine: bool,
    ref: str,
) -> None:
    """Every request on the branch with its state and the time it has left; requests
    deleted early stay listed as revoked until their window would have ended.

    States: pending (not merged yet, or merged after --at), scheduled (starts later),
    active, expired, revoked (the file was deleted before its end, or the reconciler
    recorded a revoke), rejected (invalid, or not allowed by the policies at the tip of
    the branch, as plan judges it), unverified (GitHub could not be asked whether it was
    approved: neither approved nor refused; a verified approval the reconciler stored on
    its ledger branch stands in), suspended (the requester is under an emergency stop in
    policies/: nothing is granted), break-glass-unreviewed (emergency access granted
    without approval whose follow-up review by an eligible approver is still owed),
    break-glass-review-overdue (that review is past due). Reads git (and the ledger branch when present);
    approvals come from GitHub when GITHUB_TOKEN/GITHUB_REPOSITORY are set, else from git
    alone. Needs no cloud access.

    Exit codes: 0 listed; 1 listed, but some request is unverified or GitHub or the ledger
    could not be read (the cause is printed once, on stderr); 2 not a git repository, a
    --ref that names no commit, or a bad flag.
    """
    if mine and not requester:
        requester = whoami(repo)
    trail = collect(repo, now=now, trust_git=trust_git, ref=ref, only_current=True)
    notes = trail.notes + [f"{f.file}: {f.message}" for f in stray_findings(repo, ref)]
    rows = committed_rows(trail.entries, now)
    if ref == "HEAD":
        rows += uncommitted_rows(repo, now)
    if requester:
        rows = [r for r in rows if (r.requester or "").lower() == requester.lower()]
    rows.sort(key=lambda r: r.file)
    for cause in trail.outages:  # said once, here, in words
        click.echo(f"error: {log_line(cause)}", err=True)
    if fmt == "json":
        echo_json({"requests": [r.to_json() for r in rows]})
    else:
        for note in notes:
            if not note.startswith("no GitHub"):  # status is git-first by design; no need to say
                click.echo(f"note: {log_line(note)}", err=True)
        click.echo(render_text(rows, now))
    if trail.incomplete or any(r.state == "unverified" for r in rows):
        sys.exit(1)
