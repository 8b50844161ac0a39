"""Evidence an auditor can trust: what `accessctl audit` (and `status`) say when the trail was
bypassed, when GitHub is down, when the ledger is missing or holds lines the reconciler did
not write, and who revoked what. Real git, the GitHub emulator over HTTP, the CLI as a user
runs it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import ledger
from reconciler.core.audit import LedgerEntry
from reconciler.core.models import Change, ChangeKind, ChangeResult, Grant
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests.audit.conftest import POLICIES, GitRepo, request_yaml, run_cli, utc
from tests.security.conftest import GitRepo as SecurityRepo
from tests.security.conftest import World, request
from tests.security.conftest import run_cli as security_cli
from tests.support.emulators import running_github

REPO = "acme/access"
ALICE = "requests/alice/inc-4821.yaml"
OTHER = "requests/alice/other.yaml"
AT = "2026-12-01T10:00:00Z"


@pytest.fixture
def access(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "access")
    repo.commit({"policies/access.yaml": POLICIES}, "2026-11-30T12:00:00Z", message="policies")
    return repo


@pytest.fixture
def github() -> Iterator[GitHubEmulator]:
    with running_github(REPO) as emulator:
        yield emulator


def env_of(github: GitHubEmulator) -> dict[str, str]:
    return {"GITHUB_API_URL": github.url, "GITHUB_TOKEN": DEFAULT_TOKEN, "GITHUB_REPOSITORY": REPO}


def land(
    repo: GitRepo,
    github: GitHubEmulator,
    files: dict[str, str | None],
    when: str,
    *,
    author: str = "alice",
    reviewer: str | None = "dave",
    reviewed: str | None = None,
) -> tuple[str, int]:
    """A pull request squash-merged at ``when``, reviewed by ``reviewer`` (at ``reviewed``,
    default five minutes before the merge)."""
    base = repo.head()
    number = max(github.repos[REPO].pulls, default=0) + 1
    sha = repo.commit(files, when, message=f"Request access (#{number})", author=author)
    listed = [
        {"filename": p, "status": "removed" if text is None else "added"}
        for p, text in files.items()
    ]
    n = github.add_pull(REPO, author=author, head_sha=sha, base_sha=base, files=listed)
    if reviewer:
        at = utc(reviewed) if reviewed else utc(when) - timedelta(minutes=5)
        github.add_review(REPO, n, reviewer, "APPROVED", commit_id=sha, submitted_at=at)
    github.merge(REPO, n, merge_commit_sha=sha, merged_at=utc(when))
    return sha, n


def record(repo: GitRepo, kind: ChangeKind, when: str, **grant: object) -> None:
    """A ledger line as apply writes it (``request=None``: an AWS revoke, which names none)."""
    fields: dict[str, object] = {
        "provider": "gcp",
        "scope": "projects/payments-prod",
        "role": "roles/cloudsql.viewer",
        "principal": "user:alice@example.com",
        "request": ALICE,
        "begin": utc("2026-12-01T09:00:00Z"),
        "end": utc("2026-12-01T11:00:00Z"),
    } | grant
    change = Change(kind, Grant(**fields), "test")  # type: ignore[arg-type]
    ledger.record(repo.root, [ChangeResult(change, ok=True)], now=utc(when), run={"id": when})


def audit(repo: GitRepo, *extra: str, env: dict[str, str] | None = None, at: str = AT):
    return run_cli("audit", "--repo", str(repo.root), "--at", at, *extra, env=env)


def codes(entry: dict) -> list[str]:
    return [a["code"] for a in entry["anomalies"]]


# -- a direct push keeps its ledger lines and says what happened -----------------------------


def test_a_direct_push_the_ledger_shows_granted_is_an_unapproved_grant(
    access: GitRepo, github: GitHubEmulator
) -> None:
    sha = access.commit({ALICE: request_yaml()}, "2026-12-01T09:00:00Z", message="quick fix")
    record(access, ChangeKind.GRANT, "2026-12-01T09:04:00Z")
    record(access, ChangeKind.REVOKE, "2026-12-01T09:40:00Z")

    proc = audit(access, "--format", "json", env=env_of(github))

    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads(proc.stdout)["requests"]
    assert (entry["commit"], entry["pr"], entry["approved_at"]) == (sha, None, None)
    assert entry["state"] == "rejected"
    # what happened is still shown: the git-dated window matched the ledger's lines
    assert (entry["granted_at"], entry["revoked_at"]) == (
        "2026-12-01T09:04:00Z",
        "2026-12-01T09:40:00Z",
    )
    assert codes(entry) == ["direct-push", "granted-unapproved"]
    assert "09:04:00Z" in entry["anomalies"][1]["message"]
    failing = audit(access, "--format", "json", "--fail-on-anomaly", env=env_of(github))
    assert failing.returncode == 1


# -- GitHub down: unverified, said once, exit 1, nobody accused ------------------------------


def test_github_down_leaves_approvals_unverified_says_why_once_and_fails(
    access: GitRepo, github: GitHubEmulator
) -> None:
    land(access, github, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    land(access, github, {OTHER: request_yaml(duration="1h")}, "2026-12-01T09:01:00Z")
    record(access, ChangeKind.GRANT, "2026-12-01T09:05:00Z")
    github.fail(".", 503, times=100_000, message="Service Unavailable")

    proc = audit(access, "--format", "json", env=env_of(github))

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert [e["state"] for e in data["requests"]] == ["unverified", "unverified"]
    for entry in data["requests"]:
        # unknown is not refused: no accusation of the reconciler, whatever the ledger says
        assert codes(entry) == ["unverified"], entry
        # the library's words stay out of the JSON; the cause is said once, on stderr
        assert "503" not in json.dumps(entry["anomalies"])
    assert data["requests"][0]["granted_at"] == "2026-12-01T09:05:00Z"
    causes = [line for line in proc.stderr.splitlines() if "could not be read" in line]
    assert len(causes) == 1, proc.stderr
    assert "503 (Service Unavailable)" in causes[0]
    assert "HTTPConnectionPool" not in proc.stderr and "urllib3" not in proc.stderr

    summary = access.root.parent / "summary.md"
    shown = run_cli(
        "audit", "--repo", str(access.root), "--at", AT, "--format", "github",
        env={**env_of(github), "GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    assert shown.returncode == 1
    assert "could not be read" in summary.read_text()
    assert sum("could not be read" in line for line in shown.stderr.splitlines()) == 1

    status = run_cli(
        "status", "--repo", str(access.root), "--at", AT, "--format", "json", env=env_of(github)
    )
    assert status.returncode == 1, status.stderr
    assert {r["state"] for r in json.loads(status.stdout)["requests"]} == {"unverified"}
    assert sum("could not be read" in line for line in status.stderr.splitlines()) == 1


def deployed(world: World, tmp_path: Path) -> SecurityRepo:
    """The access repository with a bare origin that the GitHub emulator holds too, so
    apply writes the ledger through GitHub (signed for the bot) as in Actions."""
    origin = SecurityRepo(tmp_path / "origin.git", bare=True)
    world.repo.git("remote", "add", "origin", str(origin.root))
    world.repo.git("push", "-q", "origin", "main")
    world.github.attach_git(REPO, origin.root)
    return origin


def approve(world: World, login: str) -> None:
    """``login``'s request through a pull request dave approved, squash-merged, pushed."""
    number, _ = world.open_pr({f"requests/{login}/inc-1.yaml": request(login)}, login)
    world.github.add_review(REPO, number, "dave", "APPROVED")
    world.squash(number, f"pr{world.branches}")
    world.repo.git("push", "-q", "origin", "main")


def test_during_an_outage_only_an_approval_the_reconciler_stored_stands_in(
    world: World, tmp_path: Path
) -> None:
    deployed(world, tmp_path)
    approve(world, "alice")
    root = str(world.repo.root)
    applied = security_cli("apply", "--repo", root, "--format", "json", env=world.env)
    assert applied.code == 0, applied.stdout + applied.stderr  # stores alice's approval
    approve(world, "bob")
    # a cache in the work tree is anyone's to write: never read
    (world.repo.root / ".accessctl-cache").mkdir()
    (world.repo.root / ".accessctl-cache" / "approvals.json").write_text("{}")
    world.github.fail(r"^GET /repos/acme/access/commits/[0-9a-f]{40}/pulls", 503, times=1000)

    audited = security_cli("audit", "--repo", root, "--format", "json", env=world.env)

    assert audited.code == 1, audited.stdout + audited.stderr
    alice, bob = audited.json["requests"]
    assert (alice["state"], alice["approvers"]) == ("active", ["dave"])
    assert alice["anomalies"] == []
    assert (bob["state"], codes(bob)) == ("unverified", ["unverified"])
    assert sum("could not be read" in line for line in audited.stderr.splitlines()) == 1


def test_a_review_given_after_the_merge_never_approves_it(
    access: GitRepo, github: GitHubEmulator
) -> None:
    land(
        access, github, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z",
        reviewed="2026-12-01T09:30:00Z",
    )  # fmt: skip
    land(access, github, {OTHER: request_yaml(duration="1h")}, "2026-12-01T09:10:00Z")

    proc = audit(access, "--format", "json", env=env_of(github))

    assert proc.returncode == 0, proc.stderr
    late, timely = json.loads(proc.stdout)["requests"]
    assert (late["approvers"], late["state"]) == ([], "rejected")
    assert codes(late) == ["refused"] and "approval" in late["anomalies"][0]["message"]
    assert (timely["approvers"], timely["state"]) == (["dave"], "active")


# -- who revoked it ---------------------------------------------------------------------------


def test_a_deletion_by_someone_who_may_not_revoke_names_them(
    access: GitRepo, github: GitHubEmulator
) -> None:
    land(access, github, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    land(access, github, {OTHER: request_yaml()}, "2026-12-01T09:00:30Z")
    _, by_mallory = land(
        access, github, {ALICE: None}, "2026-12-01T09:20:00Z", author="mallory", reviewer=None
    )
    land(access, github, {OTHER: None}, "2026-12-01T09:30:00Z", author="dave", reviewer=None)

    proc = audit(access, "--format", "json", env=env_of(github))

    assert proc.returncode == 0, proc.stderr
    alice, other = json.loads(proc.stdout)["requests"]
    assert [e["code"] for e in alice["events"]] == ["deleted-early"]
    assert codes(alice) == ["revoked-by-other"]
    assert f"mallory through pull request #{by_mallory}" in alice["anomalies"][0]["message"]
    # dave approves for the policy that allows it: his early revocation is just an event
    assert ([e["code"] for e in other["events"]], other["anomalies"]) == (["deleted-early"], [])


def test_with_git_alone_the_commit_author_of_a_direct_deletion_is_named(access: GitRepo) -> None:
    access.squash_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    access.commit({ALICE: None}, "2026-12-01T09:20:00Z", message="oops", author="mallory")
    proc = audit(access, "--trust-git", "--format", "json")
    [entry] = json.loads(proc.stdout)["requests"]
    assert codes(entry) == ["revoked-by-other"]
    assert "mallory through a direct push" in entry["anomalies"][0]["message"]


# -- the ledger: missing, forged ----------------------------------------------------------------


def test_a_missing_ledger_is_said_in_every_format(access: GitRepo, tmp_path: Path) -> None:
    access.squash_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")

    text = audit(access, "--trust-git")
    assert text.returncode == 0, text.stderr
    assert "ledger accessctl-ledger: NOT FOUND" in text.stdout
    assert "ledger-missing" in text.stdout
    markdown = audit(access, "--trust-git", "--format", "markdown")
    assert "NOT FOUND" in markdown.stdout and "`ledger-missing`" in markdown.stdout
    summary = tmp_path / "summary.md"
    github = audit(
        access, "--trust-git", "--format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert any(
        line.startswith("::warning") and "ledger-missing" in line
        for line in github.stdout.splitlines()
    )
    assert "ledger-missing" in summary.read_text()
    for fmt in ("json", "csv"):
        proc = audit(access, "--trust-git", "--format", fmt)
        assert proc.returncode == 0, proc.stderr
        assert "LEDGER" in proc.stderr and "ledger-missing" in proc.stderr, fmt
    data = json.loads(audit(access, "--trust-git", "--format", "json").stdout)
    assert data["ledger"]["present"] is False
    assert [p["code"] for p in data["ledger"]["problems"]] == ["ledger-missing"]
    assert audit(access, "--trust-git", "--fail-on-anomaly").returncode == 1
    # --no-ledger: not consulted, nothing to say about it
    bare = audit(access, "--trust-git", "--no-ledger", "--format", "json", "--fail-on-anomaly")
    assert bare.returncode == 0 and json.loads(bare.stdout)["ledger"] is None


def test_forged_ledger_lines_are_never_believed_and_shown_everywhere(
    access: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler import trail
    from reconciler.commands.audit import audit_command

    access.squash_pr(1, {ALICE: request_yaml()}, "2026-12-01T09:00:00Z")
    record(access, ChangeKind.GRANT, "2026-12-01T09:05:00Z")
    real = trail.inspect_ledger(access.root, "accessctl-ledger", github=None, identity="x")
    [line] = real.entries
    forged_revoke = LedgerEntry(
        time=utc("2026-12-01T09:30:00Z"), action="revoke", ok=True, provider="gcp",
        scope="projects/payments-prod", role="roles/cloudsql.viewer",
        principal="user:alice@example.com", request=ALICE, end=utc("2026-12-01T11:00:00Z"),
    )  # fmt: skip
    problem = trail.LedgerProblem(
        "ledger-forged", "1 line was not written by github-actions[bot]", real.head
    )
    facts = replace(real, verified=False, problems=(problem,), forged=(forged_revoke,))
    monkeypatch.setattr(trail, "inspect_ledger", lambda *a, **k: facts)
    for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    summary = tmp_path / "summary.md"

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(
            audit_command,
            ["--repo", str(access.root), "--trust-git", "--at", AT, *args],
            env={"GITHUB_STEP_SUMMARY": str(summary)},
        )
        return result.exit_code, result.stdout, result.stderr

    _, out, err = run("--format", "json")
    data = json.loads(out)
    [entry] = data["requests"]
    # the forged revoke did not end the access: only the reconciler's grant is believed
    assert (entry["granted_at"], entry["revoked_at"], entry["state"]) == (
        "2026-12-01T09:05:00Z",
        None,
        "active",
    )
    assert line.time == utc("2026-12-01T09:05:00Z")
    assert codes(entry) == ["ledger-forged"]
    assert data["ledger"]["verified"] is False
    assert [p["code"] for p in data["ledger"]["problems"]] == ["ledger-forged"]
    assert "ledger-forged" in err
    _, out, err = run("--format", "text")
    assert "! ledger-forged:" in out and "NOT BELIEVED" in out
    _, out, _ = run("--format", "markdown")
    assert out.count("`ledger-forged`") == 2  # the ledger's problem and the entry's anomaly
    _, out, _ = run("--format", "github")
    assert any(x.startswith("::error") and "ledger-forged" in x for x in out.splitlines())
    assert "ledger-forged" in summary.read_text()
    _, _, err = run("--format", "csv")
    assert "ledger-forged" in err
    assert run("--fail-on-anomaly")[0] == 1


def test_a_line_pushed_to_the_ledger_by_someone_else_is_shown_never_believed(
    world: World, tmp_path: Path
) -> None:
    """End to end: apply writes the ledger through GitHub (signed for the bot); mallory, who
    may push, appends a revoke. The audit shows the forged line and keeps alice's access."""
    origin = deployed(world, tmp_path)
    approve(world, "alice")
    root = str(world.repo.root)
    applied = security_cli("apply", "--repo", root, "--format", "json", env=world.env)
    assert applied.code == 0, applied.stdout + applied.stderr

    mallory = SecurityRepo(tmp_path / "mallory", init=False)
    origin.git("clone", "-q", str(origin.root), str(mallory.root))
    mallory.git("checkout", "-q", ledger.DEFAULT_BRANCH)
    [month] = (mallory.root / "ledger").glob("*.jsonl")
    grant = json.loads(month.read_text().splitlines()[0])
    fake = {**grant, "id": "gha-9-1:0", "action": "revoke", "time": grant["time"]}
    month.write_text(month.read_text() + json.dumps(fake) + "\n")
    mallory.git("commit", "-q", "-am", "ledger: 1 change(s) by gha-9-1")
    mallory.git("push", "-q", "origin", ledger.DEFAULT_BRANCH)

    audited = security_cli("audit", "--repo", root, "--format", "json", env=world.env)

    assert audited.code == 0, audited.stderr
    data = audited.json
    assert data["ledger"]["verified"] is False
    assert [p["code"] for p in data["ledger"]["problems"]] == ["ledger-forged"]
    [entry] = data["requests"]
    assert entry["granted_at"] == grant["time"]
    assert (entry["revoked_at"], entry["state"]) == (None, "active")  # the fake revoke is not
    assert codes(entry) == ["ledger-forged"]
    assert "revoke ok" in entry["anomalies"][0]["message"]
    strict = security_cli("audit", "--repo", root, "--fail-on-anomaly", env=world.env)
    assert strict.code == 1
    assert "! ledger-forged:" in strict.stdout
