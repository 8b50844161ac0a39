"""The ``accessctl`` command line: parse flags, call the app, map errors to exit codes."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from reconciler import __version__
from reconciler.core.escape import log_line
from reconciler.errors import AccessctlError

# command name -> module under reconciler.commands that defines `<name>_command`
COMMANDS = {
    "validate": "validate",
    "pr-check": "pr_check",
    "plan": "reconcile",
    "apply": "reconcile",
    "status": "status",
    "audit": "audit",
    "request": "request",
    "demo": "demo",
    "doctor": "doctor",
    "heartbeat": "heartbeat",
    "init": "init",
    "test": "test",
    "activity": "activity",
}
SHORT_HELP = {
    "validate": "Check request and policy files offline; every finding at file:line.",
    "pr-check": "The pull-request gate: schema, policy and approvals; comments on the PR.",
    "plan": "Show desired vs actual grants; change nothing.",
    "apply": "Reconcile: grant what is approved and in its window, revoke the rest.",
    "status": "List requests with their state: pending, scheduled, active, expired...",
    "audit": "The timeline from git history: requested, approved, granted, revoked.",
    "request": "Write a valid request file from flags; --open-pr opens the pull request.",
    "demo": "The whole lifecycle against the embedded sandbox clouds, no credentials.",
    "doctor": "Online checks of the cloud side (permission sets, session durations, users).",
    "heartbeat": "Exit 1 when the last successful apply is older than --max-age.",
    "init": "Scaffold an access repository: policies, requests, workflows, CODEOWNERS.",
    "test": "Run the policy test cases in policies/tests/ with the same judgment as CI.",
    "activity": "What each grant was used for, from the clouds' audit logs; who tried without one.",
}
# command -> (the extra it needs, modules that extra installs)
EXTRAS = {"demo": ("sandbox", ("moto", "flask"))}


class LazyGroup(click.Group):
    """Imports a command's module only when it runs, so `validate` never loads boto3."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        missing = _missing_extra(cmd_name)
        if missing is not None:
            return missing
        module = importlib.import_module(f"reconciler.commands.{module_name}")
        attr = cmd_name.replace("-", "_") + "_command"
        command = getattr(module, attr, None)
        return command if isinstance(command, click.Command) else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Static help so `accessctl --help` imports no command module (and no cloud SDK).
        with formatter.section("Commands"):
            formatter.write_dl(
                [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
            )


def _missing_extra(cmd_name: str) -> click.Command | None:
    """A stand-in that says how to install what ``cmd_name`` needs, when it is missing."""
    extra, modules = EXTRAS.get(cmd_name, ("", ()))
    absent = [m for m in modules if importlib.util.find_spec(m) is None]
    if not absent:
        return None
    message = (
        f"`accessctl {cmd_name}` needs the {extra} extra ({', '.join(absent)} not installed): "
        f"pip install 'accessctl[{extra}]'"
    )

    def refuse() -> None:
        click.echo(f"error: {message}", err=True)
        sys.exit(2)

    return click.Command(
        cmd_name,
        callback=refuse,
        help=f"{SHORT_HELP.get(cmd_name, '')} Needs: pip install 'accessctl[{extra}]'.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="accessctl")
def cli() -> None:
    """GitOps temporary production access: requests are files, merging is the approval.

    Exit codes: 0 ok, 1 findings or failed actions, 2 usage or configuration error.
    """


def main(argv: list[str] | None = None) -> Any:
    try:
        return cli.main(args=argv, prog_name="accessctl", standalone_mode=True)
    except AccessctlError as exc:  # raised outside click's own handling
        click.echo(f"error: {log_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
