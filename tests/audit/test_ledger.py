"""The ledger branch: one commit per apply, main untouched, pushes that survive races."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from reconciler import ledger
from reconciler.core.models import Change, ChangeKind, ChangeResult, Grant
from tests.audit.conftest import GitRepo, utc

NOW = utc("2026-12-01T09:10:00Z")


def result(
    kind: ChangeKind = ChangeKind.GRANT, *, ok: bool = True, who: str = "alice"
) -> ChangeResult:
    grant = Grant(
        provider="gcp",
        scope="projects/payments-prod",
        role="roles/cloudsql.viewer",
        principal=f"user:{who}@example.com",
        request=f"requests/{who}/inc-1.yaml",
        begin=utc("2026-12-01T09:00:00Z"),
        end=utc("2026-12-01T11:00:00Z"),
    )
    return ChangeResult(
        Change(kind, grant, "approved, in window"),
        ok=ok,
        message="" if ok else "PERMISSION_DENIED",
        verified=ok,
    )


def snapshot(repo: GitRepo) -> tuple[str, str, str]:
    return (repo.head(), repo.git("status", "--porcelain"), repo.git("ls-files", "-s"))


def test_record_writes_one_commit_on_the_ledger_branch_and_never_touches_main(
    access_repo: GitRepo,
) -> None:
    access_repo.write({"requests/alice/wip.yaml": "uncommitted work\n"})
    before = snapshot(access_repo)

    sha = ledger.record(
        access_repo.root,
        [result(), result(ChangeKind.REVOKE, ok=False, who="carol")],
        now=NOW,
        run={"id": "run-1", "commit": before[0]},
    )

    assert sha is not None
    assert snapshot(access_repo) == before
    assert access_repo.git("rev-parse", "accessctl-ledger") == sha
    assert access_repo.git("rev-list", "--count", "accessctl-ledger") == "1"
    assert access_repo.git("ls-tree", "-r", "--name-only", sha).split() == [
        "README.md",
        "ledger/2026-12.jsonl",
    ]
    entries = ledger.read(access_repo.root)
    assert [(e.action, e.ok, e.principal) for e in entries] == [
        ("grant", True, "user:alice@example.com"),
        ("revoke", False, "user:carol@example.com"),
    ]
    assert entries[0].time == NOW
    assert entries[0].request == "requests/alice/inc-1.yaml"
    assert entries[0].end == utc("2026-12-01T11:00:00Z")
    assert entries[1].message == "PERMISSION_DENIED"
    assert entries[0].run == "run-1"


def test_nothing_changed_means_no_commit(access_repo: GitRepo) -> None:
    keep = result(ChangeKind.KEEP)
    assert ledger.record(access_repo.root, [keep], now=NOW, run={"id": "r"}) is None
    assert not ledger.exists(access_repo.root)
    assert ledger.read(access_repo.root) == []


def test_each_apply_appends_one_commit(access_repo: GitRepo) -> None:
    for i in range(3):
        ledger.record(access_repo.root, [result()], now=NOW, run={"id": f"run-{i}"})
    assert access_repo.git("rev-list", "--count", "accessctl-ledger") == "3"
    assert len(ledger.read(access_repo.root)) == 3


def test_passing_the_checked_out_branch_still_writes_the_ledger_branch(
    access_repo: GitRepo,
) -> None:
    main = access_repo.head()
    ledger.record(access_repo.root, [result()], now=NOW, run={}, branch="main")
    assert access_repo.head() == main
    assert len(ledger.read(access_repo.root)) == 1


def clone(remote: GitRepo, path: Path) -> GitRepo:
    repo = GitRepo(path)
    repo.git("remote", "add", "origin", str(remote.root))
    repo.git("fetch", "-q", "origin")
    repo.git("checkout", "-q", "-B", "main", "origin/main")
    return repo


@pytest.fixture
def two_clones(
    access_repo: GitRepo, bare_remote: GitRepo, tmp_path: Path
) -> tuple[GitRepo, GitRepo]:
    access_repo.git("push", "-q", str(bare_remote.root), "main")
    return clone(bare_remote, tmp_path / "a"), clone(bare_remote, tmp_path / "b")


def test_concurrent_runs_race_and_every_line_reaches_the_remote(
    two_clones: tuple[GitRepo, GitRepo], bare_remote: GitRepo
) -> None:
    errors: list[BaseException] = []

    def worker(repo: GitRepo, name: str) -> None:
        try:
            for i in range(4):
                ledger.record(repo.root, [result(), result()], now=NOW, run={"id": f"{name}-{i}"})
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(r, n)) for r, n in zip(two_clones, "ab", strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    entries = ledger.read(bare_remote.root)
    assert len(entries) == 16
    assert len({e.id for e in entries}) == 16
    assert sorted({e.run for e in entries}) == sorted(f"{n}-{i}" for n in "ab" for i in range(4))
    # history is linear: nobody force-pushed over anybody
    assert bare_remote.git("rev-list", "--count", "--merges", "accessctl-ledger") == "0"
    assert bare_remote.git("rev-list", "--count", "accessctl-ledger") == "8"


def test_a_rejected_push_is_carried_over_by_the_next_run(
    two_clones: tuple[GitRepo, GitRepo], bare_remote: GitRepo
) -> None:
    a, b = two_clones
    ledger.record(b.root, [result(who="carol")], now=NOW, run={"id": "b-1"})
    hook = bare_remote.root / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch' >&2\nexit 1\n")
    hook.chmod(0o755)

    with pytest.raises(ledger.LedgerError, match="could not update accessctl-ledger"):
        ledger.record(a.root, [result(who="alice")], now=NOW, run={"id": "a-1"}, attempts=2)
    assert len(ledger.read(a.root)) == 2  # committed locally, on top of b's line
    assert len(ledger.read(bare_remote.root)) == 1

    hook.unlink()
    ledger.record(a.root, [result(who="erin")], now=NOW, run={"id": "a-2"})
    remote = ledger.read(bare_remote.root)
    assert sorted(e.run for e in remote) == ["a-1", "a-2", "b-1"]
    assert a.head() == b.head()  # main untouched in both clones


def test_audit_reports_a_rewritten_ledger(access_repo: GitRepo) -> None:
    from tests.audit.conftest import request_yaml, run_cli

    access_repo.merge_pr(1, {"requests/alice/inc-1.yaml": request_yaml()}, "2026-12-01T09:00:00Z")
    ledger.record(access_repo.root, [result(), result(who="carol")], now=NOW, run={"id": "r1"})
    root = str(access_repo.root)
    clean = run_cli(
        "audit", "--repo", root, "--trust-git", "--fail-on-anomaly", "--at", "2026-12-01T09:30:00Z"
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "LEDGER" not in clean.stderr
    assert ledger.verify(access_repo.root) == []

    # someone with push rights "fixes" the evidence: carol's grant disappears
    access_repo.git("checkout", "-q", "accessctl-ledger")
    path = access_repo.root / "ledger" / "2026-12.jsonl"
    path.write_text(
        "".join(line + "\n" for line in path.read_text().splitlines() if "carol" not in line)
    )
    access_repo.git("commit", "-q", "-am", "tidy up")
    access_repo.git("checkout", "-q", "main")

    [problem] = ledger.verify(access_repo.root)
    assert "removed or changed 1 line(s)" in problem
    tampered = run_cli(
        "audit", "--repo", root, "--trust-git", "--fail-on-anomaly", "--at", "2026-12-01T09:30:00Z"
    )
    assert tampered.returncode == 1
    assert "LEDGER: ledger commit" in tampered.stderr
