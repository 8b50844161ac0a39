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


# -- inspect: the ledger as evidence ---------------------------------------------------


def codes(report: ledger.LedgerReport) -> list[str]:
    return [p.code for p in report.problems]


def test_without_github_the_ledger_is_read_but_not_vouched_for(access_repo: GitRepo) -> None:
    ledger.record(access_repo.root, [result()], now=NOW, run={"id": "r1"})
    ledger.record(access_repo.root, [result(who="carol")], now=NOW, run={"id": "r2"})

    report = ledger.inspect(access_repo.root)

    assert (report.present, report.verified, report.problems) == (True, None, [])
    assert report.head == access_repo.git("rev-parse", "accessctl-ledger")
    assert [e.run for e in report.entries] == ["r1", "r2"]
    assert "no GitHub credentials" in report.unverified_reason


def test_only_origins_copy_is_read_when_there_is_no_local_branch(
    two_clones: tuple[GitRepo, GitRepo],
) -> None:
    a, b = two_clones
    ledger.record(a.root, [result()], now=NOW, run={"id": "from-a"})
    b.git("fetch", "-q", "origin")
    assert "accessctl-ledger" not in b.git("branch", "--list")

    report = ledger.inspect(b.root, fetch=False)

    assert report.present and [e.run for e in report.entries] == ["from-a"]
    assert report.head == b.git("rev-parse", "origin/accessctl-ledger")


def test_a_changed_line_is_found_in_the_blobs_and_the_original_still_counts(
    access_repo: GitRepo,
) -> None:
    ledger.record(access_repo.root, [result(), result(who="carol")], now=NOW, run={"id": "r1"})
    access_repo.write({".gitattributes": "*.jsonl -diff\n"})  # blinds `git log -p`
    access_repo.git("checkout", "-q", "accessctl-ledger")
    path = access_repo.root / "ledger" / "2026-12.jsonl"
    path.write_text(path.read_text().replace('"ok": true', '"ok": false'))
    access_repo.git("commit", "-q", "-am", "fix")
    tampered = access_repo.git("rev-parse", "HEAD")
    access_repo.git("checkout", "-q", "main")

    report = ledger.inspect(access_repo.root)

    assert [(p.code, p.commit) for p in report.problems] == [("ledger-line-removed", tampered)]
    assert report.problems[0].message.endswith("removed or changed 2 line(s)")
    assert report.verified is False
    # a line id is kept as first written: the edit does not replace what the run recorded
    assert [e.ok for e in report.entries] == [True, True]
    assert [e.principal for e in report.entries] == [
        "user:alice@example.com",
        "user:carol@example.com",
    ]


def test_a_local_branch_that_diverged_from_origin_is_named_and_origin_read(
    two_clones: tuple[GitRepo, GitRepo],
) -> None:
    a, b = two_clones
    ledger.record(a.root, [result()], now=NOW, run={"id": "shared"})
    b.git("fetch", "-q", "origin", "accessctl-ledger:accessctl-ledger")
    b.git("checkout", "-q", "accessctl-ledger")
    b.git("commit", "-q", "--allow-empty", "-m", "local only")
    b.git("checkout", "-q", "main")
    ledger.record(a.root, [result(who="carol")], now=NOW, run={"id": "later"})

    report = ledger.inspect(b.root)

    assert codes(report) == ["ledger-diverged"]
    assert report.problems[0].commit == b.git("rev-parse", "accessctl-ledger")
    assert report.head == b.git("rev-parse", "origin/accessctl-ledger")
    assert [e.run for e in report.entries] == ["shared", "later"]


def test_lines_that_do_not_parse_are_named(access_repo: GitRepo) -> None:
    ledger.record(access_repo.root, [result()], now=NOW, run={"id": "r1"})
    access_repo.git("checkout", "-q", "accessctl-ledger")
    path = access_repo.root / "ledger" / "2026-12.jsonl"
    path.write_text(path.read_text() + "not json\n")
    access_repo.git("commit", "-q", "-am", "junk")
    junk = access_repo.git("rev-parse", "HEAD")
    access_repo.git("checkout", "-q", "main")

    report = ledger.inspect(access_repo.root)

    assert [(p.code, p.commit) for p in report.problems] == [("ledger-unparsable", junk)]
    assert len(report.entries) == 1


def test_a_ledger_deleted_on_origin_is_reported_and_the_local_copy_read(
    two_clones: tuple[GitRepo, GitRepo], bare_remote: GitRepo
) -> None:
    a, _ = two_clones
    ledger.record(a.root, [result()], now=NOW, run={"id": "r1"})
    bare_remote.git("branch", "-D", "accessctl-ledger")

    report = ledger.inspect(a.root)

    assert report.present and codes(report) == ["ledger-missing"]
    assert "origin has no accessctl-ledger" in report.problems[0].message
    assert len(report.entries) == 1


def test_no_ledger_anywhere(access_repo: GitRepo) -> None:
    report = ledger.inspect(access_repo.root)
    assert (report.present, report.verified, codes(report)) == (False, False, ["ledger-missing"])
    assert report.to_json()["problems"] == [
        {"code": "ledger-missing", "message": report.problems[0].message, "commit": None}
    ]


# -- writing through GitHub's Git database ---------------------------------------------


@pytest.fixture
def github(bare_remote: GitRepo):  # type: ignore[no-untyped-def]
    from reconciler.sandbox.github_emulator import GitHubEmulator

    with GitHubEmulator() as emu:
        emu.add_repo("acme/access")
        emu.attach_git("acme/access", bare_remote.root)
        yield emu


def client(emu) -> object:  # type: ignore[no-untyped-def]
    from reconciler.github import GitHubClient

    return GitHubClient(emu.url, emu.token, "acme/access", retries=0)


def test_concurrent_runs_through_github_keep_every_line_and_every_commit_verified(
    two_clones: tuple[GitRepo, GitRepo], bare_remote: GitRepo, github
) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def worker(repo: GitRepo, name: str) -> None:
        try:
            for i in range(3):
                ledger.record(
                    repo.root, [result()], now=NOW, run={"id": f"{name}-{i}"}, github=client(github)
                )
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
    assert bare_remote.git("rev-list", "--count", "--merges", "accessctl-ledger") == "0"
    assert bare_remote.git("rev-list", "--count", "accessctl-ledger") == "6"
    report = ledger.inspect(two_clones[0].root, github=client(github))
    assert report.verified is True, report.problems
    assert sorted(e.run for e in report.entries) == sorted(
        f"{n}-{i}" for n in "ab" for i in range(3)
    )
    # GitHub refused the stale ref updates; nobody forced anything
    assert github.calls["PATCH /repos/{o}/{r}/git/refs/{ref}"] >= 5


def test_a_head_that_could_not_be_anchored_fails_the_ledger_sink_loudly(
    two_clones: tuple[GitRepo, GitRepo], bare_remote: GitRepo, github
) -> None:  # type: ignore[no-untyped-def]
    a, _ = two_clones
    github.fail(
        r"POST /repos/acme/access/statuses/", 403, message="Resource not accessible by integration"
    )

    with pytest.raises(ledger.LedgerError, match="statuses: write"):
        ledger.record(a.root, [result()], now=NOW, run={"id": "r1"}, github=client(github))
    assert bare_remote.git("rev-list", "--count", "accessctl-ledger") == "1"  # written


def test_without_an_origin_the_ledger_stays_local_and_github_is_not_asked(
    access_repo: GitRepo, github
) -> None:  # type: ignore[no-untyped-def]
    assert ledger.record(access_repo.root, [result()], now=NOW, run={}, github=client(github))
    assert github.total_calls == 0
