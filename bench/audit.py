"""Benchmark: a full ``accessctl audit`` over 50,000 commits touching 20,000 request files.

The history is written with one ``git fast-import`` stream (not 50,000 ``git commit``
calls): 20,000 files are added, 25,000 edits and 5,000 deletions follow, every tenth
change arrives through a merge commit. Then ``accessctl audit --trust-git --format json``
runs as a user would run it and its wall time is printed.

    python bench/audit.py [--commits 50000] [--files 20000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Real access repos hold one directory per requester; 500 of them keep each tree small,
# as in an organisation of that size (20,000 files in three directories would measure
# git's handling of 7,000-entry trees, not the audit).
LOGINS = tuple(f"user{i:03d}" for i in range(500))
START = 1_796_083_200  # 2026-12-01T00:00:00Z
STEP = 60  # seconds between commits


def request_text(login: str, n: int, version: int) -> bytes:
    return (
        "# yaml-language-server: $schema=../../reconciler/schemas/request.schema.json\n"
        f"requester: {login}\n"
        "provider: gcp\n"
        f"scope: projects/bench-{n % 50}\n"
        "role: roles/logging.viewer\n"
        f"reason: Bench request {n} version {version}, checking logs\n"
        f"duration: {1 + version % 4}h\n"
    ).encode()


def bench_policies() -> bytes:
    logins = ", ".join(LOGINS)
    identities = "".join(f"  {u}: {{gcp: 'user:{u}@example.com'}}\n" for u in LOGINS)
    return (
        "policies:\n"
        "  - name: bench-logs\n"
        "    provider: gcp\n"
        "    scopes: ['projects/bench-*']\n"
        "    roles: [roles/logging.viewer]\n"
        "    requesters: [team:bench]\n"
        "    approvers: [team:bench]\n"
        "    approvals: 0\n"
        "    max_duration: 1d\n"
        f"teams:\n  bench: [{logins}]\n"
        f"identities:\n{identities}"
    ).encode()


def _data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


def plan_changes(commits: int, files: int) -> list[tuple[str, int, int]]:
    """(op, file number, version): adds first, then edits, then deletions at the end."""
    changes: list[tuple[str, int, int]] = [("add", n, 0) for n in range(files)]
    deletes = min(files // 4, max(0, commits - files) // 5)
    edits = max(0, commits - files - deletes)
    versions = [0] * files
    for i in range(edits):
        n = (i * 7919) % files
        versions[n] += 1
        changes.append(("edit", n, versions[n]))
    changes += [("delete", n, 0) for n in range(0, files, max(1, files // max(deletes, 1)))][
        :deletes
    ]
    return changes[: max(commits - 1, 0)]


def fast_import_stream(commits: int, files: int) -> bytes:
    out = bytearray()
    clock = START
    out += b"commit refs/heads/main\nmark :1\n"
    out += b"committer Admin <admin@example.com> %d +0000\n" % clock
    out += _data(b"policies")
    out += b"M 100644 inline policies/bench.yaml\n" + _data(bench_policies())
    mark = 1
    for i, (op, n, version) in enumerate(plan_changes(commits, files)):
        clock += STEP
        login = LOGINS[n % len(LOGINS)]
        path = f"requests/{login}/req-{n}.yaml".encode()
        if i % 10 == 9:
            # a pull request merged with a merge commit: side commit, then the merge
            out += b"commit refs/heads/side\nmark :%d\n" % (mark + 1)
            out += b"committer %s <%s@example.com> %d +0000\n" % (
                login.encode(),
                login.encode(),
                clock,
            )
            out += _data(b"request %d" % n)
            out += b"from :%d\n" % mark
            out += _op(op, path, login, n, version)
            out += b"commit refs/heads/main\nmark :%d\n" % (mark + 2)
            out += b"committer GitHub <noreply@github.com> %d +0000\n" % clock
            out += _data(b"Merge pull request #%d" % i)
            out += b"from :%d\nmerge :%d\n" % (mark, mark + 1)
            out += _op(op, path, login, n, version)
            mark += 2
        else:
            mark += 1
            out += b"commit refs/heads/main\nmark :%d\n" % mark
            out += b"committer %s <%s@example.com> %d +0000\n" % (
                login.encode(),
                login.encode(),
                clock,
            )
            out += _data(b"Request access (#%d)" % i)
            out += b"from :%d\n" % (mark - 1)
            out += _op(op, path, login, n, version)
    return bytes(out)


def _op(op: str, path: bytes, login: str, n: int, version: int) -> bytes:
    if op == "delete":
        return b"D %s\n\n" % path
    return b"M 100644 inline %s\n" % path + _data(request_text(login, n, version)) + b"\n"


def build(repo: Path, commits: int, files: int) -> float:
    started = time.perf_counter()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    stream = fast_import_stream(commits, files)
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=stream, check=True)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-f", "main"], check=True)
    return time.perf_counter() - started


def bare_git(repo: Path) -> float:
    """The floor: one first-parent raw log over requests/ and policies/, and one
    ``cat-file --batch`` of every blob it names (what the audit must read at least)."""
    started = time.perf_counter()
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--first-parent", "--diff-merges=first-parent",
         "--raw", "-z", "--no-renames", "--no-abbrev", "--format=%x01%H", "HEAD", "--",
         "requests/", "policies/"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    raw = [token.rsplit(b"\n", 1)[-1] for token in log.split(b"\0")]  # header, then ":..."
    shas = {t.split()[3].decode() for t in raw if t.startswith(b":") and len(t.split()) >= 5}
    shas.discard("0" * 40)
    subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        input=("\n".join(sorted(shas)) + "\n").encode(),
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=50_000)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--keep", type=Path, help="build the repo here and keep it")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="accessctl-bench-audit-"))
    repo = args.keep or tmp / "access"
    try:
        built = build(repo, args.commits, args.files)
        count = subprocess.run(
            ["git", "-C", str(repo), "rev-list", "--count", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"history: {count} commits, {args.files} request files, built in {built:.1f}s")
        accessctl = [sys.executable, "-m", "reconciler.cli"]
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START + (args.commits + 10) * STEP))
        cmd = [
            *accessctl,
            "audit",
            "--repo",
            str(repo),
            "--trust-git",
            "--format",
            "json",
            "--at",
            at,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        entries = json.loads(proc.stdout)["requests"]
        states: dict[str, int] = {}
        for e in entries:
            states[e["state"]] = states.get(e["state"], 0) + 1
        print(
            f"audit --trust-git --format json: {len(entries)} versions in {wall:.2f}s wall "
            f"({cpu:.1f}s CPU incl. git and workers; load average {os.getloadavg()[0]:.1f})"
        )
        print("states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
        bare = bare_git(repo)
        print(
            f"bare git log --first-parent --raw + cat-file --batch of every version: "
            f"{bare:.2f}s; audit / bare = {wall / bare:.1f}x"
        )
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
