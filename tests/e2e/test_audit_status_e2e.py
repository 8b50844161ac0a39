"""audit and status as a user runs them, on a crafted history in a real git repo."""

from __future__ import annotations

import re

from tests.e2e.conftest import GitRepo, request_yaml
from tests.e2e.independent_gcp import IndependentGcp

A_KEYS = {
    "file",
    "commit",
    "requester",
    "provider",
    "scope",
    "role",
    "reason",
    "pr",
    "approvers",
    "approved_at",
    "begin",
    "end",
    "granted_at",
    "revoked_at",
    "sessions_ended_at",
    "removed_at",
    "grant_lateness",
    "revoke_lateness",
    "state",
    "break_glass",
    "reviewed_after_by",
    "reviewed_after_at",
    "anomalies",
    "events",
}
S_KEYS = {"file", "requester", "provider", "scope", "role", "state", "begin", "end"}
TIME_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
STATES = {
    "pending",
    "scheduled",
    "active",
    "expired",
    "revoked",
    "rejected",
    "unverified",
    "suspended",
}


def crafted(r: GitRepo) -> dict[str, str]:
    """merge commit, squash, edit, deletion, direct push; returns the commits by name."""
    c: dict[str, str] = {}
    r.git("checkout", "-q", "-b", "alice/inc-1")
    r.write("requests/alice/inc-1.yaml", request_yaml())
    r.commit("request inc-1", "2026-12-01T08:00:00Z")
    r.git("checkout", "-q", "main")
    r.git(
        "merge",
        "--no-ff",
        "-q",
        "-m",
        "Merge pull request #12 from alice/inc-1",
        "alice/inc-1",
        date="2026-12-01T09:00:00Z",
        author="dave",
    )
    c["merge"] = r.git("rev-parse", "HEAD")
    carol = request_yaml(
        requester="carol", scope="projects/payments-dev", role="roles/logging.viewer", ticket=None
    )
    r.write("requests/carol/logs.yaml", carol)
    c["squash"] = r.commit("carol logs (#13)", "2026-12-01T09:30:00Z", author="carol")
    r.write("requests/alice/inc-1.yaml", request_yaml(extra="duration: 3h\n"))
    c["edit"] = r.commit("extend (#14)", "2026-12-01T10:00:00Z")
    r.remove("requests/carol/logs.yaml")
    c["delete"] = r.commit("done (#15)", "2026-12-01T10:30:00Z", author="carol")
    r.write("requests/alice/direct.yaml", request_yaml(role="roles/logging.viewer"))
    c["direct"] = r.commit("direct push", "2026-12-01T11:00:00Z")
    return c


def check_audit(data: dict) -> list[dict]:
    assert set(data) == {"requests", "ledger"}
    for a in data["requests"]:
        assert set(a) == A_KEYS, a
        for k in ("approved_at", "begin", "end", "granted_at", "revoked_at"):
            assert a[k] is None or TIME_Z.match(a[k]), (k, a)
        assert a["state"] in STATES, a
        assert all(set(x) == {"code", "message"} for x in a["anomalies"])
        assert all(set(x) == {"code", "commit", "message"} for x in a["events"])
        assert a["approvers"] is None or isinstance(a["approvers"], list)
        assert a["pr"] is None or isinstance(a["pr"], int)
        assert re.fullmatch(r"[0-9a-f]{40}", a["commit"]), a
    return data["requests"]


def test_audit_crafted_history(repo: GitRepo) -> None:
    c = crafted(repo)
    res = repo.run("audit", "--trust-git", "--format", "json", "--at", "2026-12-01T11:30:00Z")
    assert res.code == 0, res
    rows = check_audit(res.json())
    by = {(a["file"], a["commit"]): a for a in rows}
    assert set(by) == {
        ("requests/alice/inc-1.yaml", c["merge"]),
        ("requests/carol/logs.yaml", c["squash"]),
        ("requests/alice/inc-1.yaml", c["edit"]),
        ("requests/alice/direct.yaml", c["direct"]),
    }
    first = by["requests/alice/inc-1.yaml", c["merge"]]
    # approved when it landed on main (the merge), not when the branch commit was made
    assert first["approved_at"] == "2026-12-01T09:00:00Z"
    assert (first["begin"], first["end"]) == ("2026-12-01T09:00:00Z", "2026-12-01T11:00:00Z")
    assert first["requester"] == "alice" and first["reason"].startswith("Investigate")
    assert first["state"] in {"revoked", "expired"}
    edit = by["requests/alice/inc-1.yaml", c["edit"]]
    assert (edit["begin"], edit["end"]) == ("2026-12-01T10:00:00Z", "2026-12-01T13:00:00Z")
    assert edit["state"] == "active"
    gone = by["requests/carol/logs.yaml", c["squash"]]
    assert gone["state"] == "revoked"
    assert gone["revoked_at"] in (None, "2026-12-01T10:30:00Z")
    # a later audit: everything has ended
    late = check_audit(
        repo.run("audit", "--trust-git", "--format", "json", "--at", "2026-12-02T00:00:00Z").json()
    )
    assert {a["state"] for a in late} <= {"expired", "revoked"}


def test_audit_filters_and_other_formats(repo: GitRepo) -> None:
    crafted(repo)
    res = repo.run(
        "audit",
        "--trust-git",
        "--format",
        "json",
        "--requester",
        "carol",
        "--at",
        "2026-12-01T11:30:00Z",
    )
    assert res.code == 0, res
    assert {a["requester"] for a in check_audit(res.json())} == {"carol"}
    for fmt in ("text", "csv", "markdown"):
        res = repo.run("audit", "--trust-git", "--format", fmt, "--at", "2026-12-01T11:30:00Z")
        assert res.code == 0, (fmt, res)
        assert "requests/alice/inc-1.yaml" in res.out


def test_audit_after_apply_has_granted_at(gcp_repo: GitRepo, gcp: IndependentGcp) -> None:
    gcp_repo.write("requests/alice/inc-1.yaml", request_yaml())
    gcp_repo.commit("request (#1)", "2026-12-01T09:00:00Z")
    res = gcp_repo.run("apply", "--trust-git", "--at", "2026-12-01T09:10:00Z")
    assert res.code == 0, res
    res = gcp_repo.run("apply", "--trust-git", "--at", "2026-12-01T11:00:05Z")
    assert res.code == 0, res
    rows = check_audit(
        gcp_repo.run(
            "audit", "--trust-git", "--format", "json", "--at", "2026-12-01T12:00:00Z"
        ).json()
    )
    (a,) = rows
    assert a["granted_at"] == "2026-12-01T09:10:00Z", a
    assert a["revoked_at"] == "2026-12-01T11:00:05Z", a
    assert a["state"] == "expired", a


def test_audit_empty_and_bad_file_history(repo: GitRepo) -> None:
    res = repo.run("audit", "--trust-git", "--format", "json")
    assert res.code == 0, res
    assert res.json()["requests"] == []
    repo.write(
        "requests/alice/bad.yaml", "requester: alice\nprovider: !!python/object:os.system x\n"
    )
    repo.commit("bad", "2026-12-01T09:00:00Z")
    res = repo.run("audit", "--trust-git", "--format", "json", "--at", "2026-12-01T10:00:00Z")
    assert res.code in (0, 1), res
    rows = check_audit(res.json())
    assert all(a["state"] == "rejected" for a in rows if a["file"] == "requests/alice/bad.yaml")


def test_status_states(repo: GitRepo) -> None:
    r = repo
    r.write("requests/alice/active.yaml", request_yaml())
    r.write(
        "requests/alice/later.yaml",
        request_yaml(
            role="roles/logging.viewer", extra="duration: 1h\nstart: 2026-12-03T09:00:00Z\n"
        ),
    )
    r.write(
        "requests/alice/done.yaml",
        request_yaml(
            scope="projects/payments-dev",
            role="roles/logging.viewer",
            ticket=None,
            extra="duration: 30m\n",
        ),
    )
    r.write("requests/alice/refused.yaml", request_yaml(extra="duration: 9h\n"))
    r.commit("four requests", "2026-12-01T09:00:00Z")
    r.write(
        "requests/alice/unmerged.yaml",
        request_yaml(scope="projects/payments-dev", role="roles/monitoring.viewer", ticket=None),
    )
    res = r.run("status", "--trust-git", "--format", "json", "--at", "2026-12-01T10:00:00Z")
    assert res.code in (0, 1), res
    data = res.json()
    assert set(data) == {"requests"}
    for s in data["requests"]:
        assert set(s) == S_KEYS, s
        assert s["state"] in STATES
        for k in ("begin", "end"):
            assert s[k] is None or TIME_Z.match(s[k]), s
    state = {s["file"]: s["state"] for s in data["requests"]}
    assert state["requests/alice/active.yaml"] == "active"
    assert state["requests/alice/later.yaml"] == "scheduled"
    assert state["requests/alice/done.yaml"] == "expired"
    assert state["requests/alice/refused.yaml"] == "rejected"
    assert state["requests/alice/unmerged.yaml"] == "pending"
    refused = next(s for s in data["requests"] if s["file"] == "requests/alice/refused.yaml")
    assert refused["end"] is None or TIME_Z.match(refused["end"])


def test_apply_in_a_clone_records_the_ledger_on_origin(tmp_path, gcp: IndependentGcp) -> None:
    import subprocess

    from tests.e2e.conftest import GCP_POLICIES

    upstream = tmp_path / "upstream.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(upstream)], check=True)
    work = GitRepo(tmp_path / "work", env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    work.path.mkdir()
    work.git("init", "-q", "-b", "main")
    work.write("policies/main.yaml", GCP_POLICIES)
    work.write("requests/alice/inc-1.yaml", request_yaml())
    work.commit("policies and a request", "2026-12-01T09:00:00Z")
    work.git("remote", "add", "origin", str(upstream))
    work.git("push", "-q", "origin", "main")
    clone = GitRepo(tmp_path / "clone", env=work.env)
    subprocess.run(
        ["git", "clone", "-q", str(upstream), str(clone.path)], check=True, capture_output=True
    )
    for at in ("2026-12-01T09:10:00Z", "2026-12-01T11:00:05Z"):
        res = clone.run("apply", "--trust-git", "--at", at, "--format", "json")
        assert res.code == 0, res
    rows = check_audit(
        clone.run("audit", "--trust-git", "--format", "json", "--at", "2026-12-01T12:00:00Z").json()
    )
    assert [(a["granted_at"], a["revoked_at"]) for a in rows] == [
        ("2026-12-01T09:10:00Z", "2026-12-01T11:00:05Z")
    ]
    # and a fresh clone of origin sees the same trail
    other = GitRepo(tmp_path / "other")
    subprocess.run(
        ["git", "clone", "-q", str(upstream), str(other.path)], check=True, capture_output=True
    )
    again = check_audit(
        other.run("audit", "--trust-git", "--format", "json", "--at", "2026-12-01T12:00:00Z").json()
    )
    assert [(a["granted_at"], a["revoked_at"]) for a in again] == [
        ("2026-12-01T09:10:00Z", "2026-12-01T11:00:05Z")
    ]
