"""plan/apply against the independent GCP emulator: conflicts, outages, tampering, IAM quirks."""

from __future__ import annotations

import json

from tests.e2e.conftest import GitRepo, request_yaml
from tests.e2e.independent_gcp import IndependentGcp
from tests.e2e.test_gcp_e2e import (
    DEPLOYMENT,
    PROJECT,
    REQ,
    UNMANAGED,
    apply,
    managed,
    merge_request,
    plan_json,
    sets,
    unmanaged,
)
from tests.support.titles import legacy, title


def _mallory(condition_title: str) -> dict:
    return {
        "role": "roles/logging.viewer",
        "members": ["user:mallory@example.com"],
        "condition": {
            "title": condition_title,
            "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")',
        },
    }


def test_orphan_managed_binding_revoked_foreign_title_kept(
    gcp_repo: GitRepo, gcp: IndependentGcp
) -> None:
    # this deployment's title, but no such request was ever on the branch: revoked
    orphan = _mallory(title("requests/mallory/x.yaml", DEPLOYMENT))
    lookalike = _mallory("ACCESSCTL:requests/mallory/x.yaml")
    # another deployment's binding, and an old-style title naming no request this
    # repository ever had: neither is provably ours, so both are left as they are
    elsewhere = _mallory(title("requests/mallory/x.yaml", "acme/other-access"))
    untraced = _mallory(legacy("requests/mallory/x.yaml"))
    gcp.seed(PROJECT, [*UNMANAGED, orphan, lookalike, elsewhere, untraced])
    before = unmanaged(gcp)
    apply(gcp_repo, "2026-12-01T10:00:00Z")
    assert managed(gcp) == [elsewhere, untraced]
    assert unmanaged(gcp) == before


def test_stale_etag_conflict_is_retried(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    gcp.seed(PROJECT, UNMANAGED)
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    gcp.conflicts_to_inject = 2
    apply(gcp_repo, "2026-12-01T10:00:00Z")
    assert len(managed(gcp)) == 1
    assert len(unmanaged(gcp)) == len(UNMANAGED)


def test_outage_on_one_scope_others_converge(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    a = request_yaml(scope="projects/payments-dev", role="roles/logging.viewer", ticket=None)
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    merge_request(gcp_repo, a, "2026-12-01T09:00:00Z", "requests/alice/dev.yaml")
    gcp.failing.add(PROJECT)
    text = (
        (gcp_repo.path / "policies/main.yaml")
        .read_text()
        .replace("  gcp: {}", "  gcp: {attempts: 2}")
    )
    gcp_repo.write("policies/main.yaml", text)
    gcp_repo.commit("fewer attempts", "2026-12-01T09:01:00Z", author="erin")
    res = gcp_repo.run("apply", "--trust-git", "--at", "2026-12-01T10:00:00Z", "--format", "json")
    assert res.code == 1, res
    assert len(managed(gcp, "projects/payments-dev")) == 1


AUDIT = [
    {
        "service": "allServices",
        "auditLogConfigs": [{"logType": "DATA_READ"}, {"logType": "ADMIN_READ"}],
    }
]


def test_audit_configs_survive(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    gcp.seed(PROJECT, UNMANAGED, audit=AUDIT)
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    apply(gcp_repo, "2026-12-01T10:00:00Z")
    assert len(managed(gcp)) == 1
    assert gcp.audit_configs(PROJECT) == AUDIT
    apply(gcp_repo, "2026-12-01T12:00:00Z")
    assert managed(gcp) == [] and gcp.audit_configs(PROJECT) == AUDIT


def test_member_case_normalised_by_iam_is_still_idempotent(
    gcp_repo: GitRepo, gcp: IndependentGcp
) -> None:
    """IAM hands e-mail identifiers back in lower case; a mixed-case identity in policies
    must not cause a revoke+grant on every run."""
    text = (
        (gcp_repo.path / "policies/main.yaml")
        .read_text()
        .replace("user:alice@example.com", "user:Alice.Smith@Example.com")
    )
    gcp_repo.write("policies/main.yaml", text)
    gcp.lowercase_members = True
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    apply(gcp_repo, "2026-12-01T10:00:00Z")
    assert [b["members"] for b in managed(gcp)] == [["user:alice.smith@example.com"]]
    writes = sets(gcp)
    again = apply(gcp_repo, "2026-12-01T10:05:00Z")
    assert again["grant"] == [] and again["revoke"] == [], again
    assert sets(gcp) == writes
    apply(gcp_repo, "2026-12-01T11:00:01Z")
    assert managed(gcp) == []


def test_broken_policy_on_main_changes_nothing(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    apply(gcp_repo, "2026-12-01T09:10:00Z")
    before = gcp.bindings(PROJECT)
    gcp_repo.write("policies/main.yaml", "policies: [\n")
    gcp_repo.commit("oops", "2026-12-01T09:20:00Z", author="erin")
    res = gcp_repo.run("apply", "--trust-git", "--at", "2026-12-01T09:30:00Z", "--format", "json")
    assert res.code == 2, res
    assert "policies/main.yaml" in res.err + res.out
    assert gcp.bindings(PROJECT) == before


def test_bad_request_file_grants_nothing_and_loses_nothing(
    gcp_repo: GitRepo, gcp: IndependentGcp
) -> None:
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    apply(gcp_repo, "2026-12-01T09:10:00Z")
    bad = request_yaml(requester="carol", role="roles/logging.viewer") + "role: roles/owner\n"
    merge_request(gcp_repo, bad, "2026-12-01T09:20:00Z", "requests/carol/bad.yaml")
    res = gcp_repo.run("apply", "--trust-git", "--at", "2026-12-01T09:30:00Z", "--format", "json")
    assert res.code == 1, res
    errors = res.json()["errors"]
    assert any("requests/carol/bad.yaml" in json.dumps(e) for e in errors), errors
    assert [b["condition"]["title"] for b in managed(gcp)] == [title(REQ, DEPLOYMENT)]


def _cond(title: str, expression: str) -> dict:
    return {"title": title, "expression": expression}


def test_tampered_managed_bindings_are_corrected(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    """Someone adds a member to our binding, extends its end, or breaks its expression:
    the next apply puts back exactly what the request allows."""
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    apply(gcp_repo, "2026-12-01T09:10:00Z")
    (ours,) = managed(gcp)
    title = ours["condition"]["title"]
    gcp.bump(
        PROJECT,
        [
            *UNMANAGED,
            dict(ours, members=["user:alice@example.com", "user:bob@example.com"]),
            {
                "role": "roles/cloudsql.viewer",
                "members": ["user:alice@example.com"],
                "condition": _cond(title, 'request.time < timestamp("2030-01-01T00:00:00Z")'),
            },
            {
                "role": "roles/logging.viewer",
                "members": ["user:alice@example.com"],
                "condition": _cond(title, "true"),
            },
        ],
    )
    before = unmanaged(gcp)
    plan = plan_json(gcp_repo, "2026-12-01T09:20:00Z")
    assert len(plan["keep"]) == 1 and plan["grant"] == []
    assert len(plan["revoke"]) >= 2, plan
    apply(gcp_repo, "2026-12-01T09:20:00Z")
    assert managed(gcp) == [ours]
    assert unmanaged(gcp) == before
    writes = sets(gcp)
    apply(gcp_repo, "2026-12-01T09:30:00Z")
    assert sets(gcp) == writes


def test_organization_scope(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    text = (
        (gcp_repo.path / "policies/main.yaml")
        .read_text()
        .replace(
            "scopes: ['projects/payments-*', 'folders/1234567']",
            "scopes: ['projects/payments-*', 'folders/1234567', 'organizations/998877']",
        )
    )
    gcp_repo.write("policies/main.yaml", text)
    org = request_yaml(scope="organizations/998877", role="roles/monitoring.viewer", ticket=None)
    merge_request(gcp_repo, org, "2026-12-01T09:00:00Z", "requests/alice/org.yaml")
    apply(gcp_repo, "2026-12-01T09:10:00Z")
    assert [b["condition"]["title"] for b in managed(gcp, "organizations/998877")] == [
        title("requests/alice/org.yaml", DEPLOYMENT)
    ]


def test_terse_set_response_is_verified_by_a_read(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    gcp.empty_set_response = True
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    out = apply(gcp_repo, "2026-12-01T09:10:00Z")
    assert [r["ok"] for r in out["results"]] == [True]
    assert len(managed(gcp)) == 1


def test_two_concurrent_applies_lose_nothing(
    gcp_repo: GitRepo, gcp: IndependentGcp, tmp_path
) -> None:
    """Two runs racing on one scope (a late cron and a push): etags make the loser retry,
    and neither run's grant or the other tools' bindings are lost."""
    import subprocess

    from tests.e2e.conftest import CLI, clean_env

    gcp.seed(PROJECT, UNMANAGED)
    before = unmanaged(gcp)
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    other = request_yaml(requester="carol", role="roles/logging.viewer")
    merge_request(gcp_repo, other, "2026-12-01T09:00:00Z", "requests/carol/logs.yaml")
    env = clean_env(**gcp_repo.env)
    args = [
        CLI,
        "apply",
        "--trust-git",
        "--no-ledger",
        "--at",
        "2026-12-01T09:30:00Z",
        "--format",
        "json",
    ]
    procs = [
        subprocess.Popen(
            args,
            cwd=gcp_repo.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, (out, err)
        assert "Traceback" not in err
    titles = sorted(b["condition"]["title"] for b in managed(gcp))
    assert titles == [
        title("requests/alice/inc-4821.yaml", DEPLOYMENT),
        title("requests/carol/logs.yaml", DEPLOYMENT),
    ]
    assert unmanaged(gcp) == before
