"""How late the reconciler granted and revoked, against the window, with the tolerance the
policies set: AWS assignments end only when revoked, GCP bindings end by their condition."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from reconciler import ledger
from reconciler.core.audit import LedgerEntry, Version, build_audit, settle
from reconciler.core.models import Change, ChangeKind, ChangeResult, Grant
from reconciler.history import MemorySource
from reconciler.repo import load_config, load_requests
from tests.audit.conftest import POLICIES, GitRepo, audit_json, request_yaml, run_cli, utc

AWS = {"provider": "aws", "scope": "111111111111", "role": "ReadOnly"}
AWS_FILE = "requests/alice/aws.yaml"
GCP_FILE = "requests/alice/inc-4821.yaml"


def aws_line(kind: ChangeKind, when: str, *, request: str | None = AWS_FILE) -> ChangeResult:
    grant = Grant(
        provider="aws", scope="111111111111", role="ReadOnly", principal="alice@example.com",
        request=request, begin=utc("2026-12-01T09:00:00Z"), end=utc("2026-12-01T11:00:00Z"),
    )  # fmt: skip
    return ChangeResult(Change(kind, grant, "test"), ok=True)


def write(repo: GitRepo, when: str, *results: ChangeResult) -> None:
    ledger.record(repo.root, list(results), now=utc(when), run={"id": when})


def test_an_aws_revoke_2h47m_after_the_end_is_late(access_repo: GitRepo) -> None:
    access_repo.squash_pr(1, {AWS_FILE: request_yaml(**AWS)}, "2026-12-01T09:00:00Z")
    write(access_repo, "2026-12-01T09:06:00Z", aws_line(ChangeKind.GRANT, "09:06"))
    # AWS holds no request path: the revoke of the assignment names none
    write(access_repo, "2026-12-01T13:47:00Z", aws_line(ChangeKind.REVOKE, "", request=None))

    [entry] = audit_json(access_repo, at="2026-12-01T14:00:00Z")

    assert (entry["granted_at"], entry["revoked_at"]) == (
        "2026-12-01T09:06:00Z",
        "2026-12-01T13:47:00Z",
    )
    assert (entry["grant_lateness"], entry["revoke_lateness"]) == (360, 2 * 3600 + 47 * 60)
    assert entry["removed_at"] is None
    [late] = entry["anomalies"]
    assert late["code"] == "late-revoke"
    assert "2h47m" in late["message"] and "tolerance 20m" in late["message"]
    root = str(access_repo.root)
    args = ("audit", "--repo", root, "--trust-git", "--at", "2026-12-01T14:00:00Z")
    assert run_cli(*args).returncode == 0
    assert run_cli(*args, "--fail-on-anomaly").returncode == 1
    text = run_cli(*args).stdout
    assert "! late-revoke:" in text and "lateness: grant +6m, revoke +2h47m" in text


def test_an_aws_assignment_never_revoked_is_late_once_the_tolerance_has_passed(
    access_repo: GitRepo,
) -> None:
    access_repo.squash_pr(1, {AWS_FILE: request_yaml(**AWS)}, "2026-12-01T09:00:00Z")
    write(access_repo, "2026-12-01T09:06:00Z", aws_line(ChangeKind.GRANT, ""))

    [still_in_time] = audit_json(access_repo, at="2026-12-01T11:19:00Z")
    [late] = audit_json(access_repo, at="2026-12-01T11:21:00Z")

    assert still_in_time["anomalies"] == [] and still_in_time["revoke_lateness"] is None
    assert [a["code"] for a in late["anomalies"]] == ["late-revoke"]
    assert late["anomalies"][0]["message"].startswith("no revoke recorded 21m after")


def test_a_gcp_binding_ends_by_its_condition_so_its_clean_up_is_never_late(
    access_repo: GitRepo,
) -> None:
    access_repo.squash_pr(1, {GCP_FILE: request_yaml()}, "2026-12-01T09:00:00Z")
    grant = Grant(
        provider="gcp", scope="projects/payments-prod", role="roles/cloudsql.viewer",
        principal="user:alice@example.com", request=GCP_FILE,
        begin=utc("2026-12-01T09:00:00Z"), end=utc("2026-12-01T11:00:00Z"),
    )  # fmt: skip
    write(
        access_repo,
        "2026-12-01T09:05:00Z",
        ChangeResult(Change(ChangeKind.GRANT, grant, ""), ok=True),
    )
    write(
        access_repo,
        "2026-12-01T13:47:00Z",
        ChangeResult(Change(ChangeKind.REVOKE, grant, ""), ok=True),
    )

    [entry] = audit_json(access_repo, at="2026-12-01T14:00:00Z")

    assert (entry["grant_lateness"], entry["revoke_lateness"]) == (300, 0)
    assert entry["removed_at"] == "2026-12-01T13:47:00Z"
    assert entry["anomalies"] == []


def test_the_policies_set_the_tolerance(access_repo: GitRepo) -> None:
    relaxed = POLICIES + "settings:\n  late_tolerance: 3h\n"
    access_repo.commit({"policies/access.yaml": relaxed}, "2026-11-30T13:00:00Z")
    access_repo.squash_pr(1, {AWS_FILE: request_yaml(**AWS)}, "2026-12-01T09:00:00Z")
    write(access_repo, "2026-12-01T09:50:00Z", aws_line(ChangeKind.GRANT, ""))
    write(access_repo, "2026-12-01T13:47:00Z", aws_line(ChangeKind.REVOKE, "", request=None))

    [entry] = audit_json(access_repo, at="2026-12-01T14:00:00Z")

    assert (entry["grant_lateness"], entry["revoke_lateness"]) == (3000, 10020)
    assert entry["anomalies"] == []  # 50m and 2h47m are within 3h


def test_a_grant_recorded_past_the_tolerance_is_late(access_repo: GitRepo) -> None:
    access_repo.squash_pr(1, {AWS_FILE: request_yaml(**AWS)}, "2026-12-01T09:00:00Z")
    write(access_repo, "2026-12-01T09:50:00Z", aws_line(ChangeKind.GRANT, ""))
    [entry] = audit_json(access_repo, at="2026-12-01T10:00:00Z")
    assert [a["code"] for a in entry["anomalies"]] == ["late-grant"]
    assert entry["anomalies"][0]["message"].startswith("granted 50m after its window began")


def test_deleted_early_is_an_event_and_the_revoke_is_due_at_the_deletion(
    access_repo: GitRepo,
) -> None:
    access_repo.squash_pr(1, {AWS_FILE: request_yaml(**AWS)}, "2026-12-01T09:00:00Z")
    deletion = access_repo.commit({AWS_FILE: None}, "2026-12-01T09:30:00Z", message="done (#2)")
    write(access_repo, "2026-12-01T09:05:00Z", aws_line(ChangeKind.GRANT, ""))
    write(access_repo, "2026-12-01T09:40:00Z", aws_line(ChangeKind.REVOKE, "", request=None))

    [entry] = audit_json(access_repo, at="2026-12-01T12:00:00Z")

    assert entry["state"] == "revoked"
    assert entry["anomalies"] == []
    assert entry["events"] == [
        {
            "code": "deleted-early",
            "commit": deletion,
            "message": "deleted at 2026-12-01T09:30:00Z: access revoked early",
        }
    ]
    assert entry["revoke_lateness"] == 600  # due at the deletion, not at the window's end
    root = str(access_repo.root)
    proc = run_cli(
        "audit", "--repo", root, "--trust-git", "--fail-on-anomaly", "--at", "2026-12-01T12:00:00Z"
    )
    assert proc.returncode == 0, proc.stdout
    assert "* deleted-early:" in proc.stdout


# -- pure: an AWS assignment shared by two versions -----------------------------------------

CONFIG, _ = load_config(MemorySource({"policies/access.yaml": POLICIES.encode()}))


def version(path: str, text: str, merged: str) -> Version:
    [request], findings = load_requests(MemorySource({path: text.encode()}), CONFIG, [path])
    assert not findings
    return Version(path, f"c-{path}", "alice", utc(merged), "b", request, CONFIG)


def line(t: str, action: str, request: str | None, end: str | None = None) -> LedgerEntry:
    return LedgerEntry(
        time=utc(t), action=action, ok=True, provider="aws", scope="111111111111",
        role="ReadOnly", principal="alice@example.com", request=request,
        end=utc(end) if end else None,
    )  # fmt: skip


@pytest.mark.parametrize("chunked", [False, True], ids=["whole", "in-chunks"])
def test_an_assignment_another_request_still_holds_is_not_due_yet(chunked: bool) -> None:
    short = version("requests/alice/a.yaml", request_yaml(duration="1h", **AWS), "2026-12-01T09:00:00Z")  # fmt: skip
    long = version("requests/alice/b.yaml", request_yaml(duration="4h", **AWS), "2026-12-01T09:30:00Z")  # fmt: skip
    lines = [
        line("2026-12-01T09:05:00Z", "grant", short.path, "2026-12-01T10:00:00Z"),
        line("2026-12-01T13:35:00Z", "revoke", None),
    ]
    at, tolerance = utc("2026-12-01T14:00:00Z"), timedelta(minutes=20)
    if chunked:  # as forked workers build them: each chunk alone, then settled together
        parts = [build_audit([v], at=at, ledger=lines) for v in (short, long)]
        first, second = settle([*parts[0], *parts[1]], at=at, tolerance=tolerance)
    else:
        first, second = build_audit([short, long], at=at, ledger=lines)
    # the assignment stayed for the 4h request: it was due at 13:30, revoked 5m later
    assert first.revoke_lateness == 300
    assert first.anomalies == () and second.anomalies == ()


def test_the_output_schema_knows_every_code() -> None:
    from importlib import resources

    from reconciler.core.audit import ANOMALY_CODES, EVENT_CODES

    schema = json.loads(
        resources.files("reconciler").joinpath("schemas/audit.schema.json").read_text()
    )
    defs = schema["$defs"]
    assert tuple(defs["anomaly"]["properties"]["code"]["enum"]) == ANOMALY_CODES
    assert tuple(defs["event"]["properties"]["code"]["enum"]) == EVENT_CODES
