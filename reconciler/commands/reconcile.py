"""``accessctl plan`` and ``accessctl apply``: the reconciler's command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler.commands.common import echo_json, handle_errors, write_step_summary
from reconciler.core import render
from reconciler.core.escape import clean_json, terminal_text
from reconciler.options import at_option, format_option, repo_option, trust_git_option

F = TypeVar("F", bound=Callable[..., Any])


def _concurrency_option(f: F) -> F:
    return click.option(
        "--concurrency",
        type=click.IntRange(1, 64),
        default=None,
        help="Scopes read and written in parallel (default: each provider's concurrency "
        "setting in policies/, else 8).",
    )(f)


def _common(f: F) -> F:
    for deco in (
        _concurrency_option,
        trust_git_option,
        at_option,
        format_option("text", "json", "github"),
        repo_option,
    ):
        f = deco(f)
    return f


def _emit(outcome: Any, fmt: str, *, title: str) -> None:
    plan, problems = outcome.plan, outcome.problems
    results = outcome.results if outcome.applied else None
    if fmt == "json":
        # SPEC's shape: "errors" holds errors; warnings go to stderr, stdout stays JSON.
        errors = [p for p in problems if p.severity == "error"]
        for p in problems:
            if p.severity != "error":
                click.echo(f"{p.severity}: {terminal_text(p)}", err=True)
        payload = (
            render.apply_json(plan, errors, outcome.results)
            if outcome.applied
            else render.plan_json(plan, errors)
        )
        if outcome.applied:
            payload["ledger"] = outcome.ledger
        echo_json(clean_json(payload))
        return
    click.echo(render.render_text(plan, outcome.now, problems, results, title=title))
    if fmt == "github":
        for line in render.render_annotations(problems, outcome.results):
            click.echo(line)
        write_step_summary(
            render.render_markdown(plan, outcome.now, problems, results, title=title)
        )


def _run(
    repo: Path, fmt: str, now: datetime, trust_git: bool, concurrency: int | None, **extra: Any
) -> int:
    from reconciler import app  # heavy imports only when the command runs

    settings = app.Settings(
        repo=repo, now=now, trust_git=trust_git, concurrency=concurrency, **extra
    )
    outcome = app.reconcile(settings)
    _emit(outcome, fmt, title="accessctl apply" if settings.apply else "accessctl plan")
    return outcome.exit_code


@click.command("plan")
@_common
@handle_errors
def plan_command(
    repo: Path, fmt: str, now: datetime, trust_git: bool, concurrency: int | None
) -> None:
    """Show what apply would grant, revoke and keep; change nothing.

    Reads every scope where managed grants may sit (one read per scope) and compares
    them with the approved requests on the current branch whose window holds at --at.

    Exit codes: 0 the plan was computed and nothing is wrong (pending changes are not an
    error); 1 a request file is invalid, refused or unverifiable, or a scope could not be
    read (its changes are left out of the plan); 2 usage or configuration error (broken
    policies, no GitHub credentials without --trust-git, not a git repository).
    """
    sys.exit(_run(repo, fmt, now, trust_git, concurrency))


@click.command("apply")
@_common
@click.option("--no-ledger", is_flag=True, help="Do not record this apply on the ledger branch.")
@handle_errors
def apply_command(  # noqa: PLR0917 - click passes options as arguments
    repo: Path,
    fmt: str,
    now: datetime,
    trust_git: bool,
    concurrency: int | None,
    no_ledger: bool,
) -> None:
    """Grant what is approved and in its window, revoke every managed grant that is not.

    Each scope is read once and written at most once; scopes are processed in parallel.
    A scope that cannot be read gets no changes (never revoke on unknown state); a scope
    whose write fails is reported; every other scope is still reconciled.

    Exit codes: 0 everything converged; 1 after doing all it could, when a scope failed,
    a change failed, or a request file is invalid, refused or unverifiable; 2 usage or
    configuration error, before anything is changed.
    """
    sys.exit(_run(repo, fmt, now, trust_git, concurrency, apply=True, ledger=not no_ledger))
