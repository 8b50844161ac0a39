"""The trusted path from a merged pull request to a cloud grant, attacked from outside it.

Only regular request files at ``requests/<login>/<slug>.yaml`` that reached main through an
approved pull request may steer what ``apply`` reads, grants or revokes. The attacker here can
open pull requests, push branches and commits, and sometimes gets an admin to merge past the
gate; GitHub sometimes goes down. Everything is built in the test: a real git repository, the
GitHub emulator (pull requests, reviews, merges) and the GCP emulator over HTTP; the CLI runs
in a subprocess as the workflows run it. Each test asserts what a user sees: exit codes,
messages, and what IAM holds afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.github_emulator import GitHubEmulator

from .conftest import REPO, SCOPE, GitRepo, Result, World, request, run_cli

MINE = "requests/alice/inc-4821.yaml"
ALICE, BOB = "user:alice@example.com", "user:bob@example.com"
GITLINK, SYMLINK, EXECUTABLE = "160000", "120000", "100755"
UNREADABLE = "projects/unreadable-x"  # not in the emulator: it answers 403

# -- helpers ------------------------------------------------------------------------------


def whole(when: datetime) -> datetime:
    return when.replace(microsecond=0)


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def title(path: str, deployment: str = REPO) -> str:
    """The condition title a deployment writes (docs/gcp.md), computed independently."""
    return f"accessctl:{hashlib.sha256(deployment.encode()).hexdigest()[:8]}:{path}"


def repository(world: World) -> str:
    return world.env["GITHUB_REPOSITORY"]


def open_pr(world: World, files: dict[str, str | None], author: str = "alice") -> tuple[int, str]:
    """A branch off main with one commit and its pull request: (number, branch)."""
    world.branches += 1
    branch = f"pr{world.branches}"
    base = world.repo.head()
    world.repo.git("checkout", "-q", "-b", branch)
    head = world.repo.commit(files, "request", author=author)
    number = world.github.add_pull(
        repository(world),
        author=author,
        head_sha=head,
        base_sha=base,
        files=world.repo.diff(base, head),
    )
    world.repo.git("checkout", "-q", "main")
    return number, branch


def merge(world: World, number: int, branch: str, at: datetime | None = None) -> str:
    """Squash-merge: one commit on main at ``at`` (git's committer time and GitHub's
    merged_at agree to the second)."""
    when = whole(at or datetime.now(UTC))
    world.repo.git("merge", "-q", "--squash", branch)
    sha = world.repo.commit({}, f"Access request (#{number})", date=when)
    world.github.merge(repository(world), number, merge_commit_sha=sha, merged_at=when)
    return sha


def land(
    world: World,
    files: dict[str, str | None],
    *,
    author: str = "alice",
    approver: str | None = "dave",
    at: datetime | None = None,
) -> int:
    """A pull request opened by ``author``, approved by ``approver`` and merged at ``at``."""
    number, branch = open_pr(world, files, author)
    when = whole(at or datetime.now(UTC))
    if approver:
        world.github.add_review(
            repository(world),
            number,
            approver,
            "APPROVED",
            submitted_at=when - timedelta(minutes=1),
        )
    merge(world, number, branch, when)
    return number


def put_entry(repo: GitRepo, path: str, mode: str, payload: str) -> None:
    """Stage a tree entry of any mode: a gitlink to commit ``payload``, else a blob."""
    target = repo.root / path
    if target.is_symlink() or target.is_file():
        target.unlink()
    if mode == GITLINK:
        sha = payload
    else:
        scratch = repo.root.parent / "entry.blob"
        scratch.write_bytes(payload.encode())
        sha = repo.git("hash-object", "-w", str(scratch))
    repo.git("update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}")
    if mode != GITLINK:
        repo.git("checkout", "--", path)


def cli(world: World, command: str, *args: str) -> Result:
    return run_cli(command, "--repo", str(world.repo.root), *args, env=world.env)


def accessctl_bindings(gcp: GcpEmulator, scope: str = SCOPE) -> list[dict]:
    return [
        b
        for b in gcp.get_policy(scope).get("bindings", [])
        if b.get("condition", {}).get("title", "").startswith("accessctl:")
    ]


def requests_of(items: list[dict]) -> set[str]:
    return {g["request"] for g in items}


def plant(gcp: GcpEmulator, path: str, member: str, end: datetime, scope: str = SCOPE) -> dict:
    """A binding of this deployment, as an earlier run (or an earlier bypass) left it."""
    binding = {
        "role": "roles/cloudsql.viewer",
        "members": [member],
        "condition": {
            "title": title(path),
            "description": f"accessctl grant for {path}; deployment {REPO}",
            "expression": f'request.time < timestamp("{stamp(end)}")',
        },
    }
    policy = gcp.get_policy(scope)
    gcp.set_policy(scope, {"bindings": [*policy.get("bindings", []), binding]})
    return binding


# -- 1. gitlinks, symlinks and executables under requests/ --------------------------------

ENTRIES = [
    pytest.param("requests/alice/notes", GITLINK, "1" * 40, "E-FILE-MODE", id="gitlink"),
    pytest.param(
        "requests/alice/notes.md", SYMLINK, "../../policies/p.yaml", "E-FILE-SYMLINK", id="symlink"
    ),
    pytest.param(
        "requests/alice/inc-1.yaml", EXECUTABLE, request(), "E-FILE-MODE", id="executable"
    ),
]


@pytest.mark.parametrize(("path", "mode", "payload", "code"), ENTRIES)
def test_a_gitlink_symlink_or_executable_note_fails_the_gate(
    world: World, path: str, mode: str, payload: str, code: str
) -> None:
    """Attack: alice's PR adds, as a "note" in her own directory, a gitlink (mode 160000), a
    symlink or an executable file holding a valid request, and a lead approves it.
    Safe outcome: pr-check fails the PR (exit 1) naming the entry as not a regular file."""
    world.branches += 1
    base = world.repo.head()
    world.repo.git("checkout", "-q", "-b", f"entry{world.branches}")
    put_entry(world.repo, path, mode, payload)
    head = world.repo.commit({}, "add a note", author="alice")
    world.repo.git("checkout", "-q", "main")
    number = world.github.add_pull(
        REPO, author="alice", head_sha=head, base_sha=base, files=world.repo.diff(base, head)
    )
    world.github.add_review(REPO, number, "dave", "APPROVED")
    result = world.pr_check(number, "--format", "json")
    assert result.code == 1, result.stdout + result.stderr
    out = result.json
    assert out["state"] == "failure"
    assert (path, code) in {(f["file"], f["code"]) for f in out["findings"]}, out


def test_gitlink_symlink_and_executable_on_main_neither_crash_nor_steer_anything(
    world: World,
) -> None:
    """Attack: an admin merges past the gate a gitlink, a symlink (to a valid request) and an
    executable file holding a valid request under requests/alice/, and replaces bob's granted
    request file with a gitlink at the same path. Safe outcome: plan, apply, audit and status
    exit 0 without a traceback and report every entry; the valid request is still granted,
    the expired and the replaced (deleted) ones are still revoked, and neither the symlink nor
    the executable file is granted."""
    t0 = whole(datetime.now(UTC))
    old, gone, keep = (
        "requests/alice/old.yaml",
        "requests/bob/gone.yaml",
        "requests/alice/keep.yaml",
    )
    link, run, notes = "requests/alice/link.yaml", "requests/alice/run.yaml", "requests/alice/notes"
    land(world, {old: request(duration="2h")}, at=t0 - timedelta(hours=3))
    land(world, {gone: request("bob", duration="4h")}, author="bob", at=t0 - timedelta(hours=2))
    earlier = world.apply("--at", stamp(t0 - timedelta(minutes=90)))
    assert earlier.code == 0, earlier.stdout + earlier.stderr
    assert world.members() == {ALICE, BOB}
    land(world, {keep: request(duration="2h")}, at=t0 - timedelta(minutes=10))

    put_entry(world.repo, notes, GITLINK, "1" * 40)
    put_entry(world.repo, link, SYMLINK, "keep.yaml")
    put_entry(world.repo, run, EXECUTABLE, request(duration="8h"))
    put_entry(world.repo, gone, GITLINK, "2" * 40)
    world.repo.commit({}, "notes (pushed past the gate)", author="admin")
    strays = [notes, link, run, gone]

    plan = cli(world, "plan", "--format", "json")
    assert plan.code == 0, plan.stdout + plan.stderr
    assert requests_of(plan.json["grant"]) == {keep}
    assert requests_of(plan.json["revoke"]) == {old, gone}
    for path in strays:
        assert path in plan.stderr, plan.stderr

    applied = world.apply()
    assert applied.code == 0, applied.stdout + applied.stderr
    assert [(b["condition"]["title"], b["members"]) for b in accessctl_bindings(world.gcp)] == [
        (title(keep), [ALICE])
    ]
    for path in strays:
        assert path in applied.stderr, applied.stderr

    audit = cli(world, "audit", "--format", "json")
    assert audit.code == 0, audit.stdout + audit.stderr
    assert {e["file"] for e in audit.json["requests"]} == {old, gone, keep}
    status = cli(world, "status")
    assert status.code == 0, status.stdout + status.stderr
    for path in strays:
        assert path in audit.stderr, audit.stderr
        assert path in status.stderr, status.stderr


# -- 2. notes never steer observation -----------------------------------------------------

HOSTILE = (
    f"requester: alice\nprovider: gcp\nscope: {UNREADABLE}\nrole: roles/cloudsql.viewer\n"
    "reason: Investigate INC-4821, slow queries\nduration: 2h\n"
)


def test_old_versions_of_notes_never_add_an_unreadable_scope(world: World) -> None:
    """Attack: notes under requests/ (notes.txt edited twice then deleted, a *.md note, a
    nested and a case-variant file, an invalid request file later deleted) all name an
    unreadable project, to turn every run red or make it read where it should not.
    Safe outcome: apply exits 0, never asks GCP about that project, never mentions it,
    and still grants the valid request."""
    land(world, {MINE: request()})
    repo = world.repo
    repo.commit({"requests/alice/notes.txt": f"provider: gcp\nscope: {UNREADABLE}\n"}, "note")
    repo.commit({"requests/alice/notes.txt": HOSTILE}, "note")
    repo.commit({"requests/alice/notes.txt": None}, "note")
    repo.commit({"requests/alice/bad.yaml": HOSTILE + "colour: red\n"}, "invalid request")
    repo.commit({"requests/alice/bad.yaml": None}, "gone again")
    repo.commit(
        {
            "requests/alice/NOTES.md": HOSTILE,
            "requests/alice/sub/x.yaml": HOSTILE,
            "Requests/alice/x.yaml": HOSTILE,
            "requests/alice/x.json": HOSTILE,
        },
        "notes",
    )

    applied = world.apply()
    assert applied.code == 0, applied.stdout + applied.stderr
    assert world.gcp.reads(UNREADABLE) == 0
    assert "unreadable-x" not in applied.stdout + applied.stderr
    assert world.members() == {ALICE}
    plan = cli(world, "plan", "--format", "json")
    assert plan.code == 0, plan.stdout + plan.stderr
    assert world.gcp.reads(UNREADABLE) == 0


def test_intermediate_commits_of_a_rebased_pr_never_make_an_unreadable_scope_an_error(
    world: World,
) -> None:
    """Attack: alice's PR only adds a note (its net diff passes the gate), but its commits
    first add a valid-looking, never-approved request for an unreadable project and then
    delete it; the PR is rebase-merged, so both commits land on main.
    Safe outcome: that never-approved version grants nothing and cannot make apply fail:
    apply exits 0 and still grants the approved request."""
    land(world, {MINE: request()})
    ghost = "requests/alice/ghost.yaml"
    base = world.repo.head()
    world.repo.git("checkout", "-q", "-b", "sneaky")
    c1 = world.repo.commit({ghost: request(scope="projects/payments-ghost")}, "wip", author="alice")
    c2 = world.repo.commit({ghost: None, "requests/alice/notes.md": "notes\n"}, "n", author="alice")
    world.repo.git("checkout", "-q", "main")
    files = world.repo.diff(base, c2)
    assert [f["filename"] for f in files] == ["requests/alice/notes.md"]
    number = world.github.add_pull(REPO, author="alice", head_sha=c2, base_sha=base, files=files)
    world.github.add_review(REPO, number, "dave", "APPROVED")
    assert world.pr_check(number).code == 0
    world.repo.git("merge", "-q", "--ff-only", "sneaky")
    world.github.merge(REPO, number, merge_commit_sha=c2, main_commits=[c1, c2])

    applied = world.apply()
    assert applied.code == 0, applied.stdout + applied.stderr
    assert world.members() == {ALICE}


ESCAPES = ("\x1b", "\u202e", "\x9b")


def test_terminal_escapes_in_notes_never_reach_the_output_raw(world: World) -> None:
    """Attack: notes whose scope-looking lines and whose file names carry terminal escapes
    (ESC [31m, a one-byte CSI, a right-to-left override), next to a request file whose scope
    does. Safe outcome: none of those characters reaches plan's JSON, plan's text, apply,
    audit or status output, stdout or stderr, unescaped."""
    evil = "projects/evil\x1b[31m\u202e\x9bRED"
    land(world, {MINE: request()})
    world.repo.commit(
        {
            "requests/alice/notes.txt": f"provider: gcp\nscope: {evil}\n",
            "requests/alice/\x1b[31mnote\u202e.txt": f"scope: {evil}\n",
            "requests/alice/evil.yaml": request().replace(
                f"scope: {SCOPE}", 'scope: "projects/evil\\e[31m\\u202e\\x9bRED"'
            ),
        },
        "notes",
        author="alice",
    )
    runs = [
        cli(world, "plan", "--format", "json"),
        cli(world, "plan"),
        world.apply(),
        cli(world, "audit"),
        cli(world, "audit", "--format", "json"),
        cli(world, "status"),
    ]
    for result in runs:
        for ch in ESCAPES:
            assert ch not in result.stdout, (repr(ch), result.stdout)
            assert ch not in result.stderr, (repr(ch), result.stderr)
    plan = runs[0]
    assert plan.code == 1  # the invalid request file is an error
    assert "requests/alice/evil.yaml" in json.dumps(plan.json["errors"])
    assert world.members() == {ALICE}


OTHER = "acme/other-access"


def test_notes_never_lead_to_revoking_another_deployments_bindings(world: World) -> None:
    """Attack: a second deployment (another providers.gcp.deployment) holds bindings in our
    project and in another project, including an old-style title for a request path this
    repository also has; alice's notes name that other project.
    Safe outcome: this deployment never reads the other project, and the other deployment's
    bindings survive byte for byte while our valid request in the same project is granted and
    then revoked."""
    shared = "projects/payments-shared"
    world.gcp.add_resource(shared)
    world.repo.commit(
        {
            "policies/p.yaml": (world.repo.root / "policies/p.yaml")
            .read_text()
            .replace("  gcp: {}", "  gcp: {deployment: acme/access-team}")
        },
        "our deployment's name",
    )
    theirs = [
        {
            "role": "roles/cloudsql.viewer",
            "members": [ALICE],
            "condition": {
                "title": title(MINE, OTHER),
                "description": f"accessctl grant for {MINE} via PR #3; deployment {OTHER}",
                "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")',
            },
        },
        {
            "role": "roles/cloudsql.viewer",
            "members": ["user:mallory@example.com"],
            "condition": {
                "title": title("requests/alice/notes.txt", OTHER),
                "description": f"accessctl grant for requests/alice/notes.txt; deployment {OTHER}",
                "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")',
            },
        },
    ]
    legacy = {  # written by the other deployment before titles carried a deployment
        "role": "roles/cloudsql.viewer",
        "members": ["user:carol@example.com"],
        "condition": {
            "title": f"accessctl:{MINE}",
            "description": f"accessctl grant for {MINE} via PR #2",
            "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")',
        },
    }
    world.gcp.set_policy(SCOPE, {"bindings": theirs})
    world.gcp.set_policy(shared, {"bindings": [*theirs, legacy]})
    before = {SCOPE: accessctl_bindings(world.gcp), shared: world.gcp.get_policy(shared)}
    world.repo.commit(
        {
            "requests/alice/notes.txt": f"provider: gcp\nscope: {shared}\nrole: roles/cloudsql.viewer\n"
        },
        "note",
        author="alice",
    )
    world.repo.commit({"requests/alice/notes.txt": HOSTILE.replace(UNREADABLE, shared)}, "note")

    land(world, {MINE: request()})
    granted = world.apply()
    assert granted.code == 0, granted.stdout + granted.stderr
    ours = [b for b in accessctl_bindings(world.gcp) if b not in before[SCOPE]]
    assert [(b["condition"]["title"], b["members"]) for b in ours] == [
        (title(MINE, "acme/access-team"), [ALICE])
    ]

    land(world, {MINE: None})  # alice revokes her own request early
    revoked = world.apply()
    assert revoked.code == 0, revoked.stdout + revoked.stderr
    assert accessctl_bindings(world.gcp) == before[SCOPE]
    assert world.gcp.get_policy(shared) == before[shared]
    assert world.gcp.reads(shared) == 0 and world.gcp.writes(shared) == 0


# -- 3. an approved edit that only moves start later --------------------------------------


def _begin_end(expression: str) -> tuple[str | None, str]:
    begin = re.search(r'request\.time >= timestamp\("([^"]+)"\)', expression)
    end = re.search(r'request\.time < timestamp\("([^"]+)"\)', expression)
    assert end is not None, expression
    return (begin.group(1) if begin else None), end.group(1)


def test_an_approved_edit_moving_start_later_allows_nothing_before_the_new_start(
    world: World,
) -> None:
    """Attack: alice's request is granted; her approved edit only moves ``start`` three hours
    later (the old binding, valid from now, would still look "the same request").
    Safe outcome: after apply, every binding for the request begins at the new start (its
    expression carries request.time >= the new start) and ends two hours after it."""
    land(world, {MINE: request(duration="2h")})
    assert world.apply().code == 0 and world.members() == {ALICE}
    start = whole(datetime.now(UTC)) + timedelta(hours=3)
    land(world, {MINE: request(duration="2h", extra=f"start: {stamp(start)}\n")})
    result = world.apply()
    assert result.code == 0, result.stdout + result.stderr
    windows = [_begin_end(b["condition"]["expression"]) for b in accessctl_bindings(world.gcp)]
    assert windows in ([], [(stamp(start), stamp(start + timedelta(hours=2)))]), windows


def test_an_unapproved_edit_moving_start_later_revokes_the_old_grant(world: World) -> None:
    """Attack: the same edit merged by an admin without the approval the policy requires.
    Safe outcome: the edited request is refused and its earlier binding is revoked."""
    land(world, {MINE: request(duration="2h")})
    assert world.apply().code == 0 and world.members() == {ALICE}
    start = whole(datetime.now(UTC)) + timedelta(hours=3)
    land(world, {MINE: request(duration="2h", extra=f"start: {stamp(start)}\n")}, approver=None)
    result = world.apply()
    assert result.code == 1
    assert accessctl_bindings(world.gcp) == []


# -- 4. GitHub outage ---------------------------------------------------------------------


def test_github_outage_holds_no_grant_beyond_what_a_policy_allows(world: World) -> None:
    """Attack: while GitHub answers 503 to everything, a direct push (never through the gate)
    asks for 3650d and a binding for it already exists (left by an earlier bypass); a normal
    approved request whose git-dated window has ended still has a binding that runs longer.
    Safe outcome: both are revoked (no policy allows 3650d; the other's window is over); an
    approved request inside its git-dated window keeps its binding, unchanged."""
    t0 = whole(datetime.now(UTC))
    decade, inside, ended = (
        "requests/alice/decade.yaml",
        "requests/alice/inside.yaml",
        "requests/bob/ended.yaml",
    )
    land(world, {ended: request("bob", duration="2h")}, author="bob", at=t0 - timedelta(hours=3))
    land(world, {inside: request(duration="2h")}, at=t0 - timedelta(minutes=30))
    world.repo.commit(
        {decade: request(duration="3650d")},
        "direct push",
        author="alice",
        date=t0 - timedelta(minutes=10),
    )
    up = world.apply()
    assert up.code == 1  # the direct push is refused while GitHub answers
    kept = accessctl_bindings(world.gcp)
    assert [b["condition"]["title"] for b in kept] == [title(inside)]
    plant(world.gcp, decade, ALICE, t0 + timedelta(days=3650))
    plant(world.gcp, ended, BOB, t0 + timedelta(hours=5))

    world.github.fail(".", 503, times=100_000)
    down = world.apply()
    assert world.github.calls["fault"] > 0  # GitHub was asked, and was down
    assert accessctl_bindings(world.gcp) == kept, down.stdout + down.stderr
    assert down.code == 1  # approvals that could not be verified are reported


# -- 5. forged approval caches ------------------------------------------------------------


def _write_ref(repo: GitRepo, ref: str, name: str, payload: str) -> None:
    """A commit holding only ``name`` at ``ref`` (a branch, tag or remote-tracking ref)."""
    scratch = repo.root.parent / "forged.json"
    scratch.write_text(payload)
    blob = repo.git("hash-object", "-w", str(scratch))
    tree = subprocess.run(
        ["git", "-C", str(repo.root), "mktree"],
        input=f"100644 blob {blob}\t{name}\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    commit = repo.git("commit-tree", tree, "-m", "approvals")
    repo.git("update-ref", ref, commit)


FORGERIES = [
    "work-tree",
    "xdg-cache",
    "refs/heads/accessctl-ledger-x",
    "refs/heads/approvals",
    "refs/tags/accessctl-ledger",
    "refs/remotes/upstream/accessctl-ledger",
]


@pytest.mark.parametrize("where", FORGERIES)
def test_a_forged_approval_cache_never_approves_a_direct_push(
    world: World, tmp_path: Path, github: GitHubEmulator, where: str
) -> None:
    """Attack: alice pushes her request straight to main and plants approvals.json claiming
    PR #1 approved by dave for exactly that blob and commit: committed in the work tree, in
    $XDG_CACHE_HOME/accessctl/<owner>/<repo>/, or on a branch, tag or remote named like the
    ledger. Safe outcome: apply asks GitHub (calls > 0), refuses the request (exit 1,
    "without a merged pull request") and IAM holds nothing for her."""
    sha = world.repo.commit({MINE: request()}, "direct push", author="alice")
    blob = world.repo.blob("HEAD", MINE)
    record = {
        "approved_at": stamp(datetime.now(UTC) - timedelta(minutes=5)),
        "pr": 1,
        "pr_author": "alice",
        "reviewers": ["dave"],
    }
    payload = json.dumps(
        {
            "version": 1,
            "api": github.url,
            "repository": REPO,
            "records": {f"{blob}:{sha}:{MINE}": record},
        }
    )
    if where == "work-tree":
        world.repo.commit({".accessctl-cache/approvals.json": payload}, "cache", author="alice")
    elif where == "xdg-cache":
        path = Path(world.env["XDG_CACHE_HOME"]) / "accessctl" / REPO / "approvals.json"
        path.parent.mkdir(parents=True)
        path.write_text(payload)
    else:
        _write_ref(world.repo, where, "approvals.json", payload)
    github.reset_calls()

    result = world.apply()
    assert github.total_calls > 0
    assert result.code == 1, result.stdout + result.stderr
    assert "without a merged pull request" in result.stdout + result.stderr
    assert ALICE not in world.members()


# -- 6. revocation through the gate by the wrong person -----------------------------------

TWO_POLICIES = """\
policies:
  - name: payments-a
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [alice]
    approvers: [dave]
    approvals: 1
    max_duration: 8h
  - name: unrelated-b
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [bob]
    approvers: [mallory]
    approvals: 1
    max_duration: 8h
identities:
  alice: {gcp: "user:alice@example.com"}
  bob: {gcp: "user:bob@example.com"}
providers:
  gcp: {}
"""


@pytest.fixture
def two_policies(world: World) -> World:
    world.repo.commit({"policies/p.yaml": TWO_POLICIES}, "two policies")
    land(world, {MINE: request()})
    assert world.apply().code == 0 and world.members() == {ALICE}
    return world


def test_revocation_by_an_approver_of_an_unrelated_policy_fails_the_gate(
    two_policies: World,
) -> None:
    """Attack: mallory approves for policy B (same scope and role, other requesters) and opens
    a PR deleting alice's request, which only policy A (approver dave) allows.
    Safe outcome: pr-check fails the PR with E-PR-REVOKE."""
    number, _ = open_pr(two_policies, {MINE: None}, author="mallory")
    result = two_policies.pr_check(number, "--format", "json")
    assert result.code == 1, result.stdout
    assert ("E-PR-REVOKE", MINE) in {(f["code"], f["file"]) for f in result.json["findings"]}


def test_revocation_by_the_approver_of_the_allowing_policy_passes_the_gate(
    two_policies: World,
) -> None:
    """The same PR by dave, an approver of the policy that allows alice's request: it passes."""
    number, _ = open_pr(two_policies, {MINE: None}, author="dave")
    result = two_policies.pr_check(number, "--format", "json")
    assert result.code == 0, result.stdout
    assert result.json["state"] == "success"


def test_revocation_by_the_wrong_person_merged_past_the_gate_revokes_and_says_who(
    two_policies: World,
) -> None:
    """Attack: an admin merges mallory's deletion past the failed gate.
    Safe outcome: apply still revokes alice's binding (less access is safe) and warns with
    W-REVOKED-BY-OTHER naming mallory."""
    number, branch = open_pr(two_policies, {MINE: None}, author="mallory")
    merge(two_policies, number, branch)
    result = two_policies.apply()
    assert result.code == 0, result.stdout + result.stderr
    assert accessctl_bindings(two_policies.gcp) == []
    (line,) = [w for w in result.stderr.splitlines() if "W-REVOKED-BY-OTHER" in w]
    assert "mallory" in line and MINE in line


# -- 7. the deployment identity default ---------------------------------------------------


def test_two_repositories_with_the_same_request_path_manage_only_their_own_binding(
    tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator
) -> None:
    """Attack: repositories acme/access-a and acme/access-b (no deployment configured) both
    hold requests/alice/inc-4821.yaml for the same project and role.
    Safe outcome: each apply manages only its own binding (titles differ by repository); when
    the request is deleted in A, A's apply revokes only A's binding, and B's survives byte for
    byte (and B's next apply changes nothing)."""
    worlds = {}
    for name, duration in (("acme/access-a", "2h"), ("acme/access-b", "3h")):
        github.add_repo(name)
        w = World(tmp_path / name.split("/")[1], github, gcp)
        w.env["GITHUB_REPOSITORY"] = name
        land(w, {MINE: request(duration=duration)})
        result = w.apply()
        assert result.code == 0, result.stdout + result.stderr
        worlds[name] = w
    a, b = worlds["acme/access-a"], worlds["acme/access-b"]
    both = accessctl_bindings(gcp)
    assert sorted(x["condition"]["title"] for x in both) == sorted(
        [title(MINE, "acme/access-a"), title(MINE, "acme/access-b")]
    )
    again = a.apply()
    assert again.code == 0 and (again.json["grant"], again.json["revoke"]) == ([], [])

    land(a, {MINE: None})
    revoked = a.apply()
    assert revoked.code == 0, revoked.stdout + revoked.stderr
    theirs = [x for x in both if x["condition"]["title"] == title(MINE, "acme/access-b")]
    assert accessctl_bindings(gcp) == theirs
    gcp.reset_counters()
    quiet = b.apply()
    assert quiet.code == 0 and gcp.writes() == 0
    assert accessctl_bindings(gcp) == theirs


# -- 8. providers.gcp.concurrency ---------------------------------------------------------


def test_the_policies_concurrency_bounds_apply_and_the_flag_overrides_it(world: World) -> None:
    """Attack (on capacity): providers.gcp.concurrency: 3 is the organisation's bound on
    parallel IAM calls; a run that ignores it in any phase (reads or writes) can trip quotas.
    Safe outcome: across 12 projects, apply without --concurrency never has more than 3 calls
    in flight; with --concurrency 1, never more than 1."""
    projects = [f"projects/conc-{i:02d}" for i in range(12)]
    for p in projects:
        world.gcp.add_resource(p)
    policy = f"""\
policies:
  - name: many
    provider: gcp
    scopes: [{", ".join(projects)}]
    roles: [roles/cloudsql.viewer]
    requesters: [alice]
    approvers: [dave]
    approvals: 1
    max_duration: 8h
identities:
  alice: {{gcp: "user:alice@example.com"}}
providers:
  gcp: {{concurrency: 3}}
"""
    world.repo.commit({"policies/p.yaml": policy}, "policies")
    land(world, {f"requests/alice/c{i:02d}.yaml": request(scope=p) for i, p in enumerate(projects)})
    world.gcp.latency = 0.05

    world.gcp.reset_counters()
    flagged = world.apply("--concurrency", "1")
    assert flagged.code == 0, flagged.stdout + flagged.stderr
    assert len(flagged.json["grant"]) == 12 and world.gcp.writes() == 12
    assert world.gcp.max_in_flight == 1, world.gcp.max_in_flight

    later = stamp(datetime.now(UTC) + timedelta(hours=3))  # every request has expired
    world.gcp.reset_counters()
    plan = cli(world, "plan", "--format", "json", "--at", later)
    assert plan.code == 0 and len(plan.json["revoke"]) == 12, plan.stdout + plan.stderr
    assert world.gcp.max_in_flight <= 3, f"plan (reads only): {world.gcp.max_in_flight} in flight"

    world.gcp.reset_counters()
    applied = world.apply("--at", later)
    assert applied.code == 0, applied.stdout + applied.stderr
    assert len(applied.json["revoke"]) == 12 and world.gcp.writes() == 12
    assert all(accessctl_bindings(world.gcp, p) == [] for p in projects)
    assert world.gcp.max_in_flight <= 3, (
        f"apply (reads, writes): {world.gcp.max_in_flight} in flight"
    )
