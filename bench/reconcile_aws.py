"""Benchmark: `accessctl apply --trust-git` on AWS: granting 500 requests over 50 accounts,
and revoking 100 assignments over 20 accounts (session denies plus provisioning).

A generated git access repo, moto in server mode (in this process) behind
AWS_ENDPOINT_URL with the sandbox's provisioning layer, the real CLI in a subprocess.
Prints the API calls moto received (by operation) and the wall time of each run: for
``grant``, a first apply (everything to grant) and an idle apply; for ``revoke``, the apply
whose windows have all ended (100 revokes, the denies written and provisioned), the idle
apply after it (which must write no permission set), and the first apply past the session
horizon (which removes the denies).

    .venv/bin/python bench/reconcile_aws.py [--scenario all|grant|revoke] [--requests 500]
        [--accounts 50] [--users 250] [--revokes 100] [--revoke-accounts 20] [--polls 0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.sandbox.aws import AwsSandbox, SeededInstance

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ROLES = ("ReadOnly", "Admin")
SWEEP = ("ListUsers", "ListAccountAssignmentsForPrincipal")  # endpoint overrides only
PS_WRITES = (
    "PutInlinePolicyToPermissionSet",
    "DeleteInlinePolicyFromPermissionSet",
    "ProvisionPermissionSet",
)


def account(i: int) -> str:
    return f"{100000000000 + i:012d}"


def user(i: int) -> str:
    return f"user{i:04d}@example.com"


def write_repo(
    root: Path,
    seeded: SeededInstance,
    n_requests: int,
    n_accounts: int,
    n_users: int,
    duration: str = "4h",
) -> None:
    (root / "policies").mkdir(parents=True)
    (root / "requests").mkdir()
    accounts = ", ".join(f"'{account(i)}'" for i in range(n_accounts))
    logins = [f"user{i:04d}" for i in range(n_users)]
    settings = seeded.provider_settings()
    identities = "\n".join(f"  {login}: {{aws: {user(i)}}}" for i, login in enumerate(logins))
    (root / "policies" / "access.yaml").write_text(
        f"""policies:
  - name: aws-oncall
    description: Production accounts while on call
    provider: aws
    scopes: [{accounts}]
    roles: [{", ".join(ROLES)}]
    requesters: [team:oncall]
    approvers: [team:leads]
    approvals: 0
    max_duration: 8h
teams:
  oncall: [{", ".join(logins)}]
  leads: [lead]
identities:
{identities}
providers:
  aws:
    instance_arn: {settings["instance_arn"]}
    identity_store_id: {settings["identity_store_id"]}
    region: {settings["region"]}
""",
        encoding="utf-8",
    )
    for i in range(n_requests):
        login = logins[i % n_users]
        path = root / "requests" / login / f"req-{i:04d}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(
            f"requester: {login}\nprovider: aws\nscope: '{account(i % n_accounts)}'\n"
            f"role: {ROLES[(i // n_users) % len(ROLES)]}\n"
            f"reason: Benchmark request number {i}\nduration: {duration}\n",
            encoding="utf-8",
        )
    env = {**os.environ, "GIT_AUTHOR_DATE": f"@{int(T0.timestamp())} +0000"}
    env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"]
    for args in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.name=bench", "-c", "user.email=bench@example.com", "add", "-A"],
        ["-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "bench"],
    ):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)


def apply(root: Path, sandbox: AwsSandbox, at: datetime) -> tuple[float, int, dict]:
    exe = shutil.which("accessctl", path=str(Path(sys.executable).parent)) or "accessctl"
    env = {**os.environ, **sandbox.env()}
    for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "ACCESSCTL_NOW", "AWS_PROFILE"):
        env.pop(name, None)
    argv = [exe, "apply", "--trust-git", "--no-ledger", "--format", "json"]
    argv += ["--repo", str(root), "--at", at.strftime("%Y-%m-%dT%H:%M:%SZ")]
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    try:
        payload = json.loads(proc.stdout)
    except ValueError:
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        raise
    return elapsed, proc.returncode, payload


def report(label: str, elapsed: float, code: int, payload: dict, calls: dict[str, int]) -> None:
    results = payload.get("results", [])
    ok = sum(1 for r in results if r.get("ok"))
    print(
        f"{label}: exit {code}, {elapsed:.2f} s wall, {sum(calls.values())} API calls, "
        f"grant {len(payload['grant'])} revoke {len(payload['revoke'])} "
        f"keep {len(payload['keep'])}, results ok {ok}/{len(results)}"
    )
    for op, n in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"    {n:6d}  {op}")
    sweep = sum(calls.get(op, 0) for op in SWEEP)
    print(
        f"    ({sweep} of them are the emulator-only user sweep, which also names every "
        f"user; against AWS that run makes {sum(calls.values()) - sweep} calls plus one "
        "DescribeUser per distinct user holding an assignment and one GetUserId per user "
        "granted)"
    )


def seeded_sandbox(sandbox: AwsSandbox, n_users: int, polls: int) -> SeededInstance:
    sandbox.reset()  # moto's state is process-wide: the previous scenario's users are there
    seeded = sandbox.seed(permission_sets=dict.fromkeys((*ROLES, "BreakGlass"), "PT1H"))
    for i in range(n_users):
        sandbox.add_user(seeded, user(i))
    sandbox.faults.slow(polls)
    return seeded


def grant_scenario(args: argparse.Namespace) -> None:
    with AwsSandbox() as sandbox, tempfile.TemporaryDirectory() as tmp:
        seeded = seeded_sandbox(sandbox, args.users, args.polls)
        root = Path(tmp) / "access"
        write_repo(root, seeded, args.requests, args.accounts, args.users)
        print(
            f"AWS: {args.requests} active requests, {args.accounts} accounts, "
            f"{args.users} users, {len(ROLES)} owned permission sets (moto server, "
            f"IN_PROGRESS for {args.polls} polls)"
        )
        for label, at in (
            ("first apply", T0 + timedelta(minutes=10)),
            ("idle apply", T0 + timedelta(minutes=20)),
        ):
            sandbox.faults.calls.clear()
            elapsed, code, payload = apply(root, sandbox, at)
            report(label, elapsed, code, payload, dict(sandbox.faults.calls))
        held = sum(len(sandbox.assignments(seeded, account(i))) for i in range(args.accounts))
        print(f"assignments held afterwards: {held}")


def revoke_scenario(args: argparse.Namespace) -> None:
    """``revokes`` one-hour requests over ``revoke_accounts`` accounts, granted, then all
    ended: the run that revokes them writes each owned permission set's denies and
    provisions it; the idle run after it reads each inline policy once and writes none."""
    n_users = max(1, args.revokes // 2)
    with AwsSandbox() as sandbox, tempfile.TemporaryDirectory() as tmp:
        seeded = seeded_sandbox(sandbox, n_users, args.polls)
        root = Path(tmp) / "access"
        write_repo(root, seeded, args.revokes, args.revoke_accounts, n_users, duration="1h")
        print(
            f"\nAWS revocation: {args.revokes} one-hour requests, {args.revoke_accounts} "
            f"accounts, {n_users} users, {len(ROLES)} owned permission sets (SessionDuration "
            f"PT1H, IN_PROGRESS for {args.polls} polls)"
        )
        sandbox.faults.calls.clear()
        elapsed, code, payload = apply(root, sandbox, T0 + timedelta(minutes=10))
        print(f"(granting them first: exit {code}, {elapsed:.2f} s)")
        for label, at in (
            ("revoking apply", T0 + timedelta(minutes=70)),
            ("idle apply after it", T0 + timedelta(minutes=80)),
            ("apply past the session horizon", T0 + timedelta(minutes=131)),
        ):
            sandbox.faults.calls.clear()
            elapsed, code, payload = apply(root, sandbox, at)
            calls = dict(sandbox.faults.calls)
            report(label, elapsed, code, payload, calls)
            written = {op: calls[op] for op in PS_WRITES if calls.get(op)}
            print(f"    permission-set writes: {written or 'none'}")
        for role in ROLES:
            text = sandbox.inline_policy(seeded, role)
            statements = json.loads(text)["Statement"] if text else []
            print(f"{role}: {len(statements)} statement(s), {len(text)} characters afterwards")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("all", "grant", "revoke"), default="all")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--users", type=int, default=250)
    parser.add_argument("--revokes", type=int, default=100)
    parser.add_argument("--revoke-accounts", type=int, default=20)
    parser.add_argument(
        "--polls", type=int, default=0, help="answer IN_PROGRESS this many times before SUCCEEDED"
    )
    args = parser.parse_args()
    if args.scenario in ("all", "grant"):
        grant_scenario(args)
    if args.scenario in ("all", "revoke"):
        revoke_scenario(args)


if __name__ == "__main__":
    main()
