"""Helpers every command uses: error mapping, output writers."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconciler.core.escape import clean_json, log_line
from reconciler.errors import AccessctlError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(f: F) -> F:
    """Turn AccessctlError into ``error: ...`` + its exit code; never a traceback."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except AccessctlError as exc:
            click.echo(f"error: {log_line(str(exc))}", err=True)
            for finding in getattr(exc, "findings", ()):
                click.echo(f"  {log_line(str(finding))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def echo_json(payload: object) -> None:
    """JSON for scripts; every string goes through core.escape (one door for file text)."""
    click.echo(json.dumps(clean_json(payload), indent=2, sort_keys=False))


def write_step_summary(markdown: str) -> None:
    """Append to $GITHUB_STEP_SUMMARY when Actions provides it."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip() + "\n")
