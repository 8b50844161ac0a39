"""Benchmark: `accessctl apply --trust-git` on GCP, 2,000 active requests over 200 projects.

A generated git access repo (one commit of many files), the package's GCP emulator in this
process adding 50 ms to every API call, the real CLI in a subprocess. Prints, for a first
apply (everything to grant) and an idle apply (nothing to change), the API reads and writes
the emulator received and the wall time, next to the target: reads = scopes, writes =
changed scopes, wall ~ (calls / concurrency) x latency (plus the CLI's own start-up). A third apply after
20 requests in 20 projects are deleted shows writes = changed scopes.
Then runs bench/reconcile_aws.py when it exists.

    .venv/bin/python bench/reconcile.py [--requests 2000] [--projects 200] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.sandbox.gcp_emulator import GcpEmulator

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ROLES = ("roles/cloudsql.viewer", "roles/logging.viewer")


def project(i: int) -> str:
    return f"projects/bench-prod-{i:03d}"


def write_repo(root: Path, n_requests: int, n_projects: int, n_users: int) -> None:
    (root / "policies").mkdir(parents=True)
    logins = [f"user{i:04d}" for i in range(n_users)]
    identities = "\n".join(f"  {u}: {{gcp: 'user:{u}@example.com'}}" for u in logins)
    (root / "policies" / "access.yaml").write_text(
        f"""policies:
  - name: gcp-oncall
    description: Production projects while on call
    provider: gcp
    scopes: ['projects/bench-prod-*']
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
  gcp: {{}}
""",
        encoding="utf-8",
    )
    for i in range(n_requests):
        login = logins[i % n_users]
        path = root / "requests" / login / f"req-{i:05d}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"requester: {login}\nprovider: gcp\nscope: {project(i % n_projects)}\n"
            f"role: {ROLES[(i // n_projects) % len(ROLES)]}\n"
            f"reason: Benchmark request number {i}\nduration: 8h\n",
            encoding="utf-8",
        )
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    stamp = f"@{int(T0.timestamp())} +0000"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
    }
    subprocess.run([*git, "add", "-A"], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "requests"], check=True, env=env)


def delete_requests(repo: Path, n: int, at: datetime) -> None:
    """Early revocation of the first ``n`` requests (one per project): n scopes change."""
    paths = sorted(str(p.relative_to(repo)) for p in (repo / "requests").rglob("req-*.yaml"))
    doomed = sorted(paths, key=lambda p: p.rsplit("-", 1)[1])[:n]
    git = ["git", "-C", str(repo)]
    stamp = f"@{int(at.timestamp())} +0000"
    env = {**os.environ, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"], env[f"GIT_{who}_EMAIL"] = "bench", "bench@example.com"
    subprocess.run([*git, "rm", "-q", *doomed], check=True, env=env)
    subprocess.run([*git, "commit", "-q", "-m", "early revocations"], check=True, env=env)


def run_apply(repo: Path, emu: GcpEmulator, at: datetime, concurrency: int) -> dict[str, float]:
    emu.reset_counters()
    cmd = [
        str(Path(sys.executable).parent / "accessctl"),
        "apply",
        "--trust-git",
        "--no-ledger",
        "--repo",
        str(repo),
        "--at",
        at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "--concurrency",
        str(concurrency),
        "--format",
        "json",
    ]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, "ACCESSCTL_GCP_ENDPOINT": emu.url}
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"apply exited {proc.returncode}")
    return {"reads": emu.reads(), "writes": emu.writes(), "wall": wall}


def cli_startup() -> float:
    """Wall time of a command that loads the CLI and does nothing: the fixed cost."""
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "accessctl"), "plan", "--help"],
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-aws", action="store_true", help="skip bench/reconcile_aws.py")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="accessctl-bench-"))
    emu = GcpEmulator(port=0, latency=args.latency).start()
    try:
        for i in range(args.projects):
            emu.add_resource(project(i))
        repo = tmp / "access"
        t = time.perf_counter()
        write_repo(repo, args.requests, args.projects, args.users)
        print(
            f"GCP: {args.requests} requests over {args.projects} projects, "
            f"{args.latency * 1000:.0f} ms per call, concurrency {args.concurrency} "
            f"(repo generated in {time.perf_counter() - t:.1f} s)"
        )
        startup = cli_startup()
        print(f"  CLI start-up (accessctl plan --help): {startup:.2f} s")
        at = T0 + timedelta(hours=1)
        changed = min(20, args.projects)
        for label in ("first apply", "idle apply", f"{changed} revoked"):
            if label.endswith("revoked"):
                delete_requests(repo, changed, at)
            r = run_apply(repo, emu, at, args.concurrency)
            calls = r["reads"] + r["writes"]
            ideal = calls / args.concurrency * args.latency
            print(
                f"  {label:<12} reads {r['reads']:>4.0f}  writes {r['writes']:>4.0f}  "
                f"wall {r['wall']:6.2f} s  (calls/concurrency x latency = {ideal:.2f} s)"
            )
    finally:
        emu.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    aws = Path(__file__).with_name("reconcile_aws.py")
    if aws.exists() and not args.no_aws:
        print()
        subprocess.run([sys.executable, str(aws)], check=False)


if __name__ == "__main__":
    main()
