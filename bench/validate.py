"""Benchmark: a full ``accessctl validate`` of a repo with 10,000 requests and 200 policies.

Generates the repo in a temporary directory, then runs the command as a user does (a
subprocess of the installed console script) and prints the wall time of each run.

    .venv/bin/python bench/validate.py [--requests 10000] [--policies 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOGINS = [f"user{i:03d}" for i in range(300)]


def write_repo(root: Path, n_requests: int, n_policies: int) -> None:
    (root / "policies").mkdir(parents=True)
    teams = "\n".join(
        f"  team{t:02d}: [{', '.join(LOGINS[t * 10 : t * 10 + 15])}]" for t in range(20)
    )
    identities = "\n".join(
        f"  {login}: {{gcp: 'user:{login}@example.com', aws: {login}@example.com}}"
        for login in LOGINS
    )
    (root / "policies" / "people.yaml").write_text(
        f"teams:\n{teams}\nidentities:\n{identities}\n", encoding="utf-8"
    )
    (root / "policies" / "providers.yaml").write_text(
        "providers:\n  aws: {instance_arn: 'arn:aws:sso:::instance/ssoins-1234567890abcdef',"
        " identity_store_id: d-1234567890, region: us-east-1}\n  gcp: {}\n",
        encoding="utf-8",
    )
    for f in range(10):
        body = ["policies:"]
        for i in range(f * n_policies // 10, (f + 1) * n_policies // 10):
            if i % 2:
                body += [
                    f"  - name: aws-{i}",
                    "    provider: aws",
                    f"    scopes: ['{100000000000 + i}']",
                    "    roles: [ReadOnlyAccess, PaymentsDebug]",
                ]
            else:
                body += [
                    f"  - name: gcp-{i}",
                    "    provider: gcp",
                    f"    scopes: [projects/proj-{i:04d}, 'projects/glob-{i:04d}-*']",
                    "    roles: [roles/cloudsql.viewer, roles/logging.viewer]",
                ]
            body += [
                f"    requesters: [team:team{i % 20:02d}, {LOGINS[i % 300]}]",
                f"    approvers: [team:team{(i + 1) % 20:02d}]",
                "    approvals: 1",
                "    max_duration: 8h",
                "    ticket: '^(INC|CHG)-[0-9]+$'",
            ]
        (root / "policies" / f"policies-{f:02d}.yaml").write_text(
            "\n".join(body) + "\n", encoding="utf-8"
        )
    for r in range(n_requests):
        i = r % n_policies
        login = LOGINS[i % 300]
        if i % 2:
            scope, role, provider = f"'{100000000000 + i}'", "PaymentsDebug", "aws"
        else:
            scope, role, provider = f"projects/glob-{i:04d}-x{r}", "roles/logging.viewer", "gcp"
        path = root / "requests" / login / f"req-{r:05d}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# yaml-language-server: $schema=../../reconciler/schemas/request.schema.json\n"
            f"requester: {login}\nprovider: {provider}\nscope: {scope}\nrole: {role}\n"
            f"reason: Investigate INC-{r}, slow checkout queries\nticket: INC-{r}\n"
            "duration: 2h\nstart: 2026-12-01T09:00:00Z\n",
            encoding="utf-8",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--policies", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("accessctl")
    with tempfile.TemporaryDirectory(prefix="accessctl-bench-") as tmp:
        root = Path(tmp) / "repo"
        write_repo(root, args.requests, args.policies)
        cmd = [str(exe), "validate", "--repo", str(root), "--at", "2026-11-30T00:00:00Z"]
        times = []
        for _ in range(args.runs):
            began = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - began)
            if proc.returncode != 0:
                print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
                return 1
        summary = proc.stdout.strip().splitlines()[-1]
        print(f"validate: {args.requests} requests, {args.policies} policies -> {summary}")
        print("wall time: " + ", ".join(f"{t:.2f}s" for t in times) + f" (best {min(times):.2f}s)")
        # what a pull request's check does: the changed file plus every policy
        one = next((root / "requests").rglob("*.yaml"))
        began = time.perf_counter()
        proc = subprocess.run([*cmd, str(one)], capture_output=True, text=True, check=False)
        print(f"one changed file + all policies: {time.perf_counter() - began:.2f}s")
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
