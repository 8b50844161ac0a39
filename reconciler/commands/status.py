"""``accessctl status``: every request on the branch, its state and the time it has left."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from reconciler.commands.common import echo_json, handle_errors
from reconciler.core.audit import AuditEntry, State
from reconciler.core.escape import clean_json, log_line, terminal_text
from reconciler.core.timeutil import format_duration, format_rfc3339
from reconciler.errors import ConfigError
from reconciler.options import at_option, format_option, repo_option, trust_git_option


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


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


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

    listed = _git(repo, "status", "--porcelain", "--untracked-files=all", "--", f"{REQUESTS}/")
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
        decision, found = check_request_now(request, config, now)
        refused = bool(found) or request.path in bad
        window = decision.window
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
    login = _git(repo, "config", "github.user")
    if login:
        return login
    email = _git(repo, "config", "user.email").lower()
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
        if r.note and r.state in ("pending", "rejected", "revoked"):
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
    the branch, as plan judges it). Reads git (and the ledger branch when present); approvals
    come from GitHub when GITHUB_TOKEN/GITHUB_REPOSITORY are set, else from git alone.
    Needs no cloud access.

    Exit codes: 0 listed; 2 not a git repository or a bad flag.
    """
    from reconciler.commands.audit import collect

    if mine and not requester:
        requester = whoami(repo)
    entries, notes = collect(repo, now=now, trust_git=trust_git, ref=ref, only_current=True)
    rows = committed_rows(entries, now)
    if ref == "HEAD":
        rows += uncommitted_rows(repo, now)
    if requester:
        rows = [r for r in rows if (r.requester or "").lower() == requester.lower()]
    rows.sort(key=lambda r: r.file)
    if fmt == "json":
        echo_json({"requests": [r.to_json() for r in rows]})
        return
    for note in notes:
        if not note.startswith("no GitHub"):  # status is git-first by design; no need to say
            click.echo(f"note: {note}", err=True)
    click.echo(render_text(rows, now))
