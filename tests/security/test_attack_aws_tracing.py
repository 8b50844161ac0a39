"""Attacks on how an AWS revoke is traced to a request: an assignment carries no request of
its own, so apply names the request that held it. A request for another account, another
permission set or another person, or one that was never approved, must never be named
for a revoke it had nothing to do with (a hand-made assignment would then read as routine
clean-up in the trail). moto behind the AWS sandbox, the GitHub emulator, real git, the
CLI in a subprocess."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import World
from .test_trusted_path import land

A, B = "111111111111", "222222222222"
ALICE, BOB = "alice@example.com", "bob@example.com"
STANDING = "no active approved request: standing assignment of an owned permission set"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as box:
        yield box


@pytest.fixture
def seeded(sandbox: AwsSandbox) -> SeededInstance:
    sandbox.reset()
    return sandbox.seed(users=[ALICE, BOB], permission_sets={"ReadOnly": "PT1H", "Admin": "PT1H"})


@pytest.fixture
def aws_world(world: World, sandbox: AwsSandbox, seeded: SeededInstance) -> World:
    s = seeded.provider_settings()
    policy = f"""\
policies:
  - name: aws
    provider: aws
    scopes: ['{A}', '{B}']
    roles: [ReadOnly, Admin]
    requesters: [alice, bob]
    approvers: [dave]
    approvals: 1
    max_duration: 8h
identities:
  alice: {{aws: {ALICE}}}
  bob: {{aws: {BOB}}}
providers:
  aws: {{instance_arn: "{s["instance_arn"]}", identity_store_id: {s["identity_store_id"]}, region: {s["region"]}}}
"""
    world.repo.commit({"policies/p.yaml": policy}, "aws policies")
    world.env.update(sandbox.env())
    return world


def req(login: str, account: str, role: str) -> str:
    return (
        f"requester: {login}\nprovider: aws\nscope: '{account}'\nrole: {role}\n"
        f"reason: Investigate INC-4821, slow checkout\nduration: 2h\n"
    )


def test_a_hand_made_assignment_is_never_traced_to_a_neighbouring_request(
    aws_world: World, sandbox: AwsSandbox, seeded: SeededInstance
) -> None:
    """alice asks for ReadOnly on B and Admin on A, bob for ReadOnly on A (all approved).
    Someone gives alice ReadOnly on A by hand: its revoke names no request."""
    land(aws_world, {"requests/alice/ro-b.yaml": req("alice", B, "ReadOnly")})
    land(aws_world, {"requests/alice/admin-a.yaml": req("alice", A, "Admin")})
    land(aws_world, {"requests/bob/ro-a.yaml": req("bob", A, "ReadOnly")}, author="bob")
    sandbox.assign(seeded, A, "ReadOnly", ALICE)

    applied = aws_world.apply()
    assert applied.code == 0, applied.stdout + applied.stderr
    [revoke] = [r for r in applied.json["results"] if r["action"] == "revoke"]
    assert (revoke["scope"], revoke["role"], revoke["request"]) == (A, "ReadOnly", None)
    assert revoke["reason"] == STANDING
    assert sandbox.assignments(seeded, A) == {
        ("Admin", "USER", ALICE),
        ("ReadOnly", "USER", BOB),
    }
    assert sandbox.assignments(seeded, B) == {("ReadOnly", "USER", ALICE)}


NEVER_GRANTED = {
    # bob opened the pull request for alice's ReadOnly on A
    "opened by someone else": ("requests/alice/ro-a.yaml", "bob", "E-APPROVAL-AUTHOR"),
    # alice filed it in bob's directory
    "in someone else's directory": ("requests/bob/ro-a.yaml", "alice", "E-REFUSED-WRONG-DIRECTORY"),
}


@pytest.mark.parametrize(("path", "author", "code"), NEVER_GRANTED.values(), ids=NEVER_GRANTED)
def test_a_request_that_could_never_be_granted_is_never_named_for_a_revoke(
    aws_world: World, sandbox: AwsSandbox, seeded: SeededInstance, path: str, author: str, code: str
) -> None:
    """Approved and merged, yet refused whatever the policies say: it grants nothing. When
    someone then gives alice that assignment by hand, its revoke is a standing assignment's,
    not that request's (which would read as the routine end of an access nobody had)."""
    land(aws_world, {path: req("alice", A, "ReadOnly")}, author=author)
    refused = aws_world.apply()
    assert refused.code == 1 and code in refused.stdout, refused.stdout
    assert sandbox.assignments(seeded, A) == set()
    sandbox.assign(seeded, A, "ReadOnly", ALICE)

    applied = aws_world.apply()
    [revoke] = [r for r in applied.json["results"] if r["action"] == "revoke"]
    assert (revoke["request"], revoke["reason"]) == (None, STANDING)
    assert sandbox.assignments(seeded, A) == set()
