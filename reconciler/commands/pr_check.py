"""``accessctl pr-check``: the pull request gate (SPEC §4), run by access-check.yml.

Reads the PR number from the event, and everything that matters (author, head, base,
changed files, reviews) from the API. Policies come from the BASE commit, request files
from the HEAD commit, both read from git objects, never from the work tree, so the PR
cannot loosen the policy that judges it. Sets the ``accessctl/approval`` status, keeps
one PR comment, writes the job summary and annotations; exit 0 only when it may merge.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from reconciler.commands.common import echo_json, handle_errors, write_step_summary
from reconciler.core.asking import Outcome
from reconciler.core.escape import annotation, clean_json, log_line
from reconciler.core.prcheck import (
    MARKER,
    STATUS_CONTEXT,
    FileVerdict,
    Report,
    render_markdown,
    status_description,
)
from reconciler.core.timeutil import format_rfc3339
from reconciler.errors import ConfigError, GitHubError
from reconciler.github import GitHubClient
from reconciler.options import at_option, format_option, repo_option
from reconciler.reviewing import request_reviews


@click.command("pr-check")
@repo_option
@format_option("text", "json", "github")
@at_option
@click.option("--pr", "pr_number", type=int, help="Pull request number (default: from the event).")
@click.option(
    "--no-comment",
    is_flag=True,
    help="Do not write the PR comment or the commit status, request no review and send no "
    "request-waiting (nothing would remember that they were made).",
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the JSON report (its `state`: success, pending, failure) to this file, "
    "whatever --format is: a workflow decides from the state, not the exit code.",
)
@handle_errors
def pr_check_command(  # noqa: PLR0917 - click passes options as arguments
    repo: Path,
    fmt: str,
    now: datetime,
    pr_number: int | None,
    no_comment: bool,
    json_out: Path | None,
) -> None:
    """The pull request gate: changed paths, author, schema, policy and approvals.

    Runs inside a pull_request or pull_request_review workflow (GITHUB_EVENT_PATH,
    GITHUB_API_URL, GITHUB_TOKEN, GITHUB_REPOSITORY). Policies are read from the PR's base
    commit, requests from its head commit; both must be in the clone (fetch-depth: 0).
    Sets the accessctl/approval commit status and updates one PR comment. While a request
    waits for approvals, asks its eligible approvers for a review (once per pull request)
    and sends request-waiting (once per version of the request file).
    Exit 0 when the PR may merge, 1 when it may not (yet), 2 on configuration errors. The
    JSON `state` tells "may merge" (success), "waiting for approvals" (pending) and "cannot
    merge as it stands" (failure) apart; the workflow keeps a waiting PR green with it.
    """
    from reconciler.gate import check_pull_request  # heavy imports only when it runs

    number = pr_number if pr_number is not None else _event_pr_number()
    client = GitHubClient.from_env()
    report = check_pull_request(client, repo, number, now)
    asked = Outcome(open=report.reviews.requested, owner=client.repository.split("/")[0])
    summary = render_markdown(report, now)
    commented = True
    if no_comment:
        if report.state == "pending":
            click.echo(f"note: {NOT_WITHOUT_COMMENT}", err=True)
    else:
        asked, commented, summary = _publish(client, repo, report, now)
    write_step_summary(summary)
    if json_out is not None:
        payload = clean_json(_json(report, client.calls, asked))
        json_out.write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    _output(fmt, report, client.calls, asked)
    sys.exit(0 if report.state == "success" and commented else 1)


NOT_WITHOUT_COMMENT = (
    "--no-comment: no review requested and no request-waiting sent (the PR comment is what "
    "remembers that they were)"
)


def _notify_waiting(repo: Path, report: Report, now: datetime, sent: Sequence[str]) -> list[str]:
    """request-waiting to the sinks the BASE commit's policies configure, for each version
    of a waiting request file not in ``sent`` (keys our PR comment remembers); returns the
    keys delivered now. A sink whose variable this job was not given is skipped with a note
    (the check job's secrets are optional: docs/notifications.md); a delivery failure is a
    warning, never the gate's."""
    from reconciler import notify
    from reconciler.git import Tree
    from reconciler.repo import load_config

    events = notify.waiting_events(report, now, notify.context_of(os.environ))
    if not events:
        return []
    with Tree(repo, report.base) as base_tree:
        config, _ = load_config(base_tree)
    with Tree(repo, report.head) as head_tree:
        versions = {e.request: head_tree.blob(e.request) or "" for e in events if e.request}
    notifiers, skipped = notify.build(config, os.environ)
    for message in skipped:
        click.echo(f"note: request-waiting not sent: {message}", err=True)
    once = notify.deliver_once(notifiers, events, versions, sent)
    for label, path in once.already:
        click.echo(
            f"note: request-waiting for this version of {_oneline(path)} was sent to {label} "
            "before; not sent again",
            err=True,
        )
    for warning in once.warnings:
        click.echo(f"warning: {warning}", err=True)
    return list(once.delivered)


# ------------------------------------------------------------------------ gathering
def _event_pr_number() -> int:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        raise ConfigError(
            "GITHUB_EVENT_PATH is not set: pr-check runs in a pull_request or "
            "pull_request_review workflow (or pass --pr N)"
        )
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the event payload {path}: {exc}") from None
    pull = event.get("pull_request") if isinstance(event, dict) else None
    number = pull.get("number") if isinstance(pull, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        raise ConfigError(
            f"{path}: not a pull_request or pull_request_review event (no pull_request.number)"
        )
    return number


# ------------------------------------------------------------------------ reporting
def _publish(
    client: GitHubClient, repo: Path, report: Report, now: datetime
) -> tuple[Outcome, bool, str]:
    """The commit status first (it gates the merge), then review requests, request-waiting,
    and the one comment, which remembers what was sent. A status that cannot be set is a
    warning: the required check stays missing, which blocks the merge anyway (e.g. a
    fork's read-only token); so is a review request GitHub refuses. A comment that cannot
    be written fails this step (False), with the verdict still set in the status. Returns
    the review requests, whether the comment was written, and the job summary."""
    from reconciler import notify

    state = report.state
    try:
        client.create_status(
            report.head, state, status_description(report), STATUS_CONTEXT, _run_url()
        )
    except GitHubError as exc:
        click.echo(
            f"warning: could not set the {STATUS_CONTEXT} status: {log_line(str(exc))}", err=True
        )
    asked = request_reviews(client, report)
    for warning in asked.warnings:
        click.echo(f"warning: {log_line(warning)}", err=True)
    summary = _with_reviews(render_markdown(report, now), asked)
    try:
        ours = client.our_comment(report.pr, MARKER)
        sent = notify.remembered(ours.body, MARKER) if ours else ()
        sent += tuple(_notify_waiting(repo, report, now, sent))
        body = summary.replace(MARKER, f"{MARKER}\n{notify.remember(sent)}", 1) if sent else summary
        client.write_comment(report.pr, MARKER, body, ours)
    except GitHubError as exc:
        click.echo(
            f"error: could not write the PR comment: {log_line(str(exc))} (the verdict, "
            f"{state}, is in the {STATUS_CONTEXT} status and the job summary)",
            err=True,
        )
        return asked, False, summary
    return asked, True, summary


def _with_reviews(markdown: str, asked: Outcome) -> str:
    lines = asked.markdown()
    return markdown + ("\n" + "\n".join(lines) + "\n" if lines else "")


def _run_url() -> str | None:
    server, repository, run = (
        os.environ.get("GITHUB_SERVER_URL"),
        os.environ.get("GITHUB_REPOSITORY"),
        os.environ.get("GITHUB_RUN_ID"),
    )
    if server and repository and run and run.isdigit():
        return f"{server.rstrip('/')}/{repository}/actions/runs/{run}"
    return None


def _oneline(text: str) -> str:
    """File or PR text on one log line (core.escape): no control, bidi or newline
    character reaches the terminal, and nothing can start a workflow command."""
    return log_line(str(text))


def _output(fmt: str, report: Report, calls: int, asked: Outcome) -> None:
    if fmt == "json":
        echo_json(_json(report, calls, asked))
        return
    if fmt == "github":
        for f in report.findings:
            click.echo(annotation("error", f"{f.code}: {f.message}", file=f.file, line=f.line))
        for p in report.problems:
            click.echo(annotation("error", p))
        for v in report.verdicts:
            if v.state == "pending" and v.approval:
                at = v.request.line_of("requester") if v.request else 1
                message = f"waiting for approvals: {_needs_text(v)}"
                click.echo(annotation("notice", message, file=v.path, line=at))
        for warning in asked.warnings:
            click.echo(annotation("warning", warning))
    for line in _text_lines(report, asked):
        click.echo(line)


def _needs_text(v: FileVerdict) -> str:
    a = v.approval
    if a is None:
        return ""
    who = ", ".join(a.policy.approvers)
    names = f" ({', '.join(a.eligible)})" if a.eligible else ""
    return f"{a.missing} more from {who}{names}; counted: {', '.join(a.counted) or 'none'}"


def _text_lines(report: Report, asked: Outcome) -> list[str]:
    out = [
        f"pull request #{report.pr} by {_oneline(report.author)} at {report.head[:12]}: {report.state}"
    ]
    out += [f"  problem: {_oneline(p)}" for p in report.problems]
    out += [f"  note: {_oneline(n)}" for n in report.notes]
    for v in report.verdicts:
        line = f"  {v.state:8} {_oneline(v.path)}"
        if v.approval:
            a = v.approval
            line += f" (policy {_oneline(a.policy.name)}; approvals {len(a.counted)}/{a.needed}"
            line += f": {', '.join(a.counted)})" if a.counted else ")"
        if v.note:
            line += f" {_oneline(v.note)}"
        out.append(line)
        out += [f"    {_oneline(str(f))}" for f in v.findings]
    out += [f"  review: {_oneline(line)}" for line in asked.lines()]
    out.append(f"  status {STATUS_CONTEXT}: {report.state}: {status_description(report)}")
    return out


def _json(report: Report, calls: int, asked: Outcome) -> dict[str, object]:
    return {
        "ok": report.state == "success",
        "state": report.state,
        "pr": report.pr,
        "head": report.head,
        "base": report.base,
        "author": report.author,
        "status": {
            "context": STATUS_CONTEXT,
            "state": report.state,
            "description": status_description(report),
        },
        "problems": list(report.problems),
        "notes": list(report.notes),
        "files": [_verdict_json(v) for v in report.verdicts],
        "findings": [f.to_json() for f in report.findings],
        "review_requests": asked.json(),
        "github_calls": calls,
    }


def _verdict_json(v: FileVerdict) -> dict[str, object]:
    r, d, a = v.request, v.decision, v.approval
    return {
        "file": v.path,
        "kind": v.kind,
        "state": v.state,
        "requester": r.requester if r else None,
        "provider": r.provider if r else None,
        "scope": r.scope if r else None,
        "role": r.role if r else None,
        "policy": a.policy.name if a else (d.policy if d else None),
        "begin": format_rfc3339(d.window.begin) if d and d.window else None,
        "end": format_rfc3339(d.window.end) if d and d.window else None,
        "approvals": {
            "needed": a.needed,
            "present": list(a.counted),
            "missing": a.missing,
            "eligible": list(a.eligible),
        }
        if a
        else None,
        "note": v.note or None,
        "findings": [f.to_json() for f in v.findings],
    }
