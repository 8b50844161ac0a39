"""`accessctl audit` over real git histories: merges, squashes, edits, deletions, bad files."""

from __future__ import annotations

import csv
import io
import json
import re

from reconciler import ledger
from reconciler.core.models import Change, ChangeKind, ChangeResult, Grant
from tests.audit.conftest import POLICIES, GitRepo, audit_json, request_yaml, run_cli, utc

ALICE = "requests/alice/inc-4821.yaml"
CAROL = "requests/carol/stage.yaml"


def by_file(entries: list[dict], path: str) -> list[dict]:
    return [e for e in entries if e["file"] == path]


def test_merge_commit_is_the_approval_time_not_the_branch_commit(access_repo: GitRepo) -> None:
    # the feature branch commits at 08:00 and edits twice; only the merge reached main
    access_repo.git("checkout", "-q", "-b", "pr-1")
    access_repo.commit({ALICE: request_yaml(duration="1h")}, "2026-12-01T08:00:00Z")
    access_repo.commit({ALICE: request_yaml(duration="2h")}, "2026-12-01T08:30:00Z")
    access_repo.git("checkout", "-q", "main")
    access_repo.git(
        "merge", "-q", "--no-ff", "pr-1", "-m", "Merge pull request #1", when="2026-12-01T09:00:00Z"
    )
    merge = access_repo.head()

    [entry] = audit_json(access_repo, at="2026-12-01T10:00:00Z")

    assert entry == {
        "file": ALICE,
        "commit": merge,
        "requester": "alice",
        "provider": "gcp",
        "scope": "projects/payments-prod",
        "role": "roles/cloudsql.viewer",
        "reason": "Investigate INC-4821, slow checkout queries",
        "pr": None,
        "approvers": None,
        "approved_at": "2026-12-01T09:00:00Z",
        "begin": "2026-12-01T09:00:00Z",
        "end": "2026-12-01T11:00:00Z",
        "granted_at": None,
        "revoked_at": None,
        "sessions_ended_at": None,
        "removed_at": None,
        "grant_lateness": None,
        "revoke_lateness": None,
        "state": "active",
        "break_glass": False,
        "reviewed_after_by": None,
        "reviewed_after_at": None,
        "anomalies": [],
        "events": [],
    }


def test_squash_merge_and_states_over_time(access_repo: GitRepo) -> None:
    squash = access_repo.squash_pr(7, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    states = {
        at: audit_json(access_repo, at=at)[0]["state"]
        for at in ("2026-12-01T08:59:59Z", "2026-12-01T09:00:00Z", "2026-12-01T11:00:00Z")
    }
    assert states == {
        "2026-12-01T08:59:59Z": "pending",
        "2026-12-01T09:00:00Z": "active",
        "2026-12-01T11:00:00Z": "expired",
    }
    assert audit_json(access_repo)[0]["commit"] == squash


def test_future_start_is_scheduled_and_expires_caps_the_window(access_repo: GitRepo) -> None:
    text = request_yaml(duration="4h", start="2026-12-01T12:00:00Z", expires="2026-12-01T14:00:00Z")
    access_repo.merge_pr(2, {ALICE: text}, "2026-12-01T09:00:00Z")
    [entry] = audit_json(access_repo, at="2026-12-01T10:00:00Z")
    assert (entry["begin"], entry["end"], entry["state"]) == (
        "2026-12-01T12:00:00Z",
        "2026-12-01T14:00:00Z",
        "scheduled",
    )


def test_edit_supersedes_and_starts_a_new_window(access_repo: GitRepo) -> None:
    first = access_repo.merge_pr(1, {ALICE: request_yaml(duration="2h")}, "2026-12-01T09:00:00Z")
    second = access_repo.merge_pr(
        2, {ALICE: request_yaml(duration="3h", reason="Still on INC-4821, replica lag")},
        "2026-12-01T10:00:00Z",
    )  # fmt: skip

    old, new = audit_json(access_repo, at="2026-12-01T10:30:00Z")

    assert (old["commit"], old["state"]) == (first, "revoked")
    assert old["anomalies"] == []  # an edit is the life of a request, not an anomaly
    assert [(e["code"], e["commit"]) for e in old["events"]] == [("superseded", second)]
    assert (new["commit"], new["state"], new["anomalies"], new["events"]) == (
        second,
        "active",
        [],
        [],
    )
    assert (new["begin"], new["end"]) == ("2026-12-01T10:00:00Z", "2026-12-01T13:00:00Z")
    assert new["reason"] == "Still on INC-4821, replica lag"


def test_deletion_early_revokes_late_deletion_is_just_cleanup(access_repo: GitRepo) -> None:
    access_repo.merge_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    access_repo.merge_pr(2, {CAROL: request_yaml("carol")}, "2026-12-01T09:10:00Z", author="carol")
    early = access_repo.commit({ALICE: None}, "2026-12-01T09:30:00Z", message="Revoke (#3)")
    access_repo.commit({CAROL: None}, "2026-12-01T12:00:00Z", message="Clean up (#4)")

    entries = audit_json(access_repo, at="2026-12-01T13:00:00Z")

    [alice] = by_file(entries, ALICE)
    [carol] = by_file(entries, CAROL)
    assert alice["state"] == "revoked"
    assert alice["anomalies"] == []
    assert [(e["code"], e["commit"]) for e in alice["events"]] == [("deleted-early", early)]
    assert (carol["state"], carol["anomalies"], carol["events"]) == ("expired", [], [])
    # before the deletion happened, the same version was active
    assert (
        by_file(audit_json(access_repo, at="2026-12-01T09:20:00Z"), ALICE)[0]["state"] == "active"
    )


def test_bad_versions_in_history_are_rejected_never_a_crash(access_repo: GitRepo) -> None:
    access_repo.commit({ALICE: "requester: alice\nprovider: [\n"}, "2026-12-01T09:00:00Z")
    access_repo.commit({ALICE: request_yaml(duration="9h")}, "2026-12-01T09:10:00Z")
    access_repo.commit({"requests/alice/Bad Name.yaml": request_yaml()}, "2026-12-01T09:20:00Z")
    access_repo.commit({ALICE: request_yaml()}, "2026-12-01T09:30:00Z")

    proc = run_cli("audit", "--repo", str(access_repo.root), "--trust-git", "--format", "json",
                   "--at", "2026-12-01T10:00:00Z")  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    entries = json.loads(proc.stdout)["requests"]
    # "Bad Name.yaml" is not a request file name: never parsed, never a version, reported
    assert "requests/alice/Bad Name.yaml" in proc.stderr
    assert [(e["file"], e["state"]) for e in entries] == [
        (ALICE, "rejected"),
        (ALICE, "rejected"),
        (ALICE, "active"),
    ]
    assert entries[0]["anomalies"][0]["code"] == "invalid"
    assert entries[0]["anomalies"][0]["message"].startswith(f"{ALICE}:")
    assert entries[0]["provider"] is None
    assert any(a["code"] == "refused" and "4h" in a["message"] for a in entries[1]["anomalies"])
    assert entries[1]["provider"] == "gcp"  # a refused request still says what it asked


def test_each_version_is_judged_by_the_policies_of_its_time(access_repo: GitRepo) -> None:
    access_repo.merge_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    tightened = POLICIES.replace("payments-oncall: [alice, carol]", "payments-oncall: [carol]")
    access_repo.commit({"policies/access.yaml": tightened}, "2026-12-01T09:30:00Z")
    access_repo.merge_pr(2, {ALICE: request_yaml(duration="1h")}, "2026-12-01T10:00:00Z")

    first, second = audit_json(access_repo, at="2026-12-01T10:05:00Z")

    assert first["state"] == "revoked"  # superseded at 10:00, while still in its window
    assert second["state"] == "rejected"
    assert any(a["code"] == "refused" for a in second["anomalies"])


def _change(kind: ChangeKind, path: str, end: str, *, ok: bool = True) -> ChangeResult:
    grant = Grant(
        provider="gcp",
        scope="projects/payments-prod",
        role="roles/cloudsql.viewer",
        principal="user:alice@example.com",
        request=path,
        begin=utc("2026-12-01T09:00:00Z"),
        end=utc(end),
    )
    return ChangeResult(Change(kind, grant, "test"), ok=ok, message="" if ok else "boom")


def test_ledger_supplies_granted_and_revoked_and_flags_failures(access_repo: GitRepo) -> None:
    access_repo.merge_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    access_repo.merge_pr(2, {CAROL: request_yaml("carol")}, "2026-12-01T09:00:00Z", author="carol")
    end = "2026-12-01T11:00:00Z"
    root = access_repo.root
    ledger.record(
        root, [_change(ChangeKind.GRANT, ALICE, end)], now=utc("2026-12-01T09:05:00Z"), run={}
    )
    ledger.record(
        root,
        [_change(ChangeKind.REVOKE, ALICE, end, ok=False)],
        now=utc("2026-12-01T11:05:00Z"),
        run={},
    )
    ledger.record(
        root, [_change(ChangeKind.REVOKE, ALICE, end)], now=utc("2026-12-01T11:15:00Z"), run={}
    )

    entries = audit_json(access_repo, at="2026-12-01T12:00:00Z")

    [alice] = by_file(entries, ALICE)
    assert alice["granted_at"] == "2026-12-01T09:05:00Z"
    assert alice["revoked_at"] == "2026-12-01T11:15:00Z"
    assert alice["state"] == "expired"
    assert alice["anomalies"] == [
        {"code": "revoke-failed", "message": "at 2026-12-01T11:05:00Z: boom"}
    ]
    # granted 5 minutes into the window; the binding's condition ended it at 11:00 (GCP),
    # so the reconciler's clean-up at 11:15 is its removal, not a late revoke
    assert (alice["grant_lateness"], alice["revoke_lateness"]) == (300, 0)
    assert alice["removed_at"] == "2026-12-01T11:15:00Z"
    # carol's request was in its window while the ledger was kept, yet never granted
    [carol] = by_file(entries, CAROL)
    assert carol["granted_at"] is None
    assert [a["code"] for a in carol["anomalies"]] == ["no-ledger-entry"]
    # without the ledger, the same trail has no cloud facts and no ledger anomalies
    bare = audit_json(access_repo, "--no-ledger", at="2026-12-01T12:00:00Z")
    assert all(e["granted_at"] is None and e["anomalies"] == [] for e in bare)


def test_filters_and_formats(access_repo: GitRepo) -> None:
    access_repo.merge_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    access_repo.merge_pr(
        2, {CAROL: request_yaml("carol", scope="projects/payments-staging")}, "2026-12-03T09:00:00Z",
        author="carol",
    )  # fmt: skip

    assert [e["file"] for e in audit_json(access_repo, "--requester", "CAROL")] == [CAROL]
    assert [e["file"] for e in audit_json(access_repo, "--scope", "projects/*-prod")] == [ALICE]
    assert [e["file"] for e in audit_json(access_repo, "--since", "2026-12-02T00:00:00Z")] == [
        CAROL
    ]
    assert [e["file"] for e in audit_json(access_repo, "--until", "2026-12-02T00:00:00Z")] == [
        ALICE
    ]

    root = str(access_repo.root)
    csv_out = run_cli("audit", "--repo", root, "--trust-git", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(csv_out)))
    assert [r["file"] for r in rows] == [ALICE, CAROL]
    assert rows[0]["approved_at"] == "2026-12-01T09:00:00Z"
    md = run_cli("audit", "--repo", root, "--trust-git", "--format", "markdown").stdout
    assert md.count("\n| `requests/") == 2
    text = run_cli("audit", "--repo", root, "--trust-git", "--at", "2026-12-01T10:00:00Z").stdout
    assert f"{ALICE} @ " in text and "[active]" in text and "1h left" in text


def test_not_a_git_repository_is_a_usage_error(tmp_path) -> None:
    proc = run_cli("audit", "--repo", str(tmp_path), "--trust-git")
    assert proc.returncode == 2
    assert "not a git repository" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_empty_repository_has_an_empty_trail(tmp_path) -> None:
    GitRepo(tmp_path / "empty")
    proc = run_cli("audit", "--repo", str(tmp_path / "empty"), "--trust-git", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["requests"] == []
    assert data["ledger"]["present"] is False


def test_hostile_text_stays_inert_in_markdown_and_annotations(
    access_repo: GitRepo, tmp_path
) -> None:
    hostile = "requester: alice\nprovider: gcp\nscope: 'x|y @everyone <img src=x>'\nrole: '`r|`'\nunknown: 1\n"
    # a request file with hostile content, and a stray whose name carries a pipe
    access_repo.commit(
        {"requests/alice/x-y.yaml": hostile, "requests/alice/x|y.yaml": hostile},
        "2026-12-01T09:00:00Z",
    )
    summary = tmp_path / "summary.md"
    proc = run_cli(
        "audit", "--repo", str(access_repo.root), "--trust-git", "--format", "github",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in summary.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) == 1
    unescaped = len(re.findall(r"(?<!\\)\|", rows[0]))
    assert unescaped == 11  # ten cells: nothing from the file split a cell
    assert "<img" not in rows[0] and "@everyone" not in rows[0].replace("@\u200b", "")
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("::warning")]
    assert warnings and all("\n" not in w for w in warnings)
    assert any("file=requests/alice/x|y.yaml" in w for w in warnings)  # the stray, reported
