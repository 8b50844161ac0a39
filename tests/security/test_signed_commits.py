"""``require_signed_commits``: a request's commits must prove the requester made them.

A stolen GitHub session or token can open a pull request as its owner; it cannot sign a
commit with the owner's key. Under a policy with the flag, pr-check and apply accept a
request only when every commit of its pull request that changes the file carries a
signature GitHub verified and is GitHub's attribution to the requester (or was made in
GitHub's web interface, which GitHub signs as ``web-flow``, by the requester).

Real git, the GitHub emulator's Git database (signing keys, verification, commit files)
kept in a bare ``origin`` that the checkout fetches from, the GCP emulator; the CLI in a
subprocess, as the workflows run it. pr-check's checkout holds the pull request's head; the
reconciler's holds main, where a squash merge leaves none of the PR's commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from reconciler import history
from reconciler.approvals import ApprovalRecord, SigningRule
from reconciler.approvals_github import ApprovalCache, GitHubApprovals
from reconciler.core.models import AccessRequest, Approvals, Config, Policy
from reconciler.core.timeutil import parse_duration
from reconciler.github import GitHubClient
from reconciler.sandbox.github_emulator import DEFAULT_TOKEN

from .conftest import POLICY, REPO, GitRepo, Result, World, request

MINE = "requests/alice/inc-4821.yaml"
ALICE = "user:alice@example.com"
SIGNED_POLICY = POLICY.replace(
    "max_duration: 8h", "max_duration: 8h\n    require_signed_commits: true"
)
LIST = "GET /repos/{o}/{r}/pulls/{n}/commits"
DETAIL = "GET /repos/{o}/{r}/commits/{ref}"

Commit = Mapping[str, object]  # GitHubEmulator.commit's keywords, besides repo and parent


@pytest.fixture
def signed(world: World) -> World:
    """The world with the flag on its one policy, and alice and bob's signing keys."""
    world.repo.commit({"policies/p.yaml": SIGNED_POLICY}, "require signed commits")
    return _keys(world)


def _keys(world: World) -> World:
    """GitHub's repository is a bare ``origin`` holding main; alice and bob sign."""
    origin = GitRepo(world.tmp / "origin.git", bare=True)
    world.repo.git("remote", "add", "origin", str(origin.root))
    world.repo.git("push", "-q", "origin", "main")
    world.github.attach_git(REPO, origin.root)
    world.github.add_signing_key("alice")
    world.github.add_signing_key("bob")
    return world


def open_pr(world: World, *commits: Commit) -> tuple[int, str]:
    """A pull request by alice, approved by dave, whose branch holds ``commits`` as the
    emulator's ``commit`` makes them (pushed to GitHub, not yet in the checkout); returns
    (number, branch)."""
    origin = GitRepo(world.tmp / "origin.git", init=False)
    base = head = world.repo.head()
    for spec in commits:
        head = world.github.commit(REPO, parent=head, **spec)  # type: ignore[arg-type]
    world.branches += 1
    branch = f"pr{world.branches}"
    origin.git("branch", branch, head)
    number = world.github.add_pull(
        REPO, author="alice", head_sha=head, base_sha=base, files=origin.diff(base, head)
    )
    world.github.add_review(REPO, number, "dave", "APPROVED")
    return number, branch


def fetch(world: World, branch: str) -> None:
    """What pr-check's checkout does: bring the pull request's head."""
    world.repo.git("fetch", "-q", "origin", f"{branch}:{branch}")


def pr_check(world: World, number: int, branch: str) -> Result:
    fetch(world, branch)
    world.github.reset_calls()
    return world.pr_check(number, "--format", "json")


def squash(world: World, number: int, branch: str) -> None:
    """A squash merge as the reconciler's checkout sees it: one commit on main with the
    PR's content (the PR's own commits never reach the checkout)."""
    origin = GitRepo(world.tmp / "origin.git", init=False)
    content = origin.git("show", f"{branch}:{MINE}") + "\n"
    sha = world.repo.commit({MINE: content}, f"Request access (#{number})", author="admin")
    world.github.merge(REPO, number, merge_commit_sha=sha)
    world.github.reset_calls()


def file(author: str = "alice", **how: object) -> dict[str, object]:
    return {"files": {MINE: request()}, "author": author, **how}


ACCEPTED = {
    "signed-by-requester": [file(signed_by="alice")],
    "web-interface": [file(web=True)],
    # a draft the requester signed, then an edit made on GitHub
    "signed-then-web": [file(signed_by="alice"), {**file(web=True), "files": {MINE: request(duration="1h")}}],
}  # fmt: skip
REFUSED = {
    "unsigned": ([file()], "not verified by GitHub (reason: unsigned)"),
    "signed-by-someone-else": ([file("bob", signed_by="bob")], "authored by bob"),
    # bob commits alice's change with his own key: his key proves nothing of alice's
    "committed-by-someone-else": (
        [file(committer="bob", signed_by="bob")],
        "its signature made, by bob",
    ),
    "unregistered-key": ([file(signed_by="carol")], "reason: invalid"),
    "web-edit-by-someone-else": (
        [
            file(signed_by="alice"),
            {**file("bob", web=True), "files": {MINE: request(duration="1h")}},
        ],
        "authored by bob",
    ),
    "unsigned-then-signed": (
        [file(), {**file(signed_by="alice"), "files": {MINE: request(duration="1h")}}],
        "reason: unsigned",
    ),
}


@pytest.mark.parametrize("commits", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_pr_check_accepts_commits_the_requester_signed(signed: World, commits: list) -> None:
    number, branch = open_pr(signed, *commits)
    result = pr_check(signed, number, branch)
    assert result.code == 0, result.stdout
    # one page of the PR's commits; whether a commit changes the file comes from the clone
    assert signed.github.calls[LIST] == 1 and signed.github.calls[DETAIL] == 0


@pytest.mark.parametrize(
    "commits, why", list(REFUSED.values()), ids=list(REFUSED)
)  # fmt: skip
def test_pr_check_refuses_commits_that_do_not_prove_the_requester(
    signed: World, commits: list, why: str
) -> None:
    number, branch = open_pr(signed, *commits)
    result = pr_check(signed, number, branch)
    assert result.code == 1 and result.json["state"] == "failure"
    found = [f for f in result.json["findings"] if f["code"] == "E-PR-UNSIGNED"]
    assert found and all(f["file"] == MINE for f in found), result.stdout
    assert why in found[0]["message"] and "policy 'db-read'" in found[0]["message"]
    assert signed.github.calls[DETAIL] == 0


def test_pr_check_names_every_offending_commit(signed: World) -> None:
    edit = {**file("bob", signed_by="bob"), "files": {MINE: request(duration="1h")}}
    number, branch = open_pr(signed, file(), edit)
    result = pr_check(signed, number, branch)
    messages = [f["message"] for f in result.json["findings"] if f["code"] == "E-PR-UNSIGNED"]
    assert len(messages) == 2 and "unsigned" in messages[0] and "bob" in messages[1]


@pytest.mark.parametrize("commits", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_apply_grants_what_the_requester_signed(signed: World, commits: list) -> None:
    number, branch = open_pr(signed, *commits)
    squash(signed, number, branch)
    result = signed.apply()
    assert result.code == 0, result.stdout + result.stderr
    assert signed.members() == {ALICE}
    # every commit proves itself: whether it changes the file is never asked
    assert signed.github.calls[LIST] == 1 and signed.github.calls[DETAIL] == 0


@pytest.mark.parametrize(
    "commits, why", list(REFUSED.values()), ids=list(REFUSED)
)  # fmt: skip
def test_apply_refuses_what_the_requester_did_not_sign(
    signed: World, commits: list, why: str
) -> None:
    number, branch = open_pr(signed, *commits)
    squash(signed, number, branch)
    result = signed.apply()
    assert result.code == 1
    assert "E-PR-UNSIGNED" in result.stdout and why in result.stdout
    assert ALICE not in signed.members()
    # one page of commits, and the files of the one commit that fails (not in the checkout)
    assert signed.github.calls[LIST] == 1 and signed.github.calls[DETAIL] == 1


def test_apply_reads_merged_commits_from_the_checkout(signed: World) -> None:
    number, branch = open_pr(signed, file())
    fetch(signed, branch)
    signed.repo.git("merge", "-q", "--no-ff", branch, "-m", f"Merge pull request #{number}")
    signed.github.merge(REPO, number, merge_commit_sha=signed.repo.head())
    signed.github.reset_calls()
    result = signed.apply()
    assert result.code == 1 and "E-PR-UNSIGNED" in result.stdout
    assert ALICE not in signed.members()
    assert signed.github.calls[LIST] == 1 and signed.github.calls[DETAIL] == 0


NOTE = {"files": {"requests/alice/README.md": "my requests\n"}, "author": "alice"}


def test_pr_check_ignores_an_unsigned_commit_that_leaves_the_file_alone(signed: World) -> None:
    number, branch = open_pr(signed, NOTE, file(signed_by="alice"))
    assert pr_check(signed, number, branch).code == 0
    assert signed.github.calls[LIST] == 1 and signed.github.calls[DETAIL] == 0


def test_apply_ignores_an_unsigned_commit_that_leaves_the_file_alone(signed: World) -> None:
    number, branch = open_pr(signed, NOTE, file(signed_by="alice"))
    squash(signed, number, branch)
    assert signed.apply().code == 0
    assert signed.members() == {ALICE}
    # the unsigned commit is not in the reconciler's checkout: one GET of its files
    assert signed.github.calls[LIST] == 1 and signed.github.calls[DETAIL] == 1


def test_a_policy_without_the_flag_asks_nothing_more(world: World) -> None:
    world = _keys(world)
    number, branch = open_pr(world, file("bob", signed_by="bob"), file())
    assert pr_check(world, number, branch).code == 0
    assert LIST not in world.github.calls and DETAIL not in world.github.calls
    squash(world, number, branch)
    assert world.apply().code == 0
    assert world.members() == {ALICE}
    assert LIST not in world.github.calls and DETAIL not in world.github.calls


def test_github_failing_leaves_the_approval_unverified_not_refused(signed: World) -> None:
    number, branch = open_pr(signed, file(signed_by="alice"))
    squash(signed, number, branch)
    signed.github.fail(r"GET /repos/[^/]+/[^/]+/pulls/\d+/commits", 404, message="Not Found")
    result = signed.apply()
    assert result.code == 1 and "E-APPROVAL-UNVERIFIED" in result.stdout
    assert ALICE not in signed.members()
    assert signed.apply().code == 0  # GitHub answers again: granted
    assert signed.members() == {ALICE}


def _source(world: World, cache: ApprovalCache | None = None) -> GitHubApprovals:
    client = GitHubClient(world.github.url, DEFAULT_TOKEN, REPO)
    return GitHubApprovals(client, cache, world.repo.root)


def test_an_approval_recorded_before_the_flag_is_checked_again(signed: World) -> None:
    number, branch = open_pr(signed, file())
    squash(signed, number, branch)
    change = history.load_branch(signed.repo.root).changes()[MINE]
    cache = ApprovalCache(None, signed.github.url, REPO)
    approvals = Approvals(frozenset({"dave"}), pr_author="alice", pr_number=number)
    cache.put(change, ApprovalRecord(MINE, change.commit, datetime.now(UTC), approvals, pr=number))
    record = _source(signed, cache).lookup([change])[MINE]
    assert record.code == "E-PR-UNSIGNED" and record.approval().refusal_code == "E-PR-UNSIGNED"
    assert signed.github.calls[LIST] == 1


def test_a_checked_approval_is_kept_with_its_proof(signed: World) -> None:
    number, branch = open_pr(signed, file(signed_by="alice"))
    squash(signed, number, branch)
    change = history.load_branch(signed.repo.root).changes()[MINE]
    first = _source(signed)
    assert first.lookup([change])[MINE].signed
    stored = ApprovalCache(first.evidence()["approvals.json"], signed.github.url, REPO)
    signed.github.reset_calls()
    again = _source(signed, stored).lookup([change])[MINE]
    assert again.signed and again.error is None
    assert signed.github.total_calls == 0


# -- which policy's flag applies (pure: the one evaluator decides) ---------------------------

NOW = datetime(2026, 12, 1, 8, tzinfo=UTC)


def _policy(name: str, *, signed: bool, approvals: int = 1, role: str = "roles/a") -> Policy:
    return Policy(
        name=name,
        provider="gcp",
        scopes=("projects/p",),
        roles=(role,),
        requesters=("alice",),
        approvers=("dave", "erin"),
        approvals=approvals,
        max_duration=parse_duration("8h"),
        require_signed_commits=signed,
    )


REQUEST = AccessRequest(
    path="requests/alice/x.yaml",
    requester="alice",
    provider="gcp",
    scope="projects/p",
    role="roles/a",
    reason="a good reason",
    duration=parse_duration("1h"),
)
IDENTITIES = {"alice": {"gcp": "user:alice@example.com"}}


@pytest.mark.parametrize(
    "policies, reviewers, before_merge, expected",
    [
        ([_policy("strict", signed=True)], {"dave"}, False, "strict"),
        ([_policy("plain", signed=False)], {"dave"}, False, None),
        # another policy allows it without the flag: nothing to prove
        ([_policy("strict", signed=True), _policy("plain", signed=False)], {"dave"}, False, None),
        # the flagless policy needs two approvals; with one, only the flagged one allows it
        (
            [_policy("strict", signed=True), _policy("plain", signed=False, approvals=2)],
            {"dave"},
            False,
            "strict",
        ),
        # a flagged policy for another role does not cover the request
        ([_policy("other", signed=True, role="roles/b")], {"dave"}, False, None),
        # no approval yet: apply has nothing to grant; pr-check checks ahead of approval
        ([_policy("strict", signed=True)], set(), False, None),
        ([_policy("strict", signed=True)], set(), True, "strict"),
    ],
    ids=[
        "flagged",
        "flagless",
        "flagless-also-allows",
        "only-flagged-allows",
        "other-role",
        "apply-unapproved",
        "pr-check-waiting",
    ],
)
def test_the_flag_of_the_policy_that_allows_the_request_applies(
    policies: list[Policy], reviewers: set[str], before_merge: bool, expected: str | None
) -> None:
    config = Config(policies=tuple(policies), identities=IDENTITIES)
    rule = SigningRule.of(config)
    approvals = Approvals(frozenset(reviewers), pr_author="alice", pr_number=1)
    found = (
        rule.policy(REQUEST, approved_at=NOW, approvals=approvals, before_merge=before_merge)
        if rule
        else None
    )
    assert (found.name if found else None) == expected
    if not any(p.require_signed_commits for p in policies):
        assert rule is None  # no flag anywhere: not even an evaluation
