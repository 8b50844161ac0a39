"""Attacks on ``accessctl pr-check``: who may ask, which paths count, which reviews count."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import World, request, run_cli

MINE = "requests/alice/inc-4821.yaml"


def verdict(world: World, number: int) -> tuple[int, dict]:
    result = world.pr_check(number, "--format", "json")
    return result.code, result.json


def test_a_request_for_someone_else_fails(world: World) -> None:
    number, _ = world.open_pr({"requests/bob/inc-1.yaml": request("bob")}, author="alice")
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    code, out = verdict(world, number)
    assert code == 1 and out["state"] == "failure"
    assert "E-PR-AUTHOR" in {f["code"] for f in out["findings"]}


@pytest.mark.parametrize(
    "path, body",
    [
        ("requests/Alice/inc-1.yaml", request("Alice")),  # same person, other case: allowed
        ("requests/alice/inc-1.yaml", request("ALICE")),
    ],
    ids=["directory-case", "requester-case"],
)
def test_case_variants_of_the_author_are_the_author(world: World, path: str, body: str) -> None:
    number, _ = world.open_pr({path: body}, author="alice")
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    code, out = verdict(world, number)
    # Either refused or allowed for alice herself; never for anybody else.
    if code == 0:
        assert out["files"][0]["requester"].lower() == "alice"


@pytest.mark.parametrize(
    "path, body",
    [
        ("requests/\u0430lice/inc-1.yaml", request("alice")),  # Cyrillic a in the directory
        ("requests/alice/inc-1.yaml", request("\u0430lice")),  # ... in the requester
        ("requests/alice/INC-1.yaml", request("alice")),  # not a slug
        ("requests/alice/inc-1.yaml/x.yaml", request("alice")),  # a directory named like a file
        ("requests/alice/sub/inc-1.yaml", request("alice")),
        ("requests/inc-1.yaml", request("alice")),
        ("requests/alice/inc-1.json", request("alice")),  # not yaml: still not allowed here
    ],
    ids=[
        "lookalike-dir",
        "lookalike-requester",
        "upper-slug",
        "dir-as-file",
        "nested",
        "flat",
        "json",
    ],
)
def test_path_and_lookalike_tricks_fail(world: World, path: str, body: str) -> None:
    number, _ = world.open_pr({path: body}, author="alice")
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    code, out = verdict(world, number)
    assert code == 1 and out["state"] == "failure", out


@pytest.mark.parametrize(
    "link, target, listed",
    [
        ("requests/alice/inc-1.yaml", "../../policies/p.yaml", "requests/alice/inc-1.yaml"),
        ("requests/alice", "bob", "requests/alice"),  # a directory symlink to bob's requests
    ],
    ids=["file-to-policies", "dir-to-other-user"],
)
def test_symlinks_under_requests_fail(world: World, link: str, target: str, listed: str) -> None:
    world.repo.git("checkout", "-q", "-b", "link")
    world.repo.commit({"requests/bob/inc-1.yaml": request("bob")}, "bob", author="bob")
    base = world.repo.head()
    path = world.repo.root / link
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    world.repo.git("add", "--", link)
    world.repo.git("commit", "-q", "-m", "link", author="alice")
    head = world.repo.head()
    world.repo.git("checkout", "-q", "main")
    number = world.github.add_pull(
        "acme/access",
        author="alice",
        head_sha=head,
        base_sha=base,
        files=[{"filename": listed, "status": "added"}],
    )
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    code, out = verdict(world, number)
    assert code == 1 and out["state"] == "failure", out
    assert "E-FILE-SYMLINK" in {f["code"] for f in out["findings"]}


def test_an_approval_on_an_older_head_does_not_cover_a_new_push(world: World) -> None:
    number, _ = world.open_pr({MINE: request()})
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    assert verdict(world, number)[0] == 0
    world.push(number, "pr1", {MINE: request(role="roles/cloudsql.admin")})
    code, out = verdict(world, number)
    assert code == 1 and out["state"] != "success"


@pytest.mark.parametrize(
    "login, user_type",
    [("ALICE", None), ("Alice", None), ("dave", "Bot"), ("dave[bot]", None)],
    ids=["requester-upper", "requester-title", "bot-type", "bot-suffix"],
)
def test_self_and_bot_approvals_never_count(
    world: World, login: str, user_type: str | None
) -> None:
    number, _ = world.open_pr({MINE: request()})
    world.github.add_review("acme/access", number, login, "APPROVED", user_type=user_type)
    code, out = verdict(world, number)
    assert code == 1 and out["state"] == "pending"
    assert out["files"][0]["approvals"]["present"] == []


def test_an_approver_who_is_the_requester_through_a_team_does_not_count(world: World) -> None:
    # alice is in team leads (the approvers) and asks for herself: her approval is a self-review.
    number, _ = world.open_pr({MINE: request()})
    world.github.add_review("acme/access", number, "alice", "APPROVED")
    code, out = verdict(world, number)
    assert code == 1 and out["files"][0]["approvals"]["present"] == []
    assert "alice" not in out["files"][0]["approvals"]["eligible"]


def test_a_pr_by_someone_else_for_the_requester_gets_no_self_approval(world: World) -> None:
    # bob opens a PR adding a request for bob; the author bob cannot approve it either.
    number, _ = world.open_pr({"requests/bob/inc-1.yaml": request("bob")}, author="bob")
    world.github.add_review("acme/access", number, "BOB", "APPROVED")
    assert verdict(world, number)[0] == 1


def test_a_pr_changing_a_policy_and_a_request_fails(world: World) -> None:
    looser = (
        (world.repo.root / "policies/p.yaml").read_text().replace("approvals: 1", "approvals: 0")
    )
    number, _ = world.open_pr({MINE: request(), "policies/p.yaml": looser})
    code, out = verdict(world, number)
    assert code == 1 and out["problems"]


def test_requests_are_judged_by_the_base_policies(world: World) -> None:
    # A policy PR that was merged without review would be on the base; an open one is not.
    looser = (
        (world.repo.root / "policies/p.yaml").read_text().replace("approvals: 1", "approvals: 0")
    )
    world.open_pr({"policies/p.yaml": looser})  # not merged
    number, _ = world.open_pr({MINE: request()})
    code, out = verdict(world, number)
    assert code == 1 and out["state"] == "pending"


def test_pr_check_uses_the_real_clock_unless_told(world: World) -> None:
    # A request that ended in 2020 is refused on the real clock; ACCESSCTL_NOW is not set.
    body = request(extra="expires: 2020-01-01T00:00:00Z\n")
    number, _ = world.open_pr({MINE: body})
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    event = world.tmp / "event.json"
    event.write_text(f'{{"pull_request": {{"number": {number}}}}}')
    env = {**world.env, "GITHUB_EVENT_PATH": str(event)}
    result = run_cli("pr-check", "--repo", str(world.repo.root), "--format", "json", env=env)
    assert result.code == 1
    codes = {f["code"] for f in result.json["findings"]}
    assert codes & {"E-REQ-EXPIRED", "E-POLICY-EMPTY-WINDOW"}, codes


def _merge_request(world: World, path: str, body: str, author: str) -> None:
    number, _ = world.open_pr({path: body}, author=author)
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    world.squash(number, f"pr{world.branches}")


def test_deleting_or_moving_someone_elses_request_fails(world: World) -> None:
    _merge_request(world, MINE, request(), "alice")
    number, _ = world.open_pr({MINE: None}, author="bob")
    code, out = verdict(world, number)
    assert code == 1 and "E-PR-REVOKE" in {f["code"] for f in out["findings"]}
    # A move into bob's directory is a deletion of alice's file plus a new file.
    moved = {MINE: None, "requests/bob/inc-4821.yaml": request("bob")}
    number, _ = world.open_pr(moved, author="bob")
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    code, out = verdict(world, number)
    assert code == 1 and "E-PR-REVOKE" in {f["code"] for f in out["findings"]}


def test_a_file_name_ending_in_a_newline_is_not_a_request(world: World) -> None:
    # `^...$` in Python also matches before a final newline.
    path = "requests/alice/inc-1.yaml\n"
    world.repo.git("checkout", "-q", "-b", "nl")
    world.repo.commit({path: request()}, "nl", author="alice")
    head = world.repo.head()
    world.repo.git("checkout", "-q", "main")
    number = world.github.add_pull(
        "acme/access",
        author="alice",
        head_sha=head,
        base_sha=world.repo.head(),
        files=[{"filename": path, "status": "added"}],
    )
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    code, out = verdict(world, number)
    assert code == 1
    assert "E-FILE-LAYOUT" in {f["code"] for f in out["findings"]}


def test_a_request_pr_against_another_branch_is_not_judged_by_its_policies(world: World) -> None:
    # mallory's branch loosens the policy; a PR against it would be judged by it, and the
    # green status sits on the head commit, which a PR against main can share.
    looser = (
        (world.repo.root / "policies/p.yaml").read_text().replace("approvals: 1", "approvals: 0")
    )
    world.repo.git("checkout", "-q", "-b", "evil")
    base = world.repo.commit({"policies/p.yaml": looser}, "looser", author="alice")
    world.repo.git("checkout", "-q", "-b", "evil-pr")
    head = world.repo.commit({MINE: request()}, "request", author="alice")
    world.repo.git("checkout", "-q", "main")
    number = world.github.add_pull(
        "acme/access",
        author="alice",
        head_sha=head,
        base_sha=base,
        base_ref="evil",
        files=world.repo.diff(base, head),
    )
    code, out = verdict(world, number)
    assert code == 1 and out["state"] == "failure"
    assert "not main" in " ".join(out["problems"])


def test_a_pr_with_more_files_than_github_lists_fails(world: World) -> None:
    # GitHub's file list stops at 3000: a request hidden after them would pass unseen.
    number, head = world.open_pr({MINE: request()})
    listed = [{"filename": f"docs/f{i}.md", "status": "added"} for i in range(3000)]
    world.github.push("acme/access", number, head, files=listed)
    code, out = verdict(world, number)
    assert code == 1 and out["state"] == "failure"
    assert "3000" in " ".join(out["problems"])


def test_a_policy_only_pr_is_left_to_codeowners_and_the_docs_say_so(world: World) -> None:
    # The reconciler trusts the policies on main; what guards them is the security team's
    # required review (CODEOWNERS + "Require review from Code Owners"), not pr-check.
    text = (world.repo.root / "policies/p.yaml").read_text()
    number, _ = world.open_pr({"policies/p.yaml": text.replace("approvals: 1", "approvals: 0")})
    code, out = verdict(world, number)
    assert code == 0 and "CODEOWNERS" in " ".join(out["notes"])
    root = Path(__file__).resolve().parents[2]
    owners = (root / ".github/CODEOWNERS").read_text()
    assert "/policies/" in owners and "/.github/" in owners
    setup = (root / "docs/github-setup.md").read_text()
    assert "Require review from Code Owners" in setup
