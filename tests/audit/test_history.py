"""The one-pass history reader: split and parallel reading give exactly the serial result."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from reconciler import history
from tests.audit.conftest import ROOT

# bench/audit.py builds histories with git fast-import; loaded under a name of its own
_spec = importlib.util.spec_from_file_location("accessctl_bench_audit", ROOT / "bench" / "audit.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("history") / "access"
    bench.build(repo, commits=600, files=150)
    return repo


def test_every_first_parent_change_once_merges_included(generated: Path) -> None:
    h = history.read_history(generated)
    count = subprocess.run(
        ["git", "-C", str(generated), "rev-list", "--first-parent", "--count", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert len(h.commits) == int(count) == 600
    assert sum(c.is_merge for c in h.commits) == 59
    assert [c.committed_at for c in h.commits] == sorted(c.committed_at for c in h.commits)
    # side-branch commits never appear: every change belongs to a first-parent commit
    shas = {c.sha for c in h.commits}
    assert all(ch.commit.sha in shas for ch in h.changes)


def test_split_ranges_read_the_same_history(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial = history.read_history(generated)
    monkeypatch.setattr(history, "_SPLIT_FROM", 10)
    monkeypatch.setattr(history.os, "sched_getaffinity", lambda _: {0, 1, 2}, raising=False)
    split = history.read_history(generated)
    assert len(history._ranges(generated, history.resolve(generated, "HEAD") or "")) == 3
    assert split.changes == serial.changes


def test_forked_workers_give_the_serial_versions(generated: Path) -> None:
    def keys(versions: list) -> list:
        return [(v.path, v.commit, v.request, v.findings, v.removal) for v in versions]

    serial = history.map_versions(generated, "HEAD", list, workers=1)
    forked = history.map_versions(generated, "HEAD", list, workers=3)
    assert keys(forked) == keys(serial)
    ops = [op for op, _, _ in bench.plan_changes(600, 150)]
    assert len(serial) == ops.count("add") + ops.count("edit")  # deletions only end versions
    assert sum(v.removal is not None and v.removal.deleted for v in serial) == ops.count("delete")
