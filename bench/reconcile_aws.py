"""Benchmark: `accessctl apply --trust-git` on AWS, 500 active requests over 50 accounts.

A generated git access repo, moto in server mode (in this process) behind
AWS_ENDPOINT_URL, the real CLI in a subprocess. Prints the API calls moto received (by
operation) and the wall time of a first apply (everything to grant) and an idle apply
(nothing to change).

    .venv/bin/python bench/reconcile_aws.py [--requests 500] [--accounts 50] [--users 250]
                                            [--polls 0]
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


def account(i: int) -> str:
    return f"{100000000000 + i:012d}"


def user(i: int) -> str:
    return f"user{i:04d}@example.com"


def write_repo(
    root: Path, seeded: SeededInstance, n_requests: int, n_accounts: int, n_users: int
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
            f"reason: Benchmark request number {i}\nduration: 4h\n",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--users", type=int, default=250)
    parser.add_argument(
        "--polls", type=int, default=0, help="answer IN_PROGRESS this many times before SUCCEEDED"
    )
    args = parser.parse_args()
    with AwsSandbox() as sandbox, tempfile.TemporaryDirectory() as tmp:
        seeded = sandbox.seed(permission_sets=dict.fromkeys((*ROLES, "BreakGlass"), "PT1H"))
        for i in range(args.users):
            sandbox.add_user(seeded, user(i))
        sandbox.faults.slow(args.polls)
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


if __name__ == "__main__":
    main()
