"""``accessctl heartbeat``: has the reconciler run successfully lately?"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

import click

from reconciler.commands.common import echo_json, handle_errors, write_step_summary
from reconciler.core.escape import annotation
from reconciler.core.timeutil import format_duration, format_rfc3339
from reconciler.options import at_option, format_option, optional_duration, repo_option


@click.command("heartbeat")
@repo_option
@format_option("text", "json", "github")
@at_option
@click.option(
    "--max-age",
    default="30m",
    show_default=True,
    callback=optional_duration,
    help="How old the last successful apply may be (30m, 1h, PT45M).",
)
@click.option("--no-fetch", is_flag=True, help="Do not fetch the heartbeat from origin first.")
@handle_errors
def heartbeat_command(repo: Path, fmt: str, now: datetime, max_age: object, no_fetch: bool) -> None:
    """Exit 1 when the last successful apply is older than --max-age, or when there is
    none; say when it last ran.

    Every successful apply replaces the branch accessctl-heartbeat with one commit dated
    by the run. This reads it (fetching origin's copy first), so it works from any clone,
    from a second scheduled workflow, or from a monitor outside GitHub.

    Exit codes: 0 fresh; 1 stale or never ran; 2 not a git repository or a bad flag.
    """
    from datetime import timedelta

    from reconciler import heartbeat

    assert isinstance(max_age, timedelta)
    beat = heartbeat.last(repo, fetch=not no_fetch)
    age = now - beat.at if beat else None
    fresh = age is not None and age <= max_age
    if beat is None:
        message = "no successful apply recorded (no accessctl-heartbeat branch)"
    else:
        assert age is not None
        ago = format_duration(max(age, timedelta(0)))
        limit = format_duration(max_age)
        state = "within" if fresh else "older than"
        message = f"last successful apply at {format_rfc3339(beat.at)}, {ago} ago ({state} {limit})"
    if fmt == "json":
        echo_json(
            {
                "fresh": fresh,
                "last": format_rfc3339(beat.at) if beat else None,
                "age_seconds": int(age.total_seconds()) if age is not None else None,
                "max_age_seconds": int(max_age.total_seconds()),
                "commit": beat.commit if beat else None,
            }
        )
    else:
        click.echo(("ok: " if fresh else "STALE: ") + message)
    if fmt == "github":
        if not fresh:
            click.echo(annotation("error", message, title="accessctl heartbeat"))
        write_step_summary(f"### accessctl heartbeat\n\n{'✅' if fresh else '❌'} {message}\n")
    if not fresh:
        _notify_stale(repo, now, message)
    sys.exit(0 if fresh else 1)


def _notify_stale(repo: Path, now: datetime, message: str) -> None:
    """reconciler-stale to the sinks the policies at HEAD configure; never changes the
    exit code (a sink that cannot be reached is a warning)."""
    from reconciler import notify
    from reconciler.errors import AccessctlError
    from reconciler.git import Tree
    from reconciler.repo import load_config

    try:
        with Tree(repo, "HEAD") as tree:
            config, _ = load_config(tree)
    except AccessctlError as exc:
        click.echo(f"warning: reconciler-stale not sent: {exc}", err=True)
        return
    notifiers, broken = notify.build(config, os.environ)
    event = notify.Event(
        "reconciler-stale", now, message, message=message, context=notify.context_of(os.environ)
    )
    for problem in [*broken, *notify.deliver(notifiers, [event])]:
        click.echo(f"warning: {problem}", err=True)
