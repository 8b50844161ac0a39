"""Attacks on GCP bindings shared by several requests (same role, member and window): a
description that reads differently than it was written (request paths or a deployment
name carrying its syntax), revoking one request taking the other's access with it, and
bindings of another deployment (or forged ones) naming our request paths. What the GCP
emulator holds, the ledger's lines and the CLI's verdicts are asserted. Real git, the
GitHub and GCP emulators over HTTP, the CLI in a subprocess."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.github_emulator import GitHubEmulator
from tests.breakglass.conftest import POLICY, REPO, SCOPE, T0, Access, M, request
from tests.notifications.conftest import Receiver, receiver

from .conftest import World, run_cli

__all__ = ["receiver"]  # the webhook receiver fixture, found by name

FIRST = "requests/alice/inc-4821.yaml"
SECOND = "requests/alice/inc-4821-logs.yaml"
ALICE = "user:alice@example.com"
END = 'request.time < timestamp("2026-12-01T10:00:00Z")'  # a 1h window merged at T0


def tag(deployment: str) -> str:
    return hashlib.sha256(deployment.encode()).hexdigest()[:8]


def normal(duration: str = "1h") -> str:
    return request(duration=duration, break_glass=False)


def ours(gcp: GcpEmulator, deployment: str) -> list[dict]:
    prefix = f"accessctl:{tag(deployment)}:"
    return [
        b
        for b in gcp.get_policy(SCOPE).get("bindings", [])
        if b.get("condition", {}).get("title", "").startswith(prefix)
    ]


# A deployment name is free text (printable ASCII): here one that reads like the rest of
# a shared binding's description, naming our first request and a pull request of its own.
CRAFTED = "acme/access; for requests/alice/inc-4821.yaml via PR #99"


@pytest.fixture
def crafted(tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver) -> Access:
    policy = POLICY.replace("  gcp: {}", f'  gcp: {{deployment: "{CRAFTED}"}}')
    assert CRAFTED in policy
    return Access(tmp_path, github, gcp, receiver, policy=policy)


def test_deleting_one_request_of_a_shared_binding_keeps_the_other(crafted: Access) -> None:
    """Two approved requests of alice, merged together, share one binding. She deletes the
    first early: the revoke is traced to that request's own pull request (never the one
    the deployment name mentions), and the second keeps her access untouched."""
    access = crafted
    pr = access.ask({FIRST: normal(), SECOND: normal()}, at=T0, approved_by=("dave",))
    assert access.apply(at=T0 + 5 * M).code == 0
    [shared] = ours(access.gcp, CRAFTED)
    assert shared["members"] == [ALICE]
    assert shared["condition"]["description"] == (
        f"accessctl grant for {SECOND} via PR #{pr}; for {FIRST} via PR #{pr}; deployment {CRAFTED}"
    )

    number, branch = access.open_pr({FIRST: None}, at=T0 + 20 * M)
    access.merge(number, branch, at=T0 + 20 * M)
    applied = access.apply(at=T0 + 25 * M)
    assert applied.code == 0, applied.output
    assert [(r["action"], r["request"]) for r in applied.json["results"]] == [("revoke", FIRST)]
    [kept] = ours(access.gcp, CRAFTED)
    assert kept["members"] == [ALICE]
    assert kept["condition"]["title"] == f"accessctl:{tag(CRAFTED)}:{SECOND}"
    assert kept["condition"]["description"] == (
        f"accessctl grant for {SECOND} via PR #{pr}; deployment {CRAFTED}"
    )
    assert kept["condition"]["expression"] == END
    [revoke] = [x for x in access.ledger_lines() if x["action"] == "revoke"]
    assert (revoke["request"], revoke["pr"]) == (FIRST, pr)
    assert access.status(at=T0 + 30 * M)[SECOND]["state"] == "active"
    # Nothing more to do: the rewritten binding reads back as the one grant it holds.
    again = access.apply(at=T0 + 30 * M)
    assert again.code == 0 and again.json["results"] == []


def test_other_and_forged_bindings_naming_our_paths_never_move(
    tmp_path: Path, github: GitHubEmulator, gcp: GcpEmulator, receiver: Receiver
) -> None:
    """Beside alice's grant: another deployment's binding for the same role, member and
    window whose description names our request paths (never joined, never removed), and a
    binding with our tag and path granting mallory (never ours to keep: revoked)."""
    other = "acme/infra-access"
    theirs = {
        "role": "roles/cloudsql.viewer",
        "members": [ALICE],
        "condition": {
            "title": f"accessctl:{tag(other)}:{FIRST}",
            "description": f"accessctl grant for {FIRST} via PR #1; for {SECOND}; deployment {REPO}",
            "expression": END,
        },
    }
    forged = {
        "role": "roles/cloudsql.viewer",
        "members": ["user:mallory@example.com"],
        "condition": {
            "title": f"accessctl:{tag(REPO)}:{FIRST}",
            "description": f"accessctl grant for {FIRST} via PR #1; deployment {REPO}",
            "expression": END,
        },
    }
    gcp.set_policy(SCOPE, {"bindings": [theirs, forged]})
    access = Access(tmp_path, github, gcp, receiver)
    access.ask({FIRST: normal()}, at=T0, approved_by=("dave",))

    applied = access.apply(at=T0 + 5 * M)
    assert applied.code == 0, applied.output
    actions = sorted((r["action"], r["principal"]) for r in applied.json["results"])
    assert actions == [("grant", ALICE), ("revoke", "user:mallory@example.com")]
    bindings = gcp.get_policy(SCOPE)["bindings"]
    assert theirs in bindings
    [mine] = ours(gcp, REPO)
    assert mine["members"] == [ALICE] and SECOND not in mine["condition"]["description"]

    number, branch = access.open_pr({FIRST: None}, at=T0 + 20 * M)
    access.merge(number, branch, at=T0 + 20 * M)
    assert access.apply(at=T0 + 25 * M).code == 0
    assert gcp.get_policy(SCOPE)["bindings"] == [theirs]


STRAYS = {
    "requests/alice/inc;for.yaml": "a semicolon",
    "requests/alice/inc via PR #9.yaml": "spaces and a PR number",
    "requests/alice/inc-4821.yaml;": "a trailing semicolon",
}


def test_request_paths_cannot_carry_description_syntax(world: World) -> None:
    """Files whose names would end a path early in a binding's description, or add a pull
    request to it, are never requests: validate names each; apply grants only the real
    request, and the description reads back as exactly that one."""
    content = request(duration="2h", break_glass=False)
    real = "requests/alice/inc-4821.yaml"
    files = dict.fromkeys(STRAYS, content) | {real: content}
    number, _ = world.open_pr(files)
    world.github.add_review(REPO, number, "dave", "APPROVED")
    world.squash(number, "pr1")

    checked = run_cli("validate", "--repo", str(world.repo.root), env=world.env)
    assert checked.code == 1, checked.stdout + checked.stderr
    for path in STRAYS:
        assert path in checked.stdout + checked.stderr
    applied = world.apply()
    out = applied.stdout + applied.stderr
    assert [(r["action"], r["request"]) for r in applied.json["results"]] == [("grant", real)]
    assert all(path in out for path in STRAYS)
    [binding] = world.gcp.get_policy(SCOPE)["bindings"]
    assert binding["members"] == [ALICE]
    assert binding["condition"]["description"] == (
        f"accessctl grant for {real} via PR #{number}; deployment {REPO}"
    )
    assert world.apply().json["results"] == []
