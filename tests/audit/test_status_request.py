"""`accessctl status` states and `accessctl request` files, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.audit.conftest import GitRepo, request_yaml, run_cli

ALICE = "requests/alice/inc-4821.yaml"


def status(repo: GitRepo, *extra: str, at: str = "2026-12-01T10:00:00Z") -> list[dict]:
    proc = run_cli("status", "--repo", str(repo.root), "--format", "json", "--at", at, *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["requests"]


def test_status_states_at_a_point_in_time(access_repo: GitRepo) -> None:
    access_repo.merge_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    access_repo.merge_pr(
        2, {"requests/alice/later.yaml": request_yaml(start="2026-12-01T15:00:00Z")},
        "2026-12-01T09:00:00Z",
    )  # fmt: skip
    access_repo.merge_pr(
        3, {"requests/alice/old.yaml": request_yaml(duration="30m")}, "2026-12-01T08:00:00Z"
    )
    access_repo.merge_pr(
        4, {"requests/alice/long.yaml": request_yaml(duration="9h")}, "2026-12-01T09:00:00Z"
    )
    access_repo.merge_pr(
        5, {"requests/carol/gone.yaml": request_yaml("carol")}, "2026-12-01T09:00:00Z"
    )
    access_repo.commit({"requests/carol/gone.yaml": None}, "2026-12-01T09:30:00Z")
    access_repo.write({"requests/carol/draft.yaml": request_yaml("carol")})  # not committed

    rows = status(access_repo)

    assert {r["file"]: r["state"] for r in rows} == {
        ALICE: "active",
        "requests/alice/later.yaml": "scheduled",
        "requests/alice/old.yaml": "expired",
        "requests/alice/long.yaml": "rejected",
        "requests/carol/draft.yaml": "pending",
        "requests/carol/gone.yaml": "revoked",  # deleted early, window still open
    }
    assert set(rows[0]) == {
        "file",
        "requester",
        "provider",
        "scope",
        "role",
        "state",
        "begin",
        "end",
    }
    active = next(r for r in rows if r["file"] == ALICE)
    assert (active["begin"], active["end"]) == ("2026-12-01T09:00:00Z", "2026-12-01T11:00:00Z")

    text = run_cli("status", "--repo", str(access_repo.root), "--at", "2026-12-01T10:00:00Z").stdout
    assert "1h left" in text and "starts in 5h" in text

    # once the deleted request's window would have ended, it leaves the list
    later = {r["file"] for r in status(access_repo, at="2026-12-01T11:30:00Z")}
    assert "requests/carol/gone.yaml" not in later


def test_status_mine_uses_the_git_github_user(access_repo: GitRepo) -> None:
    access_repo.merge_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    access_repo.merge_pr(
        2, {"requests/carol/x.yaml": request_yaml("carol")}, "2026-12-01T09:00:00Z"
    )
    access_repo.git("config", "github.user", "Carol")
    assert [r["file"] for r in status(access_repo, "--mine")] == ["requests/carol/x.yaml"]
    assert [r["file"] for r in status(access_repo, "--requester", "alice")] == [ALICE]


def test_status_mine_falls_back_to_the_email_in_identities(access_repo: GitRepo) -> None:
    access_repo.merge_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    access_repo.git("config", "user.email", "alice@example.com")
    assert [r["file"] for r in status(access_repo, "--mine")] == [ALICE]
    access_repo.git("config", "user.email", "stranger@example.com")
    proc = run_cli("status", "--repo", str(access_repo.root), "--mine")
    assert proc.returncode == 2
    assert "github.user" in proc.stderr


REQUEST_FLAGS = (
    "--provider", "gcp", "--scope", "projects/payments-prod", "--role", "roles/cloudsql.viewer",
    "--duration", "2h", "--reason", "Investigate INC-4821, slow checkout queries",
)  # fmt: skip


def test_request_writes_a_file_that_validates(access_repo: GitRepo) -> None:
    root = str(access_repo.root)
    proc = run_cli(
        "request", "--repo", root, "--requester", "alice", "--ticket", "INC-4821", *REQUEST_FLAGS
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ALICE
    text = (access_repo.root / ALICE).read_text()
    assert text.startswith(
        "# yaml-language-server: $schema=../../reconciler/schemas/request.schema.json\n"
    )
    assert "duration: 2h\n" in text
    check = run_cli("validate", "--repo", root, "--format", "json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["requests"][0]["policy"] == "payments-db-read"
    # the same slug again is refused rather than overwritten
    again = run_cli(
        "request", "--repo", root, "--requester", "alice", "--ticket", "INC-4821", *REQUEST_FLAGS
    )
    assert again.returncode == 2
    assert "exists already" in again.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--requester", "mallory"), "E-POLICY"),
        (("--requester", "alice", "--duration", "9h"), "4h"),
        (("--requester", "alice", "--role", "roles/owner"), "basic role"),
        (("--requester", "alice", "--expires", "2020-01-01T00:00:00Z"), "past"),
    ],
    ids=["not-a-requester", "too-long", "basic-role", "expired"],
)
def test_request_refuses_what_the_policies_refuse_and_writes_nothing(
    access_repo: GitRepo, extra: tuple[str, ...], message: str
) -> None:
    proc = run_cli("request", "--repo", str(access_repo.root), *REQUEST_FLAGS, *extra)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr
    assert "nothing written" in proc.stderr
    assert not (access_repo.root / "requests").exists()


def test_request_bad_flags_are_usage_errors(access_repo: GitRepo) -> None:
    root = str(access_repo.root)
    bad_time = run_cli(
        "request", "--repo", root, "--requester", "alice", *REQUEST_FLAGS, "--start", "tomorrow"
    )
    assert bad_time.returncode == 2 and "RFC 3339" in bad_time.stderr
    bad_slug = run_cli(
        "request", "--repo", root, "--requester", "alice", *REQUEST_FLAGS, "--slug", "Nope!"
    )
    assert bad_slug.returncode == 2
    assert "Traceback" not in bad_time.stderr + bad_slug.stderr


def test_request_open_pr_pushes_a_branch_and_opens_the_pull_request(
    access_repo: GitRepo, bare_remote: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.audit.github_pulls import PullCreatingEmulator

    access_repo.git("push", "-q", str(bare_remote.root), "main")
    access_repo.git("remote", "add", "origin", str(bare_remote.root))
    access_repo.git("fetch", "-q", "origin")
    access_repo.git("remote", "set-head", "origin", "main")
    main_before = access_repo.head()

    with PullCreatingEmulator() as github:
        github.add_repo("acme/access")
        env = {
            "GITHUB_API_URL": github.url,
            "GITHUB_TOKEN": github.token,
            "GITHUB_REPOSITORY": "acme/access",
        }
        proc = run_cli(
            "request", "--repo", str(access_repo.root), "--requester", "alice", "--ticket", "INC-4821",
            *REQUEST_FLAGS, "--open-pr", env=env,
        )  # fmt: skip
        created = github.created

    assert proc.returncode == 0, proc.stderr
    assert "pull request: " in proc.stdout
    [pull] = created
    assert pull["head"] == "access/alice/inc-4821" and pull["base"] == "main"
    assert "roles/cloudsql.viewer" in pull["title"]
    # the branch on the remote holds exactly the request on top of main
    branch = "refs/heads/access/alice/inc-4821"
    changed = bare_remote.git("diff", "--name-only", f"main..{branch}")
    assert changed == ALICE
    assert bare_remote.git("rev-parse", f"{branch}^") == main_before
    # the checkout was left alone: still on main, the file written but not committed
    assert access_repo.head() == main_before
    assert access_repo.git("rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert (access_repo.root / ALICE).is_file()
