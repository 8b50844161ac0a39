"""AWS users are matched by identity store user id, never by a case-folded user name: a
case twin ("Alice@example.com" next to "alice@example.com") is another person, and alice's
approved request neither keeps the twin's assignment nor stands in for her own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import GitRepo, Result, run_cli

A = "111111111111"
ALICE, TWIN = "alice@example.com", "Alice@example.com"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as box:
        yield box


@pytest.fixture
def seeded(sandbox: AwsSandbox) -> SeededInstance:
    sandbox.reset()
    seeded = sandbox.seed(users=[ALICE, TWIN], permission_sets={"ReadOnly": "PT1H"})
    # moto, like an identity store fed by SCIM, holds both spellings as two users
    assert seeded.users[ALICE] != seeded.users[TWIN]
    return seeded


def policy(seeded: SeededInstance) -> str:
    s = seeded.provider_settings()
    return f"""\
policies:
  - name: aws-read
    provider: aws
    scopes: ['{A}']
    roles: [ReadOnly]
    requesters: [alice]
    approvers: [erin]
    approvals: 0
    max_duration: 8h
identities:
  alice: {{aws: {ALICE}}}
providers:
  aws: {{instance_arn: "{s["instance_arn"]}", identity_store_id: {s["identity_store_id"]}, region: {s["region"]}}}
"""


REQUEST = (
    f"requester: alice\nprovider: aws\nscope: '{A}'\nrole: ReadOnly\n"
    "reason: Investigate INC-4821, slow checkout\nduration: 8h\n"
)


def apply(repo: GitRepo, sandbox: AwsSandbox) -> Result:
    env = {**sandbox.env(), "GITHUB_TOKEN": "", "GITHUB_REPOSITORY": ""}
    args = ["apply", "--repo", str(repo.root), "--trust-git", "--no-ledger", "--format", "json"]
    return run_cli(*args, env=env)


@pytest.fixture
def repo(tmp_path: Path, sandbox: AwsSandbox, seeded: SeededInstance) -> GitRepo:
    sandbox.assign(seeded, A, "ReadOnly", TWIN)  # the twin holds an owned permission set
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"policies/p.yaml": policy(seeded), "requests/alice/inc-1.yaml": REQUEST})
    return repo


def test_case_twin_is_revoked_and_the_real_user_granted(
    repo: GitRepo, sandbox: AwsSandbox, seeded: SeededInstance
) -> None:
    result = apply(repo, sandbox)
    assert result.code == 0, result.stdout + result.stderr
    out = result.json
    assert [(g["scope"], g["principal"]) for g in out["revoke"]] == [(A, TWIN)]
    assert [(g["scope"], g["principal"]) for g in out["grant"]] == [(A, ALICE)]
    assert out["keep"] == []
    assert sandbox.assignments(seeded, A) == {("ReadOnly", "USER", ALICE)}


def test_the_next_run_keeps_the_real_user_and_touches_nothing(
    repo: GitRepo, sandbox: AwsSandbox, seeded: SeededInstance
) -> None:
    first = apply(repo, sandbox)
    assert first.code == 0, first.stdout + first.stderr
    second = apply(repo, sandbox)
    assert second.code == 0, second.stdout + second.stderr
    out = second.json
    assert (out["grant"], out["revoke"]) == ([], [])
    assert [(g["scope"], g["principal"]) for g in out["keep"]] == [(A, ALICE)]
    assert sandbox.assignments(seeded, A) == {("ReadOnly", "USER", ALICE)}
