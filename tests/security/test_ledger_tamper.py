"""Only what the reconciler wrote is evidence: the ledger as an attacker with write access to
the repository sees it. Real git repositories with a bare origin, ``accessctl apply`` run as
a user runs it, the GitHub emulator over HTTP holding the same objects as origin."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler import ledger
from reconciler.github import GitHubClient
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN
from reconciler.sandbox.github_git import noreply_email

from .conftest import REPO, GitRepo, World, request, run_cli

BOT = {"login": "github-actions[bot]", "id": 41898282}
BOT_AUTHOR = f"github-actions[bot] <{noreply_email(BOT)}>"


@dataclass
class Deployment:
    """The access repository as the reconcile job's checkout, its bare origin on "GitHub"."""

    world: World
    origin: GitRepo
    tmp: Path

    @property
    def repo(self) -> GitRepo:
        return self.world.repo

    def client(self, token: str = DEFAULT_TOKEN) -> GitHubClient:
        return GitHubClient(self.world.github.url, token, REPO, retries=0)

    def approve(self, login: str) -> None:
        """``login``'s request through a pull request dave approved, squash-merged."""
        number, _ = self.world.open_pr({f"requests/{login}/inc-1.yaml": request(login)}, login)
        self.world.github.add_review(REPO, number, "dave", "APPROVED")
        self.world.squash(number, f"pr{self.world.branches}")
        self.repo.git("push", "-q", "origin", "main")

    def apply(self) -> dict:
        args = ["apply", "--repo", str(self.repo.root), "--format", "json"]
        result = run_cli(*args, env=self.world.env)
        assert result.code == 0, result.stdout + result.stderr
        return result.json

    def attacker(self, name: str = "mallory") -> GitRepo:
        """A full clone with the ledger branch checked out: someone with push access."""
        clone = GitRepo(self.tmp / name, init=False)
        self.origin.git("clone", "-q", str(self.origin.root), str(clone.root))
        clone.git("config", "user.name", name)
        clone.git("config", "user.email", f"{name}@example.com")
        clone.git("checkout", "-q", ledger.DEFAULT_BRANCH)
        return clone

    def inspect(self, **kwargs: object) -> ledger.LedgerReport:
        return ledger.inspect(self.repo.root, github=self.client(), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def deployment(world: World, tmp_path: Path) -> Deployment:
    origin = GitRepo(tmp_path / "origin.git", bare=True)
    world.repo.git("remote", "add", "origin", str(origin.root))
    world.repo.git("push", "-q", "origin", "main")
    world.github.attach_git(REPO, origin.root)
    return Deployment(world, origin, tmp_path)


@pytest.fixture
def genuine(deployment: Deployment) -> Deployment:
    """Two apply runs, each granting one approved request: two ledger commits."""
    deployment.approve("alice")
    deployment.apply()
    deployment.approve("bob")
    deployment.apply()
    return deployment


def ledger_file(repo: GitRepo) -> Path:
    [path] = (repo.root / "ledger").glob("*.jsonl")
    return path


def push_ledger(clone: GitRepo, message: str, *, author: str | None = None, force: bool = False):
    args = ["commit", "-q", "-am", message] + ([f"--author={author}"] if author else [])
    clone.git(*args)
    clone.git("push", "-q", *(["--force"] if force else []), "origin", ledger.DEFAULT_BRANCH)
    return clone.head()


def codes(report: ledger.LedgerReport) -> list[str]:
    return [p.code for p in report.problems]


def test_a_ledger_written_by_two_apply_runs_is_verified(genuine: Deployment) -> None:
    emulator = genuine.world.github
    report = genuine.inspect()

    assert report.present and report.problems == [] and report.verified is True
    assert report.head == genuine.origin.git("rev-parse", ledger.DEFAULT_BRANCH)
    assert [(e.action, e.ok, e.principal) for e in report.entries] == [
        ("grant", True, "user:alice@example.com"),
        ("grant", True, "user:bob@example.com"),
    ]
    assert report.forged == []
    assert report.to_json() == {
        "branch": "accessctl-ledger",
        "present": True,
        "head": report.head,
        "verified": True,
        "problems": [],
    }
    # GitHub wrote both commits: signed for the Actions bot, the branch never force-pushed
    for sha in genuine.origin.git("rev-list", ledger.DEFAULT_BRANCH).split():
        commit = genuine.client().commit(sha)
        assert (commit.verified, commit.author, commit.committer) == (
            True,
            "github-actions[bot]",
            "web-flow",
        )
    # each apply: one tree, one commit, one ref update, one anchor; an audit: two listings
    assert emulator.calls["POST /repos/{o}/{r}/git/trees"] == 2
    assert emulator.calls["POST /repos/{o}/{r}/git/commits"] == 2
    assert emulator.calls["POST /repos/{o}/{r}/git/refs"] == 1
    assert emulator.calls["PATCH /repos/{o}/{r}/git/refs/{ref}"] == 1
    root = genuine.origin.git("rev-list", "--max-parents=0", ledger.DEFAULT_BRANCH)
    anchors = emulator.statuses(REPO, root)
    assert [s["description"].split()[-1] for s in anchors] == genuine.origin.git(
        "rev-list", "--reverse", ledger.DEFAULT_BRANCH
    ).split()
    assert {s["creator"]["login"] for s in anchors} == {"github-actions[bot]"}
    emulator.reset_calls()
    genuine.inspect()
    assert emulator.total_calls == 2  # the ledger's commits, the anchors (one page each)


@pytest.mark.parametrize(
    "author",
    [None, BOT_AUTHOR],
    ids=["as-themselves", "posing-as-the-bot"],
)
def test_a_line_pushed_by_someone_else_is_forged_and_never_believed(
    genuine: Deployment, author: str | None
) -> None:
    clone = genuine.attacker()
    path = ledger_file(clone)
    grant = json.loads(path.read_text().splitlines()[0])
    fake = {**grant, "id": "run-x:0", "action": "revoke", "ok": True, "time": grant["end"]}
    path.write_text(path.read_text() + json.dumps(fake) + "\n")
    forged_commit = push_ledger(clone, "ledger: 1 change(s) by gha-1-1", author=author)

    report = genuine.inspect()

    assert report.verified is False
    assert codes(report) == ["ledger-forged"]
    assert report.problems[0].commit == forged_commit
    assert "not written by the reconciler" in report.problems[0].message
    assert [(e.action, e.id) for e in report.forged] == [("revoke", "run-x:0")]
    assert "revoke" not in {e.action for e in report.entries}
    assert len(report.entries) == 2
    assert report.to_json()["problems"][0]["code"] == "ledger-forged"


@pytest.mark.parametrize("kind", ["person", "other-app"])
def test_commits_made_through_the_api_by_another_identity_are_forged(
    genuine: Deployment, kind: str
) -> None:
    """GitHub signs API commits only for the installation token that makes them: a person's
    token gets an unsigned commit, another app's a signed one authored by that app."""
    token, login = ("mallory-token", "mallory") if kind == "person" else ("app", "evil[bot]")
    genuine.world.github.add_token(token, login, integration=kind != "person")
    client = genuine.client(token)
    head = genuine.origin.git("rev-parse", ledger.DEFAULT_BRANCH)
    month = genuine.origin.git("ls-tree", "--name-only", "-r", head, "ledger/")
    content = genuine.origin.git("cat-file", "blob", f"{head}:{month}") + "\n"
    line = json.loads(content.splitlines()[-1]) | {"id": "api:0", "action": "revoke"}
    tree = genuine.origin.git("rev-parse", f"{head}^{{tree}}")
    new_tree = client.create_tree({month: (content + json.dumps(line) + "\n").encode()}, tree)
    commit = client.create_commit("ledger: 1 change(s)", new_tree, [head])
    assert client.update_ref(ledger.DEFAULT_BRANCH, commit.sha)

    report = genuine.inspect()

    assert codes(report) == ["ledger-forged"]
    why = "did not verify a signature (unsigned)" if kind == "person" else "authored by evil[bot]"
    assert why in report.problems[0].message
    assert [e.id for e in report.forged] == ["api:0"]


def test_a_force_pushed_rewrite_that_drops_lines_is_detected(
    genuine: Deployment, tmp_path: Path
) -> None:
    clone = genuine.attacker()
    first = clone.git("rev-list", "--max-parents=0", "HEAD")
    dropped = clone.head()
    clone.git("reset", "-q", "--hard", first)  # bob's grant is gone
    clone.git("push", "-q", "--force", "origin", ledger.DEFAULT_BRANCH)

    # a fresh clone of origin: the rewritten branch is all there is
    auditor = GitRepo(tmp_path / "auditor", init=False)
    genuine.origin.git("clone", "-q", str(genuine.origin.root), str(auditor.root))
    fresh = ledger.inspect(auditor.root, github=genuine.client())
    [rewritten] = [p for p in fresh.problems if p.code == "ledger-rewritten"]
    assert rewritten.commit == dropped
    assert "no longer in its history" in rewritten.message
    assert fresh.verified is False
    assert {e.principal for e in fresh.entries} == {"user:alice@example.com"}

    # the reconciler's own clone still holds the dropped commit, which GitHub vouches for
    kept = genuine.inspect()
    assert codes(kept) == ["ledger-rewritten"]
    assert kept.head == dropped
    assert {e.principal for e in kept.entries} == {
        "user:alice@example.com",
        "user:bob@example.com",
    }


def test_a_rewrite_with_new_history_is_detected_even_when_it_keeps_every_line(
    genuine: Deployment,
) -> None:
    """The same lines in new commits: nothing removed, but the commits are not GitHub's."""
    clone = genuine.attacker()
    first = clone.git("rev-list", "--max-parents=0", "HEAD")
    clone.git("reset", "-q", "--soft", first)
    clone.git("commit", "-q", "-m", "ledger: squashed")
    clone.git("push", "-q", "--force", "origin", ledger.DEFAULT_BRANCH)

    report = genuine.inspect()

    # this clone's branch kept the genuine commits: the two copies have diverged
    assert sorted(set(codes(report))) == ["ledger-diverged", "ledger-forged", "ledger-rewritten"]
    assert {e.principal for e in report.entries} == {"user:alice@example.com"}


@pytest.mark.parametrize("where", ["ledger-branch", "main"])
def test_a_changed_line_is_reported_whatever_gitattributes_say(
    genuine: Deployment, where: str
) -> None:
    """``*.jsonl -diff`` turns every diff of the ledger into "Binary files differ": the
    check reads blobs, so it still sees the grant that became a failure."""
    if where == "main":
        genuine.repo.commit({".gitattributes": "*.jsonl -diff\n"}, "attributes")
    clone = genuine.attacker()
    if where == "ledger-branch":
        clone.write({".gitattributes": "*.jsonl -diff\n"})
        clone.git("add", ".gitattributes")
    path = ledger_file(clone)
    path.write_text(path.read_text().replace('"ok": true', '"ok": false', 1))
    changed = push_ledger(clone, "ledger: tidy")

    report = genuine.inspect()

    # where the attributes apply, `git log -p` no longer shows what changed
    reader = genuine.repo if where == "main" else clone
    shown = reader.git("log", "-p", "-1", changed, "--", "ledger/")
    assert "Binary files" in shown and '"ok": false' not in shown

    removed = [p for p in report.problems if p.code == "ledger-line-removed"]
    assert [(p.commit, p.message) for p in removed] == [
        (changed, f"ledger commit {changed[:12]} removed or changed 1 line(s)")
    ]
    assert "ledger-forged" in codes(report)
    # the line the reconciler wrote is still believed: alice's grant succeeded
    assert [e.ok for e in report.entries] == [True, True]
    # without GitHub (and without fetching) the removal is still found
    assert any("removed or changed 1 line(s)" in p for p in ledger.verify(genuine.repo.root))


def test_a_single_branch_clone_fetches_the_ledger(genuine: Deployment, tmp_path: Path) -> None:
    """Actions' default checkout fetches one ref: the ledger branch is not in it."""
    clone = GitRepo(tmp_path / "checkout", init=False)
    url = genuine.origin.root.as_uri()
    genuine.origin.git("clone", "-q", "--single-branch", "--branch", "main", url, str(clone.root))
    assert "accessctl-ledger" not in clone.git("branch", "-a")

    assert ledger.inspect(clone.root, fetch=False).present is False
    report = ledger.inspect(clone.root, github=genuine.client())

    assert report.present and report.verified is True and report.problems == []
    assert len(report.entries) == 2
    assert clone.git("rev-parse", "origin/accessctl-ledger") == report.head


def test_the_verified_approvals_are_read_only_from_the_reconcilers_commits(
    genuine: Deployment,
) -> None:
    """approvals.json on the ledger branch: a pushed edit is passed over."""
    client = genuine.client()
    kept = ledger.read_file(genuine.repo.root, "approvals.json", github=client)
    assert kept is not None and b'"dave"' in kept
    clone = genuine.attacker()
    planted = (clone.root / "approvals.json").read_text().replace('"dave"', '"mallory"')
    (clone.root / "approvals.json").write_text(planted)
    push_ledger(clone, "ledger: approvals")
    genuine.repo.git(
        "fetch", "-q", "origin", "accessctl-ledger:refs/remotes/origin/accessctl-ledger"
    )

    assert ledger.read_file(genuine.repo.root, "approvals.json") == planted.encode()
    assert ledger.read_file(genuine.repo.root, "approvals.json", github=client) == kept


def test_no_remote_and_no_branch_means_no_ledger(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "lonely")
    repo.commit({"policies/p.yaml": "teams: {}\n"}, "policies")

    report = ledger.inspect(repo.root)

    assert (report.present, report.head, report.verified) == (False, None, False)
    assert codes(report) == ["ledger-missing"]
    assert report.entries == [] and report.forged == []
