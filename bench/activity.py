"""Benchmark `activity`: 1,000 grants over 100 GCP projects, 50 events each, 50 ms per call.

The real google-cloud-logging client against the emulator. Target: API calls = the sum over
scopes of their pages (one query per scope, never one per grant), and wall time <= 1.2 x
(calls / concurrency x latency) plus start-up (building the client).

The emulator runs in its own process and answers each call in ``latency``, its own
filtering inside that time as a cloud's work is inside its response time (``_Cloud``).
For reference the same calls are made once more reading the bytes only (no JSON, no
events, no join): the floor this machine and this emulator allow any client.

    .venv/bin/python bench/activity.py [--grants 1000] [--scopes 100] [--events 50]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reconciler.activity.gcp import CloudLogging, build_filter
from reconciler.activity.usecase import read_all
from reconciler.core.activity import ActivityGrant, ScopeQuery, join, plan_queries
from reconciler.sandbox.gcp_emulator import GcpEmulator

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


class _Cloud(GcpEmulator):
    """The emulator answering each ``entries.list`` in ``latency`` (its filtering inside that
    time, as a cloud's own work is inside its response time), not after ``latency`` plus
    its own work serialised with every other call's on one interpreter's lock."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.per_call = latency

    def list_entries(self, body: Any) -> dict[str, Any]:
        started = time.perf_counter()
        answer = super().list_entries(body)
        time.sleep(max(0.0, self.per_call - (time.perf_counter() - started)))
        return answer


def _serve(grants: list[ActivityGrant], events: int, latency: float, urls: Any) -> None:
    emu = _Cloud(latency)
    for grant in grants:
        who = grant.principal.partition(":")[2]
        for n in range(events):
            emu.logging.record(
                grant.scope,
                who,
                at=grant.begin + timedelta(seconds=60 + n * 120),
                service="storage.googleapis.com",
                method=f"storage.objects.get#{n}",
                resource=f"{grant.scope}/buckets/b/objects/{n}",
                log="data_access",
            )
    emu.start()
    urls.put(emu.url)
    threading.Event().wait()


def _bytes_only(source: CloudLogging, queries: list[ScopeQuery], concurrency: int) -> float:
    """Wall time of the same calls through the same client, keeping the raw bytes."""
    connection = source.client()._connection

    def one(query: ScopeQuery) -> int:
        body = {
            "resourceNames": [query.scope],
            "filter": build_filter(query),
            "orderBy": "timestamp asc",
            "pageSize": source.page_size,
        }
        raw = connection.api_request(
            method="POST", path="/entries:list", data=body, expect_json=False
        )
        return len(raw)

    begun = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, queries))
    return time.perf_counter() - begun


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--scopes", type=int, default=100)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()

    grants = []
    per_scope: dict[str, int] = {}
    for i in range(args.grants):
        scope = f"projects/bench-{i % args.scopes:03d}"
        who = f"user{i // args.scopes:03d}@example.com"
        begin = T0 + timedelta(minutes=i % 7)
        grant = ActivityGrant(
            request=f"requests/u/{i}.yaml",
            requester=who.split("@", maxsplit=1)[0],
            principal=f"user:{who}",
            provider="gcp",
            scope=scope,
            role="roles/viewer",
            begin=begin,
            end=begin + timedelta(hours=2),
            horizon=timedelta(minutes=5),
        )
        grants.append(grant)
        per_scope[scope] = per_scope.get(scope, 0) + args.events
    # The emulator runs in its own process: its filtering and JSON are not the code measured.
    # (Multi-page scopes are read one page after another: only the first page's token is
    # known before it arrives; here each scope's 500 events fit one page of 1,000.)
    urls: multiprocessing.Queue[str] = multiprocessing.Queue()
    server = multiprocessing.Process(
        target=_serve, args=(grants, args.events, args.latency, urls), daemon=True
    )
    server.start()
    url = urls.get(timeout=120)
    at = T0 + timedelta(days=1)
    queries = plan_queries(grants, [], {}, at=at)
    expected = sum(max(1, math.ceil(n / args.page_size)) for n in per_scope.values())

    started = time.perf_counter()
    source = CloudLogging(url, page_size=args.page_size)
    source.client()
    startup = time.perf_counter() - started
    begun = time.perf_counter()
    events, errors = read_all(queries, {"gcp": source}, concurrency=args.concurrency)
    report = join(grants, events, {}, at=at, errors=errors)
    wall = time.perf_counter() - begun
    calls = source.calls
    floor = _bytes_only(source, queries, args.concurrency)
    server.terminate()

    bound = 1.2 * (calls / args.concurrency * args.latency) + startup
    seen = sum(a.calls for a in report.grants)
    print(f"activity: {args.grants} grants over {len(per_scope)} scopes, {seen} events attributed")
    print(f"  queries {len(queries)}, API calls {calls} (sum of pages over scopes: {expected})")
    print(
        f"  wall {wall:.2f}s + start-up {startup:.2f}s; bound 1.2 x ({calls}/{args.concurrency}"
        f" x {args.latency * 1000:.0f}ms) + start-up = {bound:.2f}s"
    )
    print(f"  floor (the same calls, bytes only, no JSON, no events): {floor:.2f}s")
    ok = calls == expected and wall + startup <= bound and not errors
    ok = ok and seen == args.grants * args.events
    print("  OK" if ok else "  MISSED THE TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
