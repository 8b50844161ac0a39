"""``accessctl doctor``: online checks that the clouds match what the policies assume.

AWS IAM Identity Center: the instance and its identity store are reachable, every permission
set the policies name exists, every ``identities`` user resolves, and no owned permission
set issues sessions longer than the policies that grant it allow (a session issued before
a revocation stays valid until it expires: AWS cannot end it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from reconciler.commands.common import echo_json, handle_errors
from reconciler.core.escape import log_line
from reconciler.core.models import Config
from reconciler.core.timeutil import format_duration
from reconciler.errors import ConfigError, Finding
from reconciler.options import format_option, repo_option
from reconciler.providers.aws import Aws
from reconciler.repo import POLICIES, WorkTree, load_config

AWS = Aws.name  # the provider these checks are for (its registry name)
Locate = Callable[[str], tuple[str, int]]


@click.command("doctor")
@repo_option
@format_option("text", "json")
@handle_errors
def doctor_command(repo: Path, fmt: str) -> None:
    """Check the cloud setup online (AWS IAM Identity Center): instance and identity store
    reachable, permission sets named in policies exist, identities resolve, and no owned
    permission set's SessionDuration exceeds the max_duration of a policy that grants it
    (sessions outlive revocation by up to that long).

    Exit codes: 0 all good; 1 findings (warnings included); 2 configuration error.
    """
    if not (repo / POLICIES).is_dir():
        raise ConfigError(
            f"{repo}: not an access repository (no {POLICIES}/ directory); use --repo DIR"
        )
    tree = WorkTree(repo)
    config, findings = load_config(tree)
    errors = tuple(f for f in findings if f.severity == "error")
    if errors:
        raise ConfigError("the policies have errors; fix them first (accessctl validate)", errors)
    checked: list[str] = []
    found: list[Finding] = []
    if _uses_aws(config):
        checked.append(AWS)
        found += aws_findings(config, _locator(tree))
    _report(fmt, checked, found)
    sys.exit(1 if found else 0)


def _uses_aws(config: Config) -> bool:
    return AWS in config.providers or any(p.provider == AWS for p in config.policies)


def _report(fmt: str, checked: list[str], found: list[Finding]) -> None:
    if fmt == "json":
        echo_json(
            {
                "ok": not found,
                "checked": checked,
                "findings": [f.to_json() | {"severity": f.severity} for f in found],
            }
        )
        return
    if not checked:
        click.echo("No online checks apply (no aws provider in policies/).")
        return
    for f in found:
        click.echo(f"{f.severity}: {log_line(str(f))}")
    if found:
        click.echo(f"{len(found)} finding(s) in: {', '.join(checked)}")
    else:
        click.echo(f"OK: {', '.join(checked)} set up as the policies assume.")


def _locator(tree: WorkTree) -> Locate:
    """(file, line) of the first policy file line that mentions ``text`` (for identities,
    which the Config does not place)."""
    texts: list[tuple[str, list[str]]] = []
    for path in tree.list(POLICIES):
        try:
            texts.append((path, tree.read(path).decode("utf-8", "replace").splitlines()))
        except OSError:
            continue

    def locate(text: str) -> tuple[str, int]:
        for path, lines in texts:
            for number, line in enumerate(lines, 1):
                if text in line:
                    return path, number
        return POLICIES, 1

    return locate


def aws_findings(
    config: Config, locate: Locate, options: dict[str, Any] | None = None
) -> list[Finding]:
    """Every AWS problem found online; cloud errors become findings, never tracebacks."""
    from reconciler.providers.aws import CloudFailure, build_provider, owned_permission_sets

    provider = build_provider(config, {"sweep_users": False, **(options or {})})
    where = locate("instance_arn")
    try:
        found = _instance_findings(provider, where)
        sets = {name: duration for name, _, duration in provider.describe_permission_sets()}
    except CloudFailure as exc:
        return [Finding(*where, "E-AWS-UNREACHABLE", f"IAM Identity Center: {exc}")]
    for name in sorted(owned_permission_sets(config)):
        users = [p for p in config.policies if p.provider == AWS and name in p.roles]
        if name not in sets:
            found += [
                Finding(
                    p.file,
                    p.line,
                    "E-AWS-PERMISSION-SET",
                    f"permission set {name!r} "
                    f"(policy {p.name}) does not exist in {provider.settings.instance_arn}",
                )
                for p in users
            ]
            continue
        found += _session_findings(name, sets[name], users)
    return found + _identity_findings(config, provider, locate)


def _instance_findings(provider: Any, where: tuple[str, int]) -> list[Finding]:
    instances = provider.instances()
    settings = provider.settings
    mine = [i for i in instances if i.get("InstanceArn") == settings.instance_arn]
    if not mine:
        listed = ", ".join(i.get("InstanceArn", "?") for i in instances) or "none"
        return [
            Finding(
                *where,
                "E-AWS-INSTANCE",
                f"instance {settings.instance_arn} is not "
                f"visible to these credentials (list_instances: {listed})",
            )
        ]
    store = mine[0].get("IdentityStoreId")
    if store and store != settings.identity_store_id:
        return [
            Finding(
                *where,
                "E-AWS-IDENTITY-STORE",
                f"identity_store_id is {settings.identity_store_id} but the instance uses {store}",
            )
        ]
    return []


def _session_findings(
    name: str, session: timedelta | None, policies: Iterable[Any]
) -> list[Finding]:
    # AWS's default SessionDuration is one hour when the permission set does not set one.
    session = session or timedelta(hours=1)
    return [
        Finding(
            p.file,
            p.line,
            "W-AWS-SESSION-OUTLIVES",
            f"permission set {name!r} issues sessions of {format_duration(session)}, longer "
            f"than policy {p.name}'s max_duration {format_duration(p.max_duration)}: a session "
            f"started before revocation stays valid up to {format_duration(session)}; set its "
            f"SessionDuration to {format_duration(p.max_duration)} or less",
            severity="warning",
        )
        for p in policies
        if session > p.max_duration
    ]


def _identity_findings(config: Config, provider: Any, locate: Locate) -> list[Finding]:
    from reconciler.providers.aws import CloudFailure

    found: list[Finding] = []
    for login, principals in sorted(config.identities.items()):
        user = principals.get(AWS)
        if not user:
            continue
        try:
            missing = provider.user_id(user) is None
            message = f"{login}: Identity Center user {user!r} not found in {provider.settings.identity_store_id}"
        except CloudFailure as exc:
            missing, message = True, f"{login}: cannot look up {user!r}: {exc}"
        if missing:
            found.append(Finding(*locate(user), "E-AWS-IDENTITY", message))
    return found
