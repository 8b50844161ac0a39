"""``accessctl demo``: the whole lifecycle against the embedded sandbox clouds.

No credentials and no network beyond loopback: the package's GCP IAM emulator and moto
(AWS IAM Identity Center) run in this process on free ports; a throw-away access repo is
made from the project's example ``policies/``; every step runs the real ``accessctl``
command line in a subprocess and makes real git commits, and what the clouds hold is
printed after each change. Alice uses her access in between: on GCP she calls the
emulator with her own identity (which checks it and writes Cloud Audit Logs), on AWS her
session's calls are seeded into the sandbox's CloudTrail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
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
from reconciler.sandbox.cloudtrail import sso_event
from reconciler.sandbox.gcp_principals import principal_headers

# A fixed story, so every run prints the same trail: the merge happens at MERGED_AT.
REQUESTED_AT = parse_rfc3339("2026-12-01T08:50:00Z")
MERGED_AT = parse_rfc3339("2026-12-01T09:00:00Z")
# The two clouds the embedded sandboxes stand in for; names and titles are the registry's.
GCP, AWS = Gcp.name, Aws.name
GCP_PROJECT = "projects/payments-prod"
AWS_ACCOUNT = "111122223333"
AWS_PERMISSION_SET = "ReadOnlyAccess"
SESSION = timedelta(hours=1)  # the permission sets' SessionDuration in the sandbox
SQL_INSTANCE = "checkout-db"
ALICE_GCP, ALICE_AWS = "user:alice@example.com", "alice@example.com"
# The project's audit config: Data Access logs (reads) are off in GCP until turned on.
SQL_READS_LOGGED = {
    "service": "cloudsql.googleapis.com",
    "auditLogConfigs": [{"logType": "ADMIN_READ"}, {"logType": "DATA_READ"}],
}
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
        for config in policy.get("auditConfigs", []):
            types = ", ".join(c["logType"] for c in config.get("auditLogConfigs", []))
            click.echo(f"     Data Access audit logs on: {config['service']} ({types})")
        held = sorted(self.aws.assignments(self.seeded, AWS_ACCOUNT))
        click.echo(f"   {providers.spec(AWS).title}: account {AWS_ACCOUNT} assignments:")
        for ps, kind, who in held or [("(none)", "", "")]:
            click.echo(f"     - {ps} {kind} {who}".rstrip())
        self.show_inline_policy()

    def show_inline_policy(self) -> None:
        text = self.aws.inline_policy(self.seeded, AWS_PERMISSION_SET)
        click.echo(
            f"   permission set {AWS_PERMISSION_SET} inline policy:{'' if text else ' (none)'}"
        )
        for line in text.splitlines():
            click.echo(f"     {line}")
        user_id = self.seeded.users.get(ALICE_AWS, "")
        if user_id and user_id in text:
            click.echo(f"     ({user_id} is {ALICE_AWS}'s identity-store user id)")

    # -- alice at work ------------------------------------------------------------------
    def gcp_call(self, verb: str, path: str, at: datetime, expect: int) -> None:
        """A call to the GCP emulator with alice's identity, at ``at`` (request.time)."""
        request = urllib.request.Request(  # noqa: S310 (the sandbox's own loopback URL)
            self.gcp.url + path,
            method=verb,
            headers=principal_headers(ALICE_GCP, at=at),
            data=b"" if verb == "POST" else None,
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                status, body = resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, json.loads(exc.read() or b"{}")
        click.secho(f"   {at:%H:%M}  alice  {verb} {path}", fg="cyan")
        click.echo(f"          -> {status} {_outcome(body)}")
        if status != expect:
            self.failures.append(f"alice {verb} {path} answered {status}, not {expect}")

    def aws_call(
        self, at: datetime, source: str, name: str, error: str | None = None, note: str = ""
    ) -> None:
        """A call alice's Identity Center session made in the account, as CloudTrail
        records it (seeded: the sandbox runs no AWS services)."""
        record = sso_event(
            AWS_ACCOUNT, AWS_PERMISSION_SET, ALICE_AWS, at=at, source=source, name=name,
            error_code=error,
        )  # fmt: skip
        self.aws.faults.cloudtrail.add(AWS_ACCOUNT, self.aws.region, record)
        service = source.removesuffix(".amazonaws.com")
        click.secho(f"   {at:%H:%M}  alice  AWS {service} {name} in {AWS_ACCOUNT}", fg="cyan")
        click.echo(f"          -> {error or 'ok'}{note}  (CloudTrail)")


def _outcome(body: Mapping[str, Any]) -> str:
    """One line for an API answer: the error, or what a list or an operation returned."""
    error = body.get("error")
    if isinstance(error, Mapping):
        return f"{error.get('status', '')}: {error.get('message', '')}"
    if "items" in body or body.get("kind") == "sql#instancesList":
        names = [
            f"{i['name']} ({i['databaseVersion']}, {i['state']})" for i in body.get("items", [])
        ]
        return "OK: " + (", ".join(names) or "no instances")
    return f"OK: {body.get('operationType', body.get('kind', ''))}".rstrip(": ")


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
            "auditConfigs": [SQL_READS_LOGGED],
        },
    )
    story.gcp.sql.add(GCP_PROJECT, SQL_INSTANCE)
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
    duration = f"PT{int(SESSION.total_seconds() // 3600)}H"
    story.seeded = story.aws.seed(users=users, permission_sets=dict.fromkeys(sets, duration))
    settings: dict[str, Any] = story.seeded.provider_settings()
    # activity reads each account's CloudTrail through a role there (moto's STS issues it)
    settings["activity_role"] = "arn:aws:iam::{account}:role/accessctl-activity"
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


# The story's clock: the merge at 09:00, the windows end at 10:00 (AWS) and 11:00 (GCP).
T_GRANT = MERGED_AT + timedelta(minutes=5)
T_LATE = MERGED_AT + timedelta(hours=2, minutes=10)  # the run that revokes both
T_REPORT = T_LATE + timedelta(minutes=20)
T_CLEAN = T_LATE + SESSION + timedelta(minutes=5)  # the revoked sessions have all expired


def walk(story: Story) -> None:
    """The lifecycle, step by step."""
    ask(story)
    grant(story)
    work(story)
    expire(story)
    cut_off(story)
    report(story)
    clean_up(story)
    audit(story)


def ask(story: Story) -> None:
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


def grant(story: Story) -> None:
    story.step(
        "The reconciler runs (cron, 5 minutes later)",
        "`apply` reads each scope once, grants what is approved and in its window, verifies",
        "by reading back, and records what it did on the accessctl-ledger branch.",
    )
    story.run("plan", "--trust-git", at=T_GRANT)
    story.run("apply", "--trust-git", at=T_GRANT)
    story.show_clouds("after the grant")
    story.run("status", "--trust-git", at=T_GRANT)


def work(story: Story) -> None:
    instances = f"/v1/{GCP_PROJECT}/instances"
    story.step(
        "Alice works during her windows",
        "On GCP she calls the Cloud SQL Admin API as herself (the emulator takes the sandbox",
        f"token `Bearer sandbox-principal:{ALICE_GCP}`), checks each call against the IAM",
        "policy at that moment and writes Cloud Audit Logs, like GCP. Her role lists the",
        "instances; restarting one is not in it, so GCP refuses it (403) and logs the attempt.",
        "On AWS, her Identity Center session's calls land in CloudTrail (seeded here: the",
        "sandbox runs no AWS services).",
    )
    story.gcp_call("GET", instances, MERGED_AT + timedelta(minutes=20), expect=200)
    story.gcp_call(
        "POST", f"{instances}/{SQL_INSTANCE}/restart", MERGED_AT + timedelta(minutes=25), 403
    )
    story.aws_call(MERGED_AT + timedelta(minutes=40), "s3.amazonaws.com", "ListBuckets")


def expire(story: Story) -> None:
    story.step(
        "Time passes: both windows end",
        "GCP stops honouring the binding by itself at the end of its condition; AWS needs",
        "the reconciler to delete the assignment, and this run is late: at 10:20, after her",
        "AWS window, alice's session still works. The next run revokes both.",
    )
    story.aws_call(
        MERGED_AT + timedelta(hours=1, minutes=20), "ec2.amazonaws.com", "DescribeInstances",
        note=": her session outlived the window",
    )  # fmt: skip
    story.run("apply", "--trust-git", at=T_LATE)
    story.show_clouds("after expiry")


def cut_off(story: Story) -> None:
    story.step(
        "Her earlier AWS session is cut off",
        "Deleting the assignment stops new sign-ins, but a console or CLI session opened",
        f"before it keeps working until it expires (the permission set's session length: {_hm(SESSION)}",
        "here, up to 12h). So the same apply put the Deny shown above in the permission set's",
        "inline policy: every action, for her identity-store user id, for sessions issued",
        "before the revocation. A session she opens after a new approval is not affected.",
    )  # fmt: skip
    story.aws_call(
        T_LATE + timedelta(minutes=5), "s3.amazonaws.com", "GetObject", error="AccessDenied",
        note=": her session from 10:50 is refused by the Deny",
    )  # fmt: skip


def report(story: Story) -> None:
    story.step(
        "What did alice do with her access?",
        "`accessctl activity` reads the clouds' own audit logs (Cloud Logging on GCP,",
        "CloudTrail on AWS) for each grant's window: each call, denied ones marked, calls",
        "after the end flagged.",
    )
    story.run("activity", "--trust-git", "--requester", "alice", at=T_REPORT)


def clean_up(story: Story) -> None:
    story.step(
        "The Deny is cleaned up",
        f"Once {_hm(SESSION)} (the session length) has passed since the revocation, every session",
        "it could cut off has expired: the next run removes the statement, even with",
        "nothing else to do, so the inline policy stays small.",
    )  # fmt: skip
    story.run("apply", "--trust-git", at=T_CLEAN)
    story.show_inline_policy()


def audit(story: Story) -> None:
    story.step(
        "The audit trail",
        "Git history says who asked, why, and when it was merged; the ledger says when the",
        "clouds were changed; --activity adds what the logs say was done with the access.",
    )
    story.run("audit", "--trust-git", "--activity", at=T_CLEAN)
    ledger_log = story.git("log", "--format=%h %s", "accessctl-ledger")
    click.echo(_indent(ledger_log))
    month = MERGED_AT.strftime("%Y-%m")
    lines = [
        json.loads(x)
        for x in story.git("show", f"accessctl-ledger:ledger/{month}.jsonl").splitlines()
    ]
    revokes = [x for x in lines if x.get("action") == "revoke" and x.get("provider") == AWS]
    for line in (revokes or lines)[:1]:  # the AWS revoke, as the audit reads it
        click.echo(_indent(json.dumps(line, indent=2)))


def _hm(span: timedelta) -> str:
    hours, minutes = divmod(int(span.total_seconds()) // 60, 60)
    return f"{hours}h" if not minutes else f"{hours}h{minutes:02d}m"


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the demo repository and print its path.")
@handle_errors
def demo_command(keep: bool) -> None:
    """The whole lifecycle against embedded sandbox clouds; no credentials, no network.

    Starts the GCP IAM emulator and moto (AWS IAM Identity Center) on loopback, builds a
    throw-away access repo from the example policies, and walks a request from file to
    merge, grant, use (one call denied), expiry, revoke (the AWS sessions issued before it
    cut off, then the Deny cleaned up), activity and audit with the real CLI and real git
    commits.

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
            f"demo complete in {elapsed:.1f}s: granted, used, expired, revoked, sessions cut off,"
            " audited.",
            bold=True,
        )
        click.echo("Next: README.md (requesters, approvers, admins) and `accessctl --help`.")
    finally:
        if keep:
            click.echo(f"kept: {tmp / 'access'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
