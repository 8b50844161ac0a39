"""Command-line options shared by every command, defined once."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler.core.timeutil import parse_duration, parse_rfc3339

F = TypeVar("F", bound=Callable[..., Any])


def _parse_at(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime:
    raw = value or os.environ.get("ACCESSCTL_NOW")
    if not raw:
        return datetime.now(UTC)
    try:
        return parse_rfc3339(raw)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def optional_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """Click callback: an optional RFC 3339 time (--since, --until)."""
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def optional_duration(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> timedelta | None:
    """Click callback: an optional duration (30m, 2h, PT45M)."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def repo_option(f: F) -> F:
    return click.option(
        "--repo",
        "repo",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help="The access repository (its root directory).",
    )(f)


def format_option(*choices: str) -> Callable[[F], F]:
    def deco(f: F) -> F:
        return click.option(
            "--format",
            "fmt",
            type=click.Choice(list(choices)),
            default="text",
            show_default=True,
            help="Output format: text for people, json for scripts"
            + (
                ", github for workflow annotations and the job summary."
                if "github" in choices
                else "."
            ),
        )(f)

    return deco


def at_option(f: F) -> F:
    return click.option(
        "--at",
        "now",
        metavar="RFC3339",
        callback=_parse_at,
        expose_value=True,
        help="Act as if now were this time (env ACCESSCTL_NOW). Default: the real clock.",
    )(f)


def trust_git_option(f: F) -> F:
    return click.option(
        "--trust-git",
        is_flag=True,
        help="Take approval from git alone (sandbox, demo, air-gapped): approved_at is the "
        "committer time of the last first-parent change; reviews are not checked.",
    )(f)
