"""``accessctl request``: write a valid request file from flags; ``--open-pr`` proposes it.

The file is judged by the policies (as if merged now, like the PR check) BEFORE it is
written, so a request that CI would refuse is never created. ``--open-pr`` commits the
one file on top of the remote's default branch with git plumbing (the current checkout
and its index are left alone), pushes a branch and opens the pull request.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from reconciler.commands.common import echo_json, handle_errors
from reconciler.core import providers
from reconciler.core.escape import log_line
from reconciler.core.timeutil import format_rfc3339, parse_duration, parse_rfc3339
from reconciler.errors import ConfigError
from reconciler.options import at_option, format_option, repo_option
from reconciler.requesting import (
    Target,
    check,
    commit_on_remote_branch,
    default_requester,
    open_pull,
    preflight,
)

MODELINE = "# yaml-language-server: $schema=../../reconciler/schemas/request.schema.json"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@:()-]*(?: [A-Za-z0-9_./@:(),-]+)*$")
# YAML 1.1 words that a plain scalar would turn into booleans or null
_YAML_WORDS = frozenset(
    w
    for word in ("y", "n", "yes", "no", "on", "off", "true", "false", "null")
    for w in (word, word.upper(), word.capitalize())
) | {"~"}
_PLAIN_DURATION = re.compile(r"^(?:[0-9]{1,6}[smhdw]|P[0-9WDTHMS]+)$")


def scalar(value: str) -> str:
    """A YAML scalar that reads back as exactly this string (quoted when plain is unsafe)."""
    if _PLAIN.match(value) and value not in _YAML_WORDS and ": " not in value and " #" not in value:
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-")
    return slug or "access"


@dataclass(frozen=True)
class Draft:
    requester: str
    provider: str
    scope: str
    role: str
    reason: str
    ticket: str | None
    duration: str | None
    start: str | None
    expires: str | None
    break_glass: bool = False

    def text(self) -> str:
        lines = [
            MODELINE,
            f"requester: {scalar(self.requester)}",
            f"provider: {self.provider}",
            f"scope: {scalar(self.scope)}",
            f"role: {scalar(self.role)}",
            f"reason: {scalar(self.reason)}",
        ]
        if self.ticket:
            lines.append(f"ticket: {scalar(self.ticket)}")
        if self.duration:
            plain = _PLAIN_DURATION.match(self.duration)
            lines.append(f"duration: {self.duration if plain else scalar(self.duration)}")
        if self.start:
            lines.append(f"start: {json.dumps(self.start)}")
        if self.expires:
            lines.append(f"expires: {json.dumps(self.expires)}")
        if self.break_glass:
            lines.append("break_glass: true")
        return "\n".join(lines) + "\n"

    def default_slug(self, now: datetime) -> str:
        if self.ticket:
            return slugify(self.ticket)
        role = self.role.rsplit("/", 1)[-1]
        return slugify(f"{role}-{now.strftime('%Y%m%d-%H%M')}")


def _time_flag(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return format_rfc3339(parse_rfc3339(value))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{name}") from None


def _duration_flag(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    return value


def _pr_body(draft: Draft, path: str) -> str:
    from reconciler.core.escape import markdown_code, markdown_text

    rows = [
        f"**Requester:** {markdown_text(draft.requester)}",
        f"**Access:** {markdown_code(draft.provider)} {markdown_code(draft.role)} on {markdown_code(draft.scope)}",
        f"**Why:** {markdown_text(draft.reason)}",
        f"**For:** {markdown_text(draft.duration or 'until ' + (draft.expires or '?'))}",
        f"**File:** {markdown_code(path)}",
        "",
        "Merging this pull request approves the request; access starts at the merge and "
        "ends on its own. The accessctl check below says which policy allows it and who may approve.",
    ]
    if draft.ticket:
        rows.insert(3, f"**Ticket:** {markdown_text(draft.ticket)}")
    if draft.break_glass:
        rows[:0] = [
            "> [!CAUTION]",
            "> **BREAK-GLASS**: this request may merge without approval. An eligible approver "
            "must approve this pull request after the merge, within the policy's review period.",
            "",
        ]
    return "\n".join(rows)


# --------------------------------------------------------------------------- command
@click.command("request")
# The registry as it stands when the command is built: every provider module has
# registered by then (importing reconciler registers the built-ins).
@click.option("--provider", type=click.Choice(providers.names()), required=True, help="The cloud.")
@click.option(
    "--scope",
    required=True,
    help="gcp: projects/<id>, folders/<n>, organizations/<n>; aws: a 12-digit account id.",
)
@click.option("--role", required=True, help="gcp: a role (roles/...); aws: a permission set name.")
@click.option("--duration", help="How long: 30m, 2h, 1d or ISO 8601 (PT2H).")
@click.option("--reason", required=True, help="Why you need it (at least 10 characters).")
@click.option("--ticket", help="Incident or change ticket (some policies require one).")
@click.option("--start", metavar="RFC3339", help="Not before this time.")
@click.option("--expires", metavar="RFC3339", help="A hard stop.")
@click.option(
    "--requester", metavar="LOGIN", help="Your GitHub login (default: git config github.user)."
)
@click.option(
    "--slug", help="File name under requests/<login>/ (default: from the ticket or role)."
)
@click.option(
    "--break-glass",
    is_flag=True,
    help="An emergency: merge without approval where a policy allows break-glass (a ticket "
    "is required, the window is short, an approver reviews it after the merge).",
)
@click.option("--open-pr", is_flag=True, help="Also push a branch and open the pull request.")
@repo_option
@at_option
@format_option("text", "json")
@handle_errors
def request_command(  # noqa: PLR0917 - click passes options as arguments
    provider: str,
    scope: str,
    role: str,
    duration: str | None,
    reason: str,
    ticket: str | None,
    start: str | None,
    expires: str | None,
    requester: str | None,
    slug: str | None,
    break_glass: bool,
    open_pr: bool,
    repo: Path,
    now: datetime,
    fmt: str,
) -> None:
    """Write requests/<login>/<slug>.yaml from flags, checked against the policies first.

    Nothing is written when the policies would refuse the request: the findings are
    printed instead (exit 1). With --open-pr the token (GITHUB_TOKEN or GH_TOKEN) and the
    origin remote are checked first; then the file is committed on a branch
    access/<login>/<slug> on top of origin's default branch (your checkout is left as it
    is), pushed, and a pull request is opened; its URL is printed. Rerunning the same
    command continues where it stopped: an identical file, an already pushed branch or an
    already open pull request is reused, never duplicated.

    Exit codes: 0 written (and PR opened); 1 refused by the policies, or the PR could
    not be opened (rerun to retry); 2 bad flags, broken policies, no token or remote for
    --open-pr, or a different file exists already at that path.
    """
    if not duration and not expires:
        raise click.UsageError("give --duration or --expires (or both)")
    if break_glass and start:
        raise click.UsageError("--break-glass access begins at the merge: drop --start")
    if break_glass and not ticket:
        raise click.UsageError("--break-glass needs --ticket (the incident it is for)")
    if not (repo / "policies").is_dir():
        raise ConfigError(
            f"{repo}: not an access repository (no policies/ directory); use --repo DIR"
        )
    login = requester or default_requester(repo)
    draft = Draft(
        requester=login,
        provider=provider,
        scope=scope,
        role=role,
        reason=reason,
        ticket=ticket,
        duration=_duration_flag(duration),
        start=_time_flag("start", start),
        expires=_time_flag("expires", expires),
        break_glass=break_glass,
    )
    name = slug or draft.default_slug(now)
    if not _SLUG.match(name):
        raise click.BadParameter(
            "a slug is lowercase letters, digits and hyphens, at most 48, starting with a letter or digit",
            param_hint="--slug",
        )
    path = f"requests/{login}/{name}.yaml"
    target = repo / path
    text = draft.text()
    where = preflight(repo) if open_pr else None  # token and remote first: nothing written
    rerun = target.exists() and target.read_text(encoding="utf-8", errors="replace") == text
    if target.exists() and not (rerun and open_pr):
        same = " with the same content (add --open-pr to propose it)" if rerun else ""
        raise ConfigError(f"{path} exists already{same}: choose another --slug (or edit that file)")
    findings = check(repo, path, text, now)
    if findings:
        if fmt == "json":
            echo_json({"ok": False, "file": path, "findings": [f.to_json() for f in findings]})
        else:
            click.echo(
                f"refused: {log_line(path)} would not pass the policies; nothing written", err=True
            )
            for f in findings:
                click.echo(f"  {log_line(str(f))}", err=True)
        sys.exit(1)
    if not rerun:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    url = None
    if where is not None:
        url = _open_pr(repo, where, draft, path=path, text=text, slug=name)
    if fmt == "json":
        echo_json({"ok": True, "file": path, "pull_request": url})
        return
    click.echo(path)
    if url:
        click.echo(f"pull request: {url}")
    else:
        click.echo(
            f"next: commit it on a branch and open a pull request (or rerun with --open-pr); "
            f"`accessctl validate {path}` checks it again",
            err=True,
        )


def _open_pr(repo: Path, where: Target, draft: Draft, *, path: str, text: str, slug: str) -> str:
    branch = f"access/{draft.requester}/{slug}"
    title = f"Access request: {draft.provider} {draft.role} on {draft.scope} for {draft.requester}"
    commit_on_remote_branch(repo, path, text, base=where.base, branch=branch, message=title)
    return open_pull(where, head=branch, title=title, body=_pr_body(draft, path))
