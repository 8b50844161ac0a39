"""plan/apply --trust-git --at against an independently written GCP IAM emulator."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e.conftest import GitRepo, request_yaml
from tests.e2e.independent_gcp import IndependentGcp
from tests.support.titles import description, title

PROJECT = "projects/payments-prod"
REQ = "requests/alice/inc-4821.yaml"
G_KEYS = {"request", "principal", "provider", "scope", "role", "begin", "end"}
# clean_env drops GITHUB_REPOSITORY and the repos have no origin: the "default" deployment
DEPLOYMENT = "default"
RFC3339Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")

UNMANAGED = [
    {"role": "roles/viewer", "members": ["user:zed@example.com", "group:ops@example.com"]},
    {
        "role": "roles/cloudsql.viewer",
        "members": ["user:alice@example.com"],
        "condition": {
            "title": "other-tool:alice",
            "description": "granted by a different tool",
            "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")',
        },
    },
    {
        "role": "roles/cloudsql.viewer",
        "members": ["serviceAccount:app@payments-prod.iam.gserviceaccount.com"],
    },
]


def managed(gcp: IndependentGcp, scope: str = PROJECT) -> list[dict]:
    return [
        b
        for b in gcp.bindings(scope)
        if b.get("condition", {}).get("title", "").startswith("accessctl:")
    ]


def unmanaged(gcp: IndependentGcp, scope: str = PROJECT) -> list[dict]:
    return [
        b
        for b in gcp.bindings(scope)
        if not b.get("condition", {}).get("title", "").startswith("accessctl:")
    ]


def sets(gcp: IndependentGcp) -> int:
    return sum(1 for verb, _ in gcp.calls if verb == "setIamPolicy")


def plan_json(repo: GitRepo, at: str) -> dict:
    res = repo.run("plan", "--trust-git", "--at", at, "--format", "json")
    assert res.code == 0, res
    data = res.json()
    assert set(data) == {"grant", "revoke", "keep", "errors"}
    for g in data["grant"] + data["revoke"] + data["keep"]:
        assert set(g) == G_KEYS, g
        for t in ("begin", "end"):
            assert g[t] is None or RFC3339Z.match(g[t]), g
    return data


def apply(repo: GitRepo, at: str, *extra: str, code: int = 0) -> dict:
    res = repo.run("apply", "--trust-git", "--at", at, "--format", "json", *extra)
    assert res.code == code, res
    return res.json()


def merge_request(repo: GitRepo, text: str, date: str, path: str = REQ) -> None:
    repo.write(path, text)
    repo.commit(f"request {path}", date)


def test_grant_idempotent_expiry_unmanaged_untouched(
    gcp_repo: GitRepo, gcp: IndependentGcp
) -> None:
    gcp.seed(PROJECT, UNMANAGED)
    before = unmanaged(gcp)
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")

    plan = plan_json(gcp_repo, "2026-12-01T10:00:00Z")
    assert plan["grant"] == [
        {
            "request": REQ,
            "principal": "user:alice@example.com",
            "provider": "gcp",
            "scope": PROJECT,
            "role": "roles/cloudsql.viewer",
            "begin": "2026-12-01T09:00:00Z",
            "end": "2026-12-01T11:00:00Z",
        }
    ]
    assert plan["revoke"] == [] and plan["keep"] == [] and plan["errors"] == []
    assert sets(gcp) == 0, "plan must not write"

    apply(gcp_repo, "2026-12-01T10:00:00Z")
    got = managed(gcp)
    assert got == [
        {
            "role": "roles/cloudsql.viewer",
            "members": ["user:alice@example.com"],
            "condition": {
                "title": title(REQ, DEPLOYMENT),
                "description": description(REQ, DEPLOYMENT),
                "expression": 'request.time < timestamp("2026-12-01T11:00:00Z")',
            },
        }
    ]
    assert unmanaged(gcp) == before
    body = gcp.raw_sets[-1]["policy"]
    assert body["version"] == 3 and body.get("etag"), body

    writes = sets(gcp)
    again = apply(gcp_repo, "2026-12-01T10:30:00Z")
    assert sets(gcp) == writes, "an idle apply makes no writes"
    assert again["grant"] == [] and again["revoke"] == [] and len(again["keep"]) == 1

    # past the end: the binding is garbage-collected, nothing else changes
    plan = plan_json(gcp_repo, "2026-12-01T11:00:01Z")
    assert [g["request"] for g in plan["revoke"]] == [REQ]
    apply(gcp_repo, "2026-12-01T11:00:01Z")
    assert managed(gcp) == []
    assert unmanaged(gcp) == before


def test_early_revoke_by_deletion(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    gcp.seed(PROJECT, UNMANAGED)
    before = unmanaged(gcp)
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    apply(gcp_repo, "2026-12-01T09:30:00Z")
    assert len(managed(gcp)) == 1
    gcp_repo.remove(REQ)
    gcp_repo.commit("revoke early", "2026-12-01T09:45:00Z")
    plan = plan_json(gcp_repo, "2026-12-01T10:00:00Z")
    assert [g["request"] for g in plan["revoke"]] == [REQ]
    apply(gcp_repo, "2026-12-01T10:00:00Z")
    assert managed(gcp) == []
    assert unmanaged(gcp) == before


def test_future_window_has_begin_bound(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    text = request_yaml(extra="duration: 2h\nstart: 2026-12-02T09:00:00Z\n")
    merge_request(gcp_repo, text, "2026-12-01T09:00:00Z")
    plan = plan_json(gcp_repo, "2026-12-01T10:00:00Z")
    assert [(g["begin"], g["end"]) for g in plan["grant"]] == [
        ("2026-12-02T09:00:00Z", "2026-12-02T11:00:00Z")
    ]
    apply(gcp_repo, "2026-12-01T10:00:00Z")
    (b,) = managed(gcp)
    expr = b["condition"]["expression"]
    assert 'request.time >= timestamp("2026-12-02T09:00:00Z")' in expr
    assert 'request.time < timestamp("2026-12-02T11:00:00Z")' in expr
    assert "&&" in expr
    # idle until it begins; once in the window it is kept (no rewrite needed)
    writes = sets(gcp)
    apply(gcp_repo, "2026-12-01T12:00:00Z")
    assert sets(gcp) == writes


def test_edit_is_a_new_request_window_from_new_merge(
    gcp_repo: GitRepo, gcp: IndependentGcp
) -> None:
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    apply(gcp_repo, "2026-12-01T09:30:00Z")
    merge_request(gcp_repo, request_yaml(role="roles/logging.viewer"), "2026-12-01T10:00:00Z")
    plan = plan_json(gcp_repo, "2026-12-01T10:30:00Z")
    assert [(g["role"], g["begin"], g["end"]) for g in plan["grant"]] == [
        ("roles/logging.viewer", "2026-12-01T10:00:00Z", "2026-12-01T12:00:00Z")
    ]
    assert [g["role"] for g in plan["revoke"]] == ["roles/cloudsql.viewer"]
    apply(gcp_repo, "2026-12-01T10:30:00Z")
    assert [b["role"] for b in managed(gcp)] == ["roles/logging.viewer"]


def test_folder_scope_and_two_requests_same_role(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    a = request_yaml(
        scope="folders/1234567", role="roles/logging.viewer", ticket=None, extra="duration: 3h\n"
    )
    c = request_yaml(
        requester="carol", scope="folders/1234567", role="roles/logging.viewer", ticket=None
    )
    merge_request(gcp_repo, a, "2026-12-01T09:00:00Z", "requests/alice/folder-logs.yaml")
    merge_request(gcp_repo, c, "2026-12-01T09:05:00Z", "requests/carol/folder-logs.yaml")
    apply(gcp_repo, "2026-12-01T10:00:00Z")
    titles = sorted(b["condition"]["title"] for b in managed(gcp, "folders/1234567"))
    assert titles == [
        title("requests/alice/folder-logs.yaml", DEPLOYMENT),
        title("requests/carol/folder-logs.yaml", DEPLOYMENT),
    ]
    writes = sets(gcp)
    apply(gcp_repo, "2026-12-01T10:01:00Z")
    assert sets(gcp) == writes
    # carol's ends first; alice's stays
    apply(gcp_repo, "2026-12-01T11:30:00Z")
    titles = [b["condition"]["title"] for b in managed(gcp, "folders/1234567")]
    assert titles == [title("requests/alice/folder-logs.yaml", DEPLOYMENT)]


def test_accessctl_now_equals_at_and_repo_default_cwd(
    gcp_repo: GitRepo, gcp: IndependentGcp, tmp_path
) -> None:
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    at = gcp_repo.run("plan", "--trust-git", "--at", "2026-12-01T10:00:00Z", "--format", "json")
    env = dict(gcp_repo.env, ACCESSCTL_NOW="2026-12-01T10:00:00Z")
    from tests.e2e.conftest import clean_env, run_cli

    now = run_cli(
        "plan", "--trust-git", "--format", "json", cwd=gcp_repo.path, env=clean_env(**env)
    )
    elsewhere = run_cli(
        "plan",
        "--trust-git",
        "--format",
        "json",
        "--repo",
        str(gcp_repo.path),
        cwd=tmp_path,
        env=clean_env(**env),
    )
    assert at.code == now.code == elsewhere.code == 0
    assert json.loads(at.out) == json.loads(now.out) == json.loads(elsewhere.out)
    late = run_cli(
        "plan",
        "--trust-git",
        "--format",
        "json",
        cwd=gcp_repo.path,
        env=clean_env(**dict(gcp_repo.env, ACCESSCTL_NOW="2026-12-01T12:00:00Z")),
    )
    assert late.json()["grant"] == []


def test_unapproved_uncommitted_request_not_granted(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    gcp_repo.write(REQ, request_yaml())  # in the work tree, never committed
    # an uncommitted file has no approval: silence (0) or a finding (1), never a grant
    res = gcp_repo.run("apply", "--trust-git", "--at", "2026-12-01T10:00:00Z", "--format", "json")
    assert res.code in (0, 1), res
    assert managed(gcp) == []


def test_policy_refused_request_not_granted(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    merge_request(gcp_repo, request_yaml(extra="duration: 8h\n"), "2026-12-01T09:00:00Z")
    res = gcp_repo.run("apply", "--trust-git", "--at", "2026-12-01T10:00:00Z", "--format", "json")
    assert res.code in (0, 1)
    assert managed(gcp) == []


def test_apply_without_trust_git_or_github_is_exit_2(
    gcp_repo: GitRepo, gcp: IndependentGcp
) -> None:
    merge_request(gcp_repo, request_yaml(), "2026-12-01T09:00:00Z")
    for cmd in ("apply", "plan"):
        res = gcp_repo.run(cmd, "--at", "2026-12-01T10:00:00Z")
        assert res.code == 2, res
        msg = (res.err + res.out).lower()
        assert "github" in msg and "--trust-git" in msg, res
    assert gcp.calls == [] or sets(gcp) == 0


@pytest.mark.parametrize("bad", ["2026-12-01T10:00:00", "tomorrow", "2026-13-01T00:00:00Z"])
def test_bad_at_is_usage_error(gcp_repo: GitRepo, bad: str) -> None:
    res = gcp_repo.run("plan", "--trust-git", "--at", bad)
    assert res.code == 2, res
