"""``accessctl init DIR``: scaffold an access repository that runs the pinned accessctl."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.commands.common import handle_errors
from reconciler.core.escape import terminal_text
from reconciler.errors import ConfigError
from reconciler.scaffold import Pin, occupied, plan_scaffold, write_scaffold


@click.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--action",
    "action",
    metavar="OWNER/NAME[@REF]",
    help="The accessctl action the workflows pin (default: where this accessctl comes "
    "from, at the commit it was installed from, else its release tag).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Scaffold into a directory that is not empty. Existing files are still never "
    "overwritten: they are kept and listed.",
)
@handle_errors
def init_command(directory: Path, action: str | None, force: bool) -> None:
    """Scaffold an access repository in DIRECTORY.

    Writes example policies (every setting explained) and their test cases, a guide for
    requesters in requests/README.md, the three workflows (access-check, access-reconcile,
    access-ci) calling the accessctl action pinned to this version, CODEOWNERS and a
    Dependabot config. Refuses a non-empty DIRECTORY without --force; never overwrites a
    file. Exit 0 done, 2 usage (non-empty directory, bad --action).
    """
    pin = Pin.parse(action) if action else Pin.installed()
    present = occupied(directory)
    if present and not force:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise ConfigError(
            f"{terminal_text(directory)} is not empty ({terminal_text(shown)}); rerun with "
            "--force to add the missing files (existing files are never overwritten)"
        )
    written, kept = write_scaffold(directory, plan_scaffold(pin))
    click.echo(f"Scaffolded an access repository in {terminal_text(directory)}")
    click.echo(f"  accessctl {pin.version}, workflows run {pin.repository}@{pin.ref}")
    for path in written:
        click.echo(f"  wrote  {path}")
    for path in kept:
        click.echo(f"  kept   {path} (already there, left unchanged)")
    click.echo(_next_steps(pin, directory))


def _next_steps(pin: Pin, directory: Path) -> str:
    docs = f"https://github.com/{pin.repository}/blob/{pin.ref}/docs"
    steps = [
        "",
        "Next steps:",
        "  1. Put your teams, identities and policies in policies/ (and their cases in",
        "     policies/tests/), your security team in .github/CODEOWNERS; then run",
        f"     `accessctl validate --repo {terminal_text(directory)}` and `accessctl test`.",
        "  2. Push to GitHub and protect main with a ruleset: pull requests with review from",
        "     Code Owners, the required checks `accessctl/approval`, `check` and `validate`,",
        "     no bypass, no force pushes; protect the accessctl-ledger branch too.",
        "  3. Create the `accessctl` environment (deployment branch: main) and connect the",
        "     clouds through OIDC: variables ACCESSCTL_AWS_ROLE_ARN (and ACCESSCTL_AWS_REGION),",
        "     ACCESSCTL_GCP_WORKLOAD_IDENTITY_PROVIDER and ACCESSCTL_GCP_SERVICE_ACCOUNT.",
        "  4. With cloud credentials, `accessctl doctor` checks the cloud side.",
        f"  Guides: {docs}/adopting.md and {docs}/github-setup.md",
    ]
    if not pin.is_commit:
        steps += [
            "",
            f"Note: the workflows use {pin.repository}@{pin.ref}, a tag. Pin it to the tag's",
            f"commit (`git ls-remote https://github.com/{pin.repository} {pin.ref}`), or rerun",
            f"with --action {pin.repository}@<commit sha>; Dependabot keeps the pin fresh.",
        ]
    return "\n".join(steps)
