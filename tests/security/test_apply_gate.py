"""Attacks on ``accessctl apply``: what reached main, who approved it, what IAM holds after.

A real git repository, the GitHub emulator for pull requests and reviews, the GCP emulator
for IAM; the CLI runs as the reconcile workflow runs it (real clock)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.support.titles import description, legacy, tagged, title

from .conftest import REPO, SCOPE, World, request

MINE = "requests/alice/inc-4821.yaml"
ALICE = "user:alice@example.com"


def test_a_direct_push_grants_nothing_without_trust_git(world: World) -> None:
    world.repo.commit({MINE: request()}, "direct push", author="alice")
    result = world.apply()
    assert result.code == 1
    assert "without a merged pull request" in result.stdout + result.stderr
    assert ALICE not in world.members()


def test_the_approved_pr_is_granted(world: World) -> None:
    number, _ = world.open_pr({MINE: request()})
    world.github.add_review(REPO, number, "dave", "APPROVED")
    world.squash(number, "pr1")
    assert world.apply().code == 0
    assert world.members() == {ALICE}
    (binding,) = world.gcp.get_policy(SCOPE)["bindings"]
    # the deployment is the repository the workflow runs for (GITHUB_REPOSITORY)
    assert binding["condition"]["title"] == title(MINE, REPO)
    assert binding["condition"]["description"] == description(MINE, REPO, pr=number)
    stamp = r'timestamp\("\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\)'
    assert re.fullmatch(rf"request\.time < {stamp}", binding["condition"]["expression"])


def test_an_approval_before_a_force_push_does_not_cover_the_new_content(world: World) -> None:
    number, first = world.open_pr({MINE: request(duration="1h")})
    world.github.add_review(REPO, number, "dave", "APPROVED", commit_id=first)
    # force-push: a new head with other content, never reviewed
    world.repo.git("checkout", "-q", "-B", "pr1", "main")
    head = world.repo.commit({MINE: request(duration="8h")}, "rewritten", author="alice")
    world.repo.git("checkout", "-q", "main")
    world.github.push(REPO, number, head, files=world.repo.diff(world.repo.head(), head))
    world.squash(number, "pr1")
    result = world.apply()
    assert result.code == 1
    assert ALICE not in world.members()


def test_an_approval_by_the_requester_under_another_case_does_not_count(world: World) -> None:
    number, _ = world.open_pr({MINE: request()})
    world.github.add_review(REPO, number, "ALICE", "APPROVED")  # alice is also a lead
    world.github.add_review(REPO, number, "dave", "APPROVED", user_type="Bot")
    world.squash(number, "pr1")
    assert world.apply().code == 1
    assert ALICE not in world.members()


def test_content_on_main_that_differs_from_the_reviewed_head_is_not_granted(world: World) -> None:
    number, _ = world.open_pr({MINE: request(duration="1h")})
    world.github.add_review(REPO, number, "dave", "APPROVED")
    # The merge lands other content (an edit folded into the squash commit).
    world.repo.git("merge", "-q", "--squash", "pr1")
    sha = world.repo.commit({MINE: request(duration="8h")}, f"merge #{number}")
    world.github.merge(REPO, number, merge_commit_sha=sha)
    result = world.apply()
    assert result.code == 1
    assert "differs from the reviewed head" in result.stdout + result.stderr
    assert ALICE not in world.members()


def test_a_rebased_pr_that_touches_and_restores_an_expired_request_does_not_revive_it(
    world: World,
) -> None:
    # An old request, approved and merged two days ago: long expired.
    old = datetime.now(UTC) - timedelta(days=2)
    number, _ = world.open_pr({MINE: request()})
    world.github.add_review(REPO, number, "dave", "APPROVED")
    world.repo.git("merge", "-q", "--squash", "pr1")
    sha = world.repo.commit({}, f"merge #{number}")
    world.github.merge(REPO, number, merge_commit_sha=sha, merged_at=old)
    original = (world.repo.root / MINE).read_text()
    # A new PR whose net diff is only another request, but whose commits edit the old
    # file and put it back; rebase-merged, its last commit touching the old file is the PR's.
    base = world.repo.head()
    world.repo.git("checkout", "-q", "-b", "sneaky")
    c1 = world.repo.commit({MINE: request(duration="3h")}, "touch", author="alice")
    c2 = world.repo.commit({MINE: original}, "restore", author="alice")
    other = "requests/alice/inc-9.yaml"
    c3 = world.repo.commit(
        {other: request(reason="Another incident INC-9 to look at")}, "new", author="alice"
    )
    world.repo.git("checkout", "-q", "main")
    files = world.repo.diff(base, c3)
    assert [f["filename"] for f in files] == [other]
    n2 = world.github.add_pull(REPO, author="alice", head_sha=c3, base_sha=base, files=files)
    world.github.add_review(REPO, n2, "dave", "APPROVED")
    world.repo.git("merge", "-q", "--ff-only", "sneaky")  # rebase merge onto an unchanged base
    world.github.merge(REPO, n2, merge_commit_sha=c3, main_commits=[c1, c2, c3])
    out = world.apply()
    granted = {g["request"] for g in out.json["grant"]}
    assert granted == {other}, out.stdout


def test_unmanaged_bindings_survive_byte_for_byte(world: World) -> None:
    foreign = [
        {"role": "roles/cloudsql.viewer", "members": ["user:eve@example.com"]},
        {
            "role": "roles/cloudsql.viewer",
            "members": ["user:alice@example.com"],
            "condition": {"title": "Accessctl:requests/alice/x.yaml", "expression": "true"},
        },
        {
            "role": "roles/cloudsql.viewer",
            "members": ["user:mallory@example.com"],
            "condition": {
                "title": " accessctl:x",
                "expression": 'request.time < timestamp("2020-01-01T00:00:00Z")',
            },
        },
        {  # another deployment's binding
            "role": "roles/cloudsql.viewer",
            "members": ["user:mallory@example.com"],
            "condition": {
                "title": title("requests/mallory/x.yaml", "acme/other-access"),
                "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")',
            },
        },
        {  # an old-style title naming no request this repository ever had
            "role": "roles/cloudsql.viewer",
            "members": ["user:mallory@example.com"],
            "condition": {
                "title": legacy("requests/mallory/x.yaml"),
                "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")',
            },
        },
    ]
    managed_orphan = {
        "role": "roles/cloudsql.viewer",
        "members": ["user:mallory@example.com"],
        "condition": {
            "title": title("requests/mallory/x.yaml", REPO),
            "expression": 'request.time < timestamp("2099-01-01T00:00:00Z")',
        },
    }
    world.gcp.set_policy(SCOPE, {"bindings": [*foreign, managed_orphan]})
    number, _ = world.open_pr({MINE: request()})
    world.github.add_review(REPO, number, "dave", "APPROVED")
    world.squash(number, "pr1")
    assert world.apply().code == 0
    bindings = world.gcp.get_policy(SCOPE)["bindings"]
    for b in foreign:
        assert b in bindings
    assert managed_orphan not in bindings  # this deployment's title, no request: revoked
    ours = [b for b in bindings if b.get("condition", {}).get("title", "").startswith(tagged(REPO))]
    assert [b["members"] for b in ours] == [[ALICE]]


def test_an_expired_request_is_not_granted_again(world: World) -> None:
    number, _ = world.open_pr({MINE: request()})
    reviewed = datetime.now(UTC) - timedelta(hours=4)
    world.github.add_review(REPO, number, "dave", "APPROVED", submitted_at=reviewed)
    world.repo.git("merge", "-q", "--squash", "pr1")
    sha = world.repo.commit({}, f"merge #{number}")
    world.github.merge(
        REPO, number, merge_commit_sha=sha, merged_at=datetime.now(UTC) - timedelta(hours=3)
    )
    result = world.apply()
    assert result.code == 0
    assert ALICE not in world.members()
    assert not result.json["grant"]
