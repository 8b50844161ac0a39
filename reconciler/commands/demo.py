"""``accessctl demo``: the whole lifecycle against the embedded sandbox clouds.

No credentials and no network beyond loopback: the package's GCP IAM emulator and moto
(AWS IAM Identity Center) run in this process on free ports; a throw-away access repo is
made from the project's example ``policies/``; every step runs the real ``accessctl``
command line in a subprocess and makes real git commits, and what the clouds hold is
printed after each change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import yaml

from reconciler import git
from reconciler.commands.common import handle_errors
from reconciler.core import providers
from reconciler.core.timeutil import format_rfc3339, parse_rfc3339
from reconciler.providers.aws import Aws
from reconciler.providers.gcp import Gcp

# A fixed story, so every run prints the same trail: the merge happens at MERGED_AT.
REQUESTED_AT = parse_rfc3339("2026-12-01T08:50:00Z")
MERGED_AT = parse_rfc3339("2026-12-01T09:00:00Z")
# The two clouds the embedded sandboxes stand in for; names and titles are the registry's.
GCP, AWS = Gcp.name, Aws.name
GCP_PROJECT = "projects/payments-prod"
AWS_ACCOUNT = "111122223333"
AWS_PERMISSION_SET = "ReadOnlyAccess"
TICKET = "INC-4821"
FALLBACK_POLICIES = {
    "demo.yaml": f"""\
policies:
  - name: payments-db-read
    description: Read payments production data while on call
    provider: gcp
    scopes: [{GCP_PROJECT}]
    roles: [roles/cloudsql.viewer, roles/logging.viewer]
    requesters: [team:payments-oncall]
    approvers: [team:payments-leads]
    approvals: 1
    max_duration: 4h
    ticket: '^(INC|CHG)-[0-9]+$'
  - name: payments-aws-debug
    description: Inspect the payments AWS accounts during an incident
    provider: aws
    scopes: ['{AWS_ACCOUNT}']
    roles: [{AWS_PERMISSION_SET}]
    requesters: [team:payments-oncall]
    approvers: [team:payments-leads]
    approvals: 1
    max_duration: 8h
    ticket: '^INC-[0-9]+$'
teams:
  payments-oncall: [alice, carol]
  payments-leads: [dave, erin]
identities:
  alice: {{gcp: 'user:alice@example.com', aws: alice@example.com}}
  carol: {{gcp: 'user:carol@example.com', aws: carol@example.com}}
providers:
  gcp: {{}}
""",
}


def example_policies() -> dict[str, str]:
    """The project's own example policies (next to the package in a checkout), else the
    embedded copy above (an installed wheel carries no policies/)."""
    here = Path(__file__).resolve().parents[2] / "policies"
    files = sorted(here.glob("*.yaml")) if here.is_dir() else []
    if not files:
        return dict(FALLBACK_POLICIES)
    return {p.name: p.read_text(encoding="utf-8") for p in files}


@dataclass
class Story:
    """The demo's state: the repo, the sandboxes, how to run the CLI against them."""

    repo: Path
    env: dict[str, str]
    gcp: Any = None
    aws: Any = None
    seeded: Any = None
    failures: list[str] = field(default_factory=list)
    step_no: int = 0

    # -- output ---------------------------------------------------------------------
    def step(self, title: str, *explain: str) -> None:
        self.step_no += 1
        click.echo("")
        click.secho(f"== {self.step_no}. {title} ", bold=True, nl=False)
        click.secho("=" * max(3, 72 - len(title)), bold=True)
        for line in explain:
            click.secho(f"   {line}", dim=True)

    def run(self, *args: str, expect: int = 0, at: datetime | None = None) -> str:
        """``accessctl ARGS`` in the demo repo, shown as a user would type it."""
        argv = list(args) + (["--at", format_rfc3339(at)] if at else [])
        click.secho(f"$ accessctl {' '.join(_quote(a) for a in argv)}", fg="cyan")
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler.cli", *argv],
            check=False,
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        out = (proc.stdout + proc.stderr).rstrip()
        if out:
            click.echo(_indent(out))
        if proc.returncode != expect:
            self.failures.append(f"accessctl {' '.join(argv)} exited {proc.returncode}")
            click.secho(f"   !! expected exit {expect}, got {proc.returncode}", fg="red")
        return proc.stdout

    def git(self, *args: str, when: datetime | None = None, author: str = "alice") -> str:
        env = dict(self.env)
        env.update(_identity(author))
        if when is not None:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = format_rfc3339(when)
        click.secho(f"$ git {' '.join(_quote(a) for a in args)}", fg="cyan")
        done = git.call(self.repo, *args, env=env)
        if not done.ok:
            self.failures.append(f"git {' '.join(args)}: {done.error()}")
            click.secho(_indent(done.error()), fg="red")
        return done.text()

    def show_clouds(self, when: str) -> None:
        click.secho(f"   What the clouds hold {when}:", bold=True)
        policy = self.gcp.get_policy(GCP_PROJECT)
        title = providers.spec(GCP).title
        click.echo(f"   {title} {GCP_PROJECT} IAM policy (version {policy.get('version')}):")
        for binding in policy.get("bindings", []):
            cond = binding.get("condition")
            members = ", ".join(binding.get("members", []))
            click.echo(f"     - {binding['role']}: {members}")
            if cond:
                click.echo(f"         condition title: {cond.get('title')}")
                click.echo(f"         expression:      {cond.get('expression')}")
        held = sorted(self.aws.assignments(self.seeded, AWS_ACCOUNT))
        click.echo(f"   {providers.spec(AWS).title}: account {AWS_ACCOUNT} assignments:")
        for ps, kind, who in held or [("(none)", "", "")]:
            click.echo(f"     - {ps} {kind} {who}".rstrip())


def _identity(login: str) -> dict[str, str]:
    name = "GitHub" if login == "github" else login
    email = "noreply@github.com" if login == "github" else f"{login}@example.com"
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def _quote(arg: str) -> str:
    return json.dumps(arg) if (" " in arg or not arg) else arg


def _indent(text: str) -> str:
    return "\n".join("   " + line if line else "" for line in text.splitlines())


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without anything that could reach a real cloud or
    GitHub, plus the sandbox endpoints."""
    drop = ("GITHUB_", "AWS_", "GOOGLE_", "CLOUDSDK_", "ACCESSCTL_", "GIT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env


@contextmanager
def sandboxes() -> Iterator[tuple[Any, Any]]:
    from reconciler.sandbox.aws import AwsSandbox
    from reconciler.sandbox.gcp_emulator import GcpEmulator

    gcp = GcpEmulator(port=0, auto_create=True).start()
    aws = AwsSandbox().start()
    try:
        yield gcp, aws
    finally:
        aws.stop()
        gcp.stop()


def seed_clouds(story: Story, policies: Mapping[str, str]) -> dict[str, Any]:
    """GCP: the project with a binding accessctl does not manage. AWS: the Identity
    Center users from ``identities`` and the permission sets the policies name."""
    story.gcp.add_resource(
        GCP_PROJECT,
        {
            "version": 1,
            "bindings": [{"role": "roles/viewer", "members": ["group:payments-team@example.com"]}],
        },
    )
    docs = [yaml.safe_load(text) or {} for text in policies.values()]
    users = sorted(
        {p[AWS] for d in docs for p in (d.get("identities") or {}).values() if p.get(AWS)}
    )
    sets = sorted(
        {
            r
            for d in docs
            for p in d.get("policies") or []
            if p["provider"] == AWS
            for r in p["roles"]
        }
    )
    story.seeded = story.aws.seed(users=users, permission_sets=dict.fromkeys(sets, "PT1H"))
    settings: dict[str, Any] = story.seeded.provider_settings()
    return settings


def point_policies_at_sandbox(
    policies: dict[str, str], aws_settings: Mapping[str, Any]
) -> dict[str, str]:
    """Rewrite ``providers.aws`` to the sandbox's Identity Center instance."""
    out = dict(policies)
    for name, text in policies.items():
        doc = yaml.safe_load(text) or {}
        if "providers" in doc:
            doc["providers"] = {**(doc["providers"] or {}), AWS: dict(aws_settings)}
            header = "# Provider settings, pointed at the demo's sandbox clouds.\n"
            out[name] = header + yaml.safe_dump(doc, sort_keys=False)
            return out
    # Every registered provider that works without settings, and the sandbox's AWS.
    section: dict[str, Any] = {
        s.name: {} for s in providers.specs() if not s.settings_required and s.name != AWS
    }
    out["providers.yaml"] = yaml.safe_dump({"providers": {AWS: dict(aws_settings), **section}})
    return out


def make_repo(story: Story, policies: Mapping[str, str]) -> None:
    (story.repo / "policies").mkdir(parents=True)
    for name, text in policies.items():
        (story.repo / "policies" / name).write_text(text, encoding="utf-8")
    story.git("init", "-q", "-b", "main")
    story.git("add", "policies")
    story.git(
        "commit", "-q", "-m", "Access policies", when=MERGED_AT - timedelta(days=1), author="erin"
    )


def walk(story: Story) -> None:
    """The lifecycle, step by step."""
    t_apply = MERGED_AT + timedelta(minutes=5)
    t_late = MERGED_AT + timedelta(hours=2, minutes=10)
    branch = f"access/alice/{TICKET.lower()}"

    story.step(
        "Alice asks for access",
        "An incident: alice needs to read the payments database (GCP) and look around the",
        "payments AWS account. `accessctl request` writes one file per request, checked",
        "against the policies first, on a branch for her pull request.",
    )
    story.git("switch", "-q", "-c", branch)
    common = ["--reason", f"Investigate {TICKET}, slow checkout queries", "--ticket", TICKET]
    story.run(
        "request", "--requester", "alice", "--provider", GCP, "--scope", GCP_PROJECT,
        "--role", "roles/cloudsql.viewer", "--duration", "2h", *common, at=REQUESTED_AT,
    )  # fmt: skip
    story.run(
        "request", "--requester", "alice", "--provider", AWS, "--scope", AWS_ACCOUNT,
        "--role", AWS_PERMISSION_SET, "--duration", "1h", "--slug", "inc-4821-aws", *common,
        at=REQUESTED_AT,
    )  # fmt: skip
    click.echo(_indent((story.repo / "requests/alice/inc-4821.yaml").read_text()))
    story.git("add", "requests")
    story.git("commit", "-q", "-m", f"Access for {TICKET}", when=REQUESTED_AT)

    story.step(
        "CI checks the pull request",
        "On GitHub, `accessctl pr-check` runs on the PR (schema, policy, approvals) and",
        "comments; offline, `accessctl validate` does the schema and policy part.",
    )
    story.run("validate", at=REQUESTED_AT)

    story.step(
        "Dave approves, the PR is merged",
        "Merging is the approval: the window starts at the merge. (Here git alone stands in",
        "for GitHub, hence --trust-git below; in production apply verifies Dave's review.)",
    )
    story.git("switch", "-q", "main")
    story.git(
        "merge", "-q", "--no-ff", branch, "-m", f"Merge pull request #1 from alice/{TICKET.lower()}",
        when=MERGED_AT, author="github",
    )  # fmt: skip

    story.step(
        "The reconciler runs (cron, 5 minutes later)",
        "`apply` reads each scope once, grants what is approved and in its window, verifies",
        "by reading back, and records what it did on the accessctl-ledger branch.",
    )
    story.run("plan", "--trust-git", at=t_apply)
    story.run("apply", "--trust-git", at=t_apply)
    story.show_clouds("after the grant")
    story.run("status", "--trust-git", at=t_apply)

    story.step(
        "Time passes: both windows end",
        "GCP stops honouring the binding by itself at the end of its condition; AWS needs",
        "the reconciler to delete the assignment. The next run revokes both.",
    )
    story.run("apply", "--trust-git", at=t_late)
    story.show_clouds("after expiry")

    story.step(
        "The audit trail",
        "Git history says who asked, why, and when it was merged; the ledger says when the",
        "clouds were changed. One pass over history, whatever its size.",
    )
    story.run("audit", "--trust-git", at=t_late)
    ledger_log = story.git("log", "--format=%h %s", "accessctl-ledger")
    click.echo(_indent(ledger_log))
    month = MERGED_AT.strftime("%Y-%m")
    first = story.git("show", f"accessctl-ledger:ledger/{month}.jsonl").splitlines()[:1]
    for line in first:  # one ledger line, as the audit reads it
        click.echo(_indent(json.dumps(json.loads(line), indent=2)))


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo repository and print its path.")
@handle_errors
def demo_command(keep: bool) -> None:
    """The whole lifecycle against embedded sandbox clouds; no credentials, no network.

    Starts the GCP IAM emulator and moto (AWS IAM Identity Center) on loopback, builds a
    throw-away access repo from the example policies, and walks a request from file to
    merge, grant, expiry, revoke and audit with the real CLI and real git commits.

    Exit codes: 0 every step did what it should; 1 a step did not.
    """
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="accessctl-demo-"))
    try:
        with sandboxes() as (gcp, aws):
            env = _clean_env(
                {
                    "ACCESSCTL_GCP_ENDPOINT": gcp.url,
                    **aws.env(),
                    "GIT_CONFIG_GLOBAL": str(tmp / "gitconfig"),
                }
            )
            story = Story(repo=tmp / "access", env=env, gcp=gcp, aws=aws)
            click.secho("accessctl demo: temporary production access, the GitOps way", bold=True)
            click.echo(
                f"   {providers.spec(GCP).title} IAM emulator at {gcp.url}; "
                f"{providers.spec(AWS).title} sandbox (moto) at {aws.url}"
            )
            click.echo(f"   access repo: {story.repo}")
            policies = example_policies()
            aws_settings = seed_clouds(story, policies)
            make_repo(story, point_policies_at_sandbox(policies, aws_settings))
            walk(story)
        elapsed = time.monotonic() - started
        click.echo("")
        if story.failures:
            click.secho(f"demo FAILED after {elapsed:.1f}s:", fg="red", bold=True)
            for failure in story.failures:
                click.echo(f"  - {failure}")
            sys.exit(1)
        click.secho(
            f"demo complete in {elapsed:.1f}s: granted, expired, revoked, audited.", bold=True
        )
        click.echo("Next: README.md (requesters, approvers, admins) and `accessctl --help`.")
    finally:
        if keep:
            click.echo(f"kept: {tmp / 'access'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
