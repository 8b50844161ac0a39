"""AWS IAM Identity Center: accessctl touches only USER assignments of the permission sets
its policies name, and only in accounts where a request is allowed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import GitRepo, run_cli

A, B, OUTSIDE = "111111111111", "222222222222", "999999999999"
ALICE, CAROL = "alice@example.com", "carol@example.com"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[AwsSandbox]:
    with AwsSandbox() as box:
        yield box


@pytest.fixture
def seeded(sandbox: AwsSandbox) -> SeededInstance:
    sandbox.reset()
    return sandbox.seed(
        users=[ALICE, CAROL],
        permission_sets={"ReadOnly": "PT1H", "BreakGlass": "PT1H"},
        groups=["ops"],
    )


def policy(seeded: SeededInstance) -> str:
    s = seeded.provider_settings()
    return f"""\
policies:
  - name: aws-read
    provider: aws
    scopes: ['1111*', '{B}']
    roles: [ReadOnly]
    requesters: [alice, carol]
    approvers: [erin]
    approvals: 0
    max_duration: 8h
identities:
  alice: {{aws: {ALICE}}}
  carol: {{aws: {CAROL}}}
providers:
  aws: {{instance_arn: "{s["instance_arn"]}", identity_store_id: {s["identity_store_id"]}, region: {s["region"]}}}
"""


def req(account: str, role: str = "ReadOnly", login: str = "alice") -> str:
    return (
        f"requester: {login}\nprovider: aws\nscope: {account}\nrole: {role}\n"
        "reason: Investigate INC-4821, slow checkout\nduration: 2h\n"
    )


def test_only_owned_user_assignments_in_covered_accounts_move(
    tmp_path: Path, sandbox: AwsSandbox, seeded: SeededInstance
) -> None:
    sandbox.assign(seeded, A, "BreakGlass", ALICE)  # not named in policies: never touched
    sandbox.assign(seeded, B, "ReadOnly", "ops")  # a GROUP assignment: never touched
    # An owned set in an account no policy covers: owned everywhere (SPEC 6), so revoked
    # once accessctl looks there (a request names it).
    sandbox.assign(seeded, OUTSIDE, "ReadOnly", CAROL)
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        {
            "policies/p.yaml": policy(seeded),
            "requests/alice/outside.yaml": req(f"'{OUTSIDE}'"),  # owned set, uncovered account
            "requests/alice/breakglass.yaml": req(f"'{A}'", role="BreakGlass"),
            "requests/alice/newline.yaml": req('"111111111111\\n"'),  # glob would match it
            "requests/alice/ok.yaml": req(f"'{A}'"),
        }
    )
    env = {**sandbox.env(), "GITHUB_TOKEN": "", "GITHUB_REPOSITORY": ""}
    args = ["apply", "--repo", str(repo.root), "--trust-git", "--no-ledger", "--format", "json"]
    result = run_cli(*args, env=env)
    assert result.code == 1  # the three bad requests are reported
    out = result.json
    assert [(g["request"], g["scope"]) for g in out["grant"]] == [("requests/alice/ok.yaml", A)]
    assert [(g["scope"], g["principal"]) for g in out["revoke"]] == [(OUTSIDE, CAROL)]
    assert sandbox.assignments(seeded, A) == {
        ("BreakGlass", "USER", ALICE),
        ("ReadOnly", "USER", ALICE),
    }
    assert sandbox.assignments(seeded, B) == {("ReadOnly", "GROUP", "ops")}
    assert sandbox.assignments(seeded, OUTSIDE) == set()  # and alice got nothing there
    assert sandbox.assignments(seeded, "111111111111\n") == set()


def test_github_down_never_keeps_an_aws_assignment_past_its_request_window(
    tmp_path: Path, sandbox: AwsSandbox, seeded: SeededInstance
) -> None:
    from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator

    repo = GitRepo(tmp_path / "repo")
    repo.commit({"policies/p.yaml": policy(seeded)})
    # merged three hours ago for two hours (git's merge time; GitHub cannot say right now)
    path = "requests/alice/inc-1.yaml"
    when = (datetime.now(UTC) - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    repo.commit({path: req(f"'{A}'")}, "request (#1)", date=when)
    sandbox.assign(seeded, A, "ReadOnly", ALICE)  # granted back then
    with GitHubEmulator() as gh:
        gh.add_repo("acme/access")
        gh.fail(r"^GET /repos/acme/access/commits/", 503, times=1000)
        env = {
            **sandbox.env(),
            "GITHUB_API_URL": gh.url,
            "GITHUB_TOKEN": DEFAULT_TOKEN,
            "GITHUB_REPOSITORY": "acme/access",
            "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        }
        args = ["apply", "--repo", str(repo.root), "--no-ledger", "--format", "json"]
        result = run_cli(*args, env=env, timeout=120)
    assert sandbox.assignments(seeded, A) == set(), result.stdout
