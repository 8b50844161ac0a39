"""The trusted path on AWS IAM Identity Center: an assignment exists only inside an approved,
policy-compliant window, whatever the edit or the outage. The CLI runs against moto in server
mode (``reconciler.sandbox.aws``) and the GitHub emulator; the repository is built here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import World
from .test_trusted_path import MINE, land, stamp, whole

A = "111111111111"
ALICE = "alice@example.com"
HELD = {("ReadOnly", "USER", ALICE)}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as box:
        yield box


@pytest.fixture
def seeded(sandbox: AwsSandbox) -> SeededInstance:
    sandbox.reset()
    return sandbox.seed(users=[ALICE], permission_sets={"ReadOnly": "PT1H"})


@pytest.fixture
def aws_world(world: World, sandbox: AwsSandbox, seeded: SeededInstance) -> World:
    s = seeded.provider_settings()
    policy = f"""\
policies:
  - name: aws-read
    provider: aws
    scopes: ['{A}']
    roles: [ReadOnly]
    requesters: [alice]
    approvers: [dave]
    approvals: 1
    max_duration: 8h
identities:
  alice: {{aws: {ALICE}}}
providers:
  aws: {{instance_arn: "{s["instance_arn"]}", identity_store_id: {s["identity_store_id"]}, region: {s["region"]}}}
"""
    world.repo.commit({"policies/p.yaml": policy}, "aws policies")
    world.env.update(sandbox.env())
    return world


def req(duration: str = "2h", extra: str = "") -> str:
    return (
        f"requester: alice\nprovider: aws\nscope: '{A}'\nrole: ReadOnly\n"
        f"reason: Investigate INC-4821, slow checkout\nduration: {duration}\n{extra}"
    )


def test_an_approved_edit_moving_start_later_removes_the_assignment_until_then(
    aws_world: World, sandbox: AwsSandbox, seeded: SeededInstance
) -> None:
    """Attack: alice's assignment is active; her approved edit only moves ``start`` three hours
    later. AWS assignments carry no time, so keeping the old one would allow access now.
    Safe outcome: apply removes the assignment until the new start, grants it again inside
    the new window and removes it at the new end."""
    land(aws_world, {MINE: req()})
    first = aws_world.apply()
    assert first.code == 0, first.stdout + first.stderr
    assert sandbox.assignments(seeded, A) == HELD
    start = whole(datetime.now(UTC)) + timedelta(hours=3)
    land(aws_world, {MINE: req(extra=f"start: {stamp(start)}\n")})

    moved = aws_world.apply()
    assert moved.code == 0, moved.stdout + moved.stderr
    assert sandbox.assignments(seeded, A) == set()
    inside = aws_world.apply("--at", stamp(start + timedelta(minutes=1)))
    assert inside.code == 0, inside.stdout + inside.stderr
    assert sandbox.assignments(seeded, A) == HELD
    after = aws_world.apply("--at", stamp(start + timedelta(hours=2, minutes=1)))
    assert after.code == 0, after.stdout + after.stderr
    assert sandbox.assignments(seeded, A) == set()


def test_github_outage_keeps_no_assignment_for_a_window_no_policy_allows(
    aws_world: World, sandbox: AwsSandbox, seeded: SeededInstance
) -> None:
    """Attack: while GitHub answers 503 to everything, a direct push (never through the gate)
    asks for 3650d, and alice already holds the assignment (left by an earlier bypass).
    Safe outcome: with no policy allowing a 3650d window, apply revokes the assignment."""
    aws_world.repo.commit({MINE: req(duration="3650d")}, "direct push", author="alice")
    sandbox.assign(seeded, A, "ReadOnly", ALICE)
    aws_world.github.fail(".", 503, times=100_000)
    result = aws_world.apply()
    assert aws_world.github.calls["fault"] > 0
    assert sandbox.assignments(seeded, A) == set(), result.stdout + result.stderr
