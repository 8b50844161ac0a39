"""Attacks on break-glass: flipping an approved request to break-glass to keep a long window
without approval, reviewing one's own break-glass pull request, and a break-glass file
slipped into someone else's directory. Real git, the GitHub and GCP emulators, the CLI."""

from __future__ import annotations

from .conftest import SCOPE, World, request, run_cli

POLICY = """\
policies:
  - name: db-read
    provider: gcp
    scopes: [projects/payments-*]
    roles: [roles/cloudsql.viewer]
    requesters: [team:oncall]
    approvers: [team:leads]
    approvals: 1
    max_duration: 8h
    break_glass: {max_duration: 1h, review_within: 24h}
teams:
  oncall: [alice, bob]
  leads: [dave, erin, alice]
identities:
  alice: {gcp: "user:alice@example.com"}
  bob: {gcp: "user:bob@example.com"}
providers:
  gcp: {}
"""
ALICE = "requests/alice/inc-4821.yaml"
GLASS = "ticket: INC-4821\nbreak_glass: true\n"


def with_break_glass(world: World) -> None:
    world.repo.commit({"policies/p.yaml": POLICY}, "break-glass policy")


def merged(world: World, files: dict[str, str | None], author: str = "alice") -> int:
    """A pull request merged as it stands (the gate passed, or an admin bypassed it)."""
    number, _ = world.open_pr(files, author=author)
    world.squash(number, f"pr{world.branches}")
    return number


def state_of(world: World, path: str = ALICE) -> str:
    status = run_cli("status", "--repo", str(world.repo.root), "--format", "json", env=world.env)
    assert status.code == 0, status.stderr
    return {r["file"]: r["state"] for r in status.json["requests"]}[path]


def test_flipping_an_approved_request_to_break_glass_keeps_no_long_window(world: World) -> None:
    with_break_glass(world)
    number, _ = world.open_pr({ALICE: request(duration="8h")})
    world.github.add_review("acme/access", number, "dave", "APPROVED")
    world.squash(number, "pr1")
    assert world.apply().code == 0
    assert world.members() == {"user:alice@example.com"}

    # The same 8h, now "break-glass": no approval asked, a longer window than it allows.
    flip, _ = world.open_pr({ALICE: request(duration="8h", extra=GLASS)})
    gate = world.pr_check(flip, "--format", "json")
    assert gate.code == 1 and gate.json["state"] == "failure"  # never waiting
    assert "E-POLICY-TOO-LONG" in [f["code"] for f in gate.json["findings"]]

    # Merged past the gate: the edit is a new request, refused; the old window is gone too.
    world.squash(flip, "pr2")
    applied = world.apply()
    assert applied.code == 1
    assert "allows break-glass access for at most 1h" in applied.stdout
    assert world.members() == set()


def test_a_requester_cannot_do_the_follow_up_review_of_their_own_break_glass(
    world: World,
) -> None:
    """alice is an approver of the policy too: her own approval still never counts."""
    with_break_glass(world)
    number = merged(world, {ALICE: request(duration="1h", extra=GLASS)})
    assert world.apply().code == 0
    assert world.members() == {"user:alice@example.com"}
    assert state_of(world) == "break-glass-unreviewed"

    world.github.add_review("acme/access", number, "alice", "APPROVED")  # her own
    world.github.add_review("acme/access", number, "bob", "APPROVED")  # not an approver
    assert state_of(world) == "break-glass-unreviewed"
    audit = run_cli("audit", "--repo", str(world.repo.root), "--format", "json", env=world.env)
    [entry] = audit.json["requests"]
    assert entry["reviewed_after_by"] is None and entry["approvers"] == []
    assert [a["code"] for a in entry["anomalies"]] == ["break-glass-unreviewed"]

    world.github.add_review("acme/access", number, "erin", "APPROVED")
    assert state_of(world) == "active"


def test_a_break_glass_file_in_someone_elses_directory_grants_nothing(world: World) -> None:
    with_break_glass(world)
    # bob may ask for break-glass himself; he may not ask in alice's name.
    number, _ = world.open_pr({ALICE: request(duration="1h", extra=GLASS)}, author="bob")
    gate = world.pr_check(number, "--format", "json")
    assert gate.code == 1 and gate.json["state"] == "failure"
    assert "E-PR-AUTHOR" in [f["code"] for f in gate.json["findings"]]

    # Nor put his own in her directory.
    mine = request("bob", duration="1h", extra=GLASS)
    other, _ = world.open_pr({ALICE: mine}, author="bob")
    gate = world.pr_check(other, "--format", "json")
    assert gate.code == 1 and "E-REQ-DIRECTORY" in [f["code"] for f in gate.json["findings"]]

    # An admin merges the first one past the gate: apply still grants nobody anything.
    world.squash(number, "pr1")
    applied = world.apply()
    assert applied.code == 1
    assert "E-APPROVAL-AUTHOR" in applied.stdout
    assert world.members(SCOPE) == set()
