"""The output contract of `accessctl audit`: the JSON schema, CSV columns, bad --ref."""

from __future__ import annotations

import csv
import io
import json
from importlib import resources

import pytest
from jsonschema import Draft202012Validator

from reconciler import ledger
from reconciler.core.models import Change, ChangeKind, ChangeResult, Grant
from tests.audit.conftest import GitRepo, request_yaml, run_cli, utc

ALICE = "requests/alice/inc-4821.yaml"
CAROL = "requests/carol/stage.yaml"
AT = "2026-12-01T14:00:00Z"


def validator() -> Draft202012Validator:
    text = resources.files("reconciler").joinpath("schemas/audit.schema.json").read_text()
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def eventful(repo: GitRepo) -> None:
    """An invalid file, an edit, an early deletion, a late revoke, a failed grant."""
    repo.commit({"requests/alice/bad.yaml": "requester: [\n"}, "2026-12-01T08:00:00Z")
    repo.squash_pr(1, {ALICE: request_yaml(duration="1h")}, "2026-12-01T09:00:00Z")
    repo.squash_pr(2, {ALICE: request_yaml(duration="2h")}, "2026-12-01T09:30:00Z")
    repo.squash_pr(3, {CAROL: request_yaml("carol")}, "2026-12-01T09:00:00Z", author="carol")
    repo.commit({CAROL: None}, "2026-12-01T09:45:00Z", message="done (#4)", author="carol")
    grant = Grant(
        provider="gcp", scope="projects/payments-prod", role="roles/cloudsql.viewer",
        principal="user:alice@example.com", request=ALICE,
        begin=utc("2026-12-01T09:30:00Z"), end=utc("2026-12-01T11:30:00Z"),
    )  # fmt: skip
    results = [
        ChangeResult(Change(ChangeKind.GRANT, grant, "t"), ok=False, message="PERMISSION_DENIED"),
        ChangeResult(Change(ChangeKind.GRANT, grant, "t"), ok=True),
    ]
    ledger.record(repo.root, results, now=utc("2026-12-01T10:15:00Z"), run={"id": "r"})


def test_real_output_validates_against_the_shipped_schema(access_repo: GitRepo) -> None:
    eventful(access_repo)
    root = str(access_repo.root)
    check = validator()
    for extra in ((), ("--no-ledger",), ("--requester", "nobody")):
        proc = run_cli(
            "audit", "--repo", root, "--trust-git", "--format", "json", "--at", AT, *extra
        )
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        errors = sorted(check.iter_errors(data), key=str)
        assert not errors, [str(e) for e in errors[:3]]
    data = json.loads(
        run_cli("audit", "--repo", root, "--trust-git", "--format", "json", "--at", AT).stdout
    )
    seen = {a["code"] for e in data["requests"] for a in e["anomalies"]}
    assert {"invalid", "grant-failed", "late-grant"} <= seen
    assert {v["code"] for e in data["requests"] for v in e["events"]} == {
        "superseded",
        "deleted-early",
    }
    assert data["ledger"]["present"] is True and data["ledger"]["head"]


def test_an_empty_repository_validates_too(tmp_path) -> None:
    GitRepo(tmp_path / "empty")
    proc = run_cli("audit", "--repo", str(tmp_path / "empty"), "--trust-git", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert not list(validator().iter_errors(json.loads(proc.stdout)))


def test_csv_carries_codes_lateness_and_events(access_repo: GitRepo) -> None:
    eventful(access_repo)
    proc = run_cli(
        "audit", "--repo", str(access_repo.root), "--trust-git", "--format", "csv", "--at", AT
    )
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    granted = next(r for r in rows if r["granted_at"])
    assert granted["grant_lateness"] == "2700"
    assert "late-grant" in granted["anomaly_codes"].split("; ")
    assert {a["code"] for a in json.loads(granted["anomalies"])} >= {"grant-failed", "late-grant"}
    deleted = next(r for r in rows if r["file"] == CAROL)
    assert [e["code"] for e in json.loads(deleted["events"])] == ["deleted-early"]
    assert deleted["anomalies"] == "" and deleted["anomaly_codes"] == ""


@pytest.mark.parametrize("command", ["audit", "status"])
def test_a_ref_that_names_nothing_is_a_usage_error(access_repo: GitRepo, command: str) -> None:
    access_repo.squash_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    proc = run_cli(command, "--repo", str(access_repo.root), "--trust-git", "--ref", "nope")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "--ref 'nope' is not a branch, tag or commit" in proc.stderr
    assert proc.stdout == ""
    # a ref that exists is read as asked
    main = run_cli(command, "--repo", str(access_repo.root), "--trust-git", "--ref", "main")
    assert main.returncode == 0, main.stderr


def test_status_documents_the_unverified_state() -> None:
    proc = run_cli("status", "--help")
    assert "unverified" in proc.stdout
    assert "1 listed, but some request is unverified" in " ".join(proc.stdout.split())
