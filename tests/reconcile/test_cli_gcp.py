"""`accessctl plan/apply --trust-git` end to end: real git repos, the GCP emulator over HTTP
through the real google client, assertions on exit codes, output and what the cloud holds."""

from __future__ import annotations

import copy

from reconciler.core.timeutil import format_rfc3339
from tests.support.titles import legacy, title

from .conftest import PROJECTS, T0, H, managed, request_yaml, unmanaged

ALICE = "requests/alice/inc-4821.yaml"
BOB = "requests/bob/inc-1.yaml"


def test_apply_grants_then_second_run_writes_nothing(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice: cloudsql viewer", at=T0)

    first = run_cli("apply", "--trust-git", at=T0 + H / 6)
    assert first.exit_code == 0, first.output
    assert "+ grant" in first.stdout and ALICE in first.stdout
    (binding,) = managed(emulator, "projects/app-prod-a")
    assert binding["role"] == "roles/cloudsql.viewer"
    assert binding["members"] == ["user:alice@example.com"]
    assert binding["condition"]["title"] == title(ALICE)
    end = format_rfc3339(T0 + 2 * H)
    assert binding["condition"]["expression"] == f'request.time < timestamp("{end}")'
    assert emulator.writes() == 1

    emulator.reset_counters()
    second = run_cli("apply", "--trust-git", at=T0 + H / 3)
    assert second.exit_code == 0, second.output
    assert "No changes" in second.stdout
    assert emulator.writes() == 0
    assert emulator.reads() == len(PROJECTS)  # one read per scope, nothing more


def test_plan_json_follows_the_spec_and_changes_nothing(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    result = run_cli("plan", "--trust-git", "--format", "json", at=T0 + H)
    assert result.exit_code == 0, result.output
    payload = result.json()
    assert set(payload) == {"grant", "revoke", "keep", "errors"}
    assert payload["grant"] == [
        {
            "request": ALICE,
            "principal": "user:alice@example.com",
            "provider": "gcp",
            "scope": "projects/app-prod-a",
            "role": "roles/cloudsql.viewer",
            "begin": format_rfc3339(T0),
            "end": format_rfc3339(T0 + 2 * H),
        }
    ]
    assert payload["revoke"] == payload["keep"] == payload["errors"] == []
    assert emulator.writes() == 0
    assert managed(emulator, "projects/app-prod-a") == []


def test_expiry_revokes_on_a_later_run(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml(duration="1h"))
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + H / 2).exit_code == 0
    assert len(managed(emulator, "projects/app-prod-a")) == 1

    later = run_cli("apply", "--trust-git", at=T0 + 2 * H)
    assert later.exit_code == 0, later.output
    assert "- revoke" in later.stdout and "expired at" in later.stdout
    assert managed(emulator, "projects/app-prod-a") == []


def test_deleting_the_file_revokes_early(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml(duration="4h"))
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + H).exit_code == 0
    access_repo.remove(ALICE)
    access_repo.commit("done early", at=T0 + 2 * H)

    result = run_cli("apply", "--trust-git", "--format", "json", at=T0 + 2 * H)
    assert result.exit_code == 0, result.output
    payload = result.json()
    assert [g["request"] for g in payload["revoke"]] == [ALICE]
    assert [r["ok"] for r in payload["results"]] == [True]
    assert "request file deleted" in payload["results"][0]["reason"]
    assert managed(emulator, "projects/app-prod-a") == []


def test_moved_request_is_revoked_in_its_old_scope(run_cli, access_repo, emulator) -> None:
    """Editing a request to another scope: the old binding is found through git history."""
    access_repo.write(ALICE, request_yaml(scope="projects/app-prod-a", duration="4h"))
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + H).exit_code == 0
    access_repo.write(ALICE, request_yaml(scope="projects/app-prod-b", duration="4h"))
    access_repo.commit("alice moves", at=T0 + 2 * H)

    result = run_cli("apply", "--trust-git", at=T0 + 2 * H)
    assert result.exit_code == 0, result.output
    assert managed(emulator, "projects/app-prod-a") == []
    (binding,) = managed(emulator, "projects/app-prod-b")
    # An edit is a new request: its window starts at the new merge.
    assert format_rfc3339(T0 + 6 * H) in binding["condition"]["expression"]


def test_future_window_is_bound_in_the_condition(run_cli, access_repo, emulator) -> None:
    start = T0 + 24 * H
    access_repo.write(ALICE, request_yaml(start=start, duration="2h"))
    access_repo.commit("alice tomorrow", at=T0)

    result = run_cli("apply", "--trust-git", at=T0 + H)
    assert result.exit_code == 0, result.output
    (binding,) = managed(emulator, "projects/app-prod-a")
    expression = binding["condition"]["expression"]
    assert f'request.time >= timestamp("{format_rfc3339(start)}")' in expression
    assert f'request.time < timestamp("{format_rfc3339(start + 2 * H)}")' in expression

    emulator.reset_counters()
    during = run_cli("apply", "--trust-git", at=start + H)
    assert during.exit_code == 0, during.output
    assert emulator.writes() == 0  # the begin bound is harmless once passed: no rewrite


def test_unmanaged_and_other_tools_bindings_survive(run_cli, access_repo, emulator) -> None:
    foreign = {
        "version": 3,
        "bindings": [
            {"role": "roles/cloudsql.viewer", "members": ["user:alice@example.com"]},
            {"role": "roles/owner", "members": ["user:root@example.com"]},
            {
                "role": "roles/cloudsql.viewer",
                "members": ["user:zed@example.com"],
                "condition": {
                    "title": "other-tool:breakglass",
                    "expression": 'request.time < timestamp("2030-01-01T00:00:00Z")',
                },
            },
        ],
        "auditConfigs": [{"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}],
    }
    emulator.set_policy("projects/app-prod-a", foreign)
    before = copy.deepcopy(emulator.get_policy("projects/app-prod-a"))
    access_repo.write(ALICE, request_yaml(duration="1h"))
    access_repo.commit("alice", at=T0)

    assert run_cli("apply", "--trust-git", at=T0 + H / 2).exit_code == 0
    assert run_cli("apply", "--trust-git", at=T0 + 2 * H).exit_code == 0  # expiry
    after = emulator.get_policy("projects/app-prod-a")
    assert unmanaged(emulator, "projects/app-prod-a") == before["bindings"]
    assert after["auditConfigs"] == before["auditConfigs"]
    assert managed(emulator, "projects/app-prod-a") == []


def test_conflict_is_retried_without_losing_the_concurrent_change(
    run_cli, access_repo, emulator
) -> None:
    def concurrent_writer(policy: dict) -> dict:
        policy.setdefault("bindings", []).append(
            {"role": "roles/browser", "members": ["user:ops@example.com"]}
        )
        return policy

    emulator.conflict_next("projects/app-prod-a", count=2, mutate=concurrent_writer)
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)

    result = run_cli("apply", "--trust-git", at=T0 + H)
    assert result.exit_code == 0, result.output
    roles = [b["role"] for b in emulator.get_policy("projects/app-prod-a")["bindings"]]
    # Both concurrent writes survive, and ours landed on top of them.
    assert roles.count("roles/browser") == 2
    assert len(managed(emulator, "projects/app-prod-a")) == 1
    assert emulator.writes("projects/app-prod-a") == 3


def test_one_scope_down_others_converge(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml(scope="projects/app-prod-a"))
    access_repo.write(BOB, request_yaml(requester="bob", scope="projects/app-prod-b"))
    access_repo.commit("two requests", at=T0)
    emulator.fail_next("projects/app-prod-b", status=503, count=None)

    result = run_cli("apply", "--trust-git", at=T0 + H)
    assert result.exit_code == 1, result.output
    assert "projects/app-prod-b" in result.stdout
    assert len(managed(emulator, "projects/app-prod-a")) == 1

    emulator.heal("projects/app-prod-b")
    again = run_cli("apply", "--trust-git", at=T0 + H)
    assert again.exit_code == 0, again.output
    assert len(managed(emulator, "projects/app-prod-b")) == 1


def test_unreadable_scope_revokes_nothing(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml(duration="1h"))
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + H / 2).exit_code == 0
    # 403 (no retries, so the test is quick): the scope cannot be read at all.
    emulator.fail_next("projects/app-prod-a", status=403, count=None, method="get")

    result = run_cli("plan", "--trust-git", "--format", "json", at=T0 + 2 * H)
    assert result.exit_code == 1
    payload = result.json()
    assert payload["revoke"] == []
    assert [e["scope"] for e in payload["errors"]] == ["projects/app-prod-a"]


def test_invalid_request_grants_nothing_and_names_the_file(run_cli, access_repo, emulator) -> None:
    bad = "requests/bob/bad.yaml"
    access_repo.write(ALICE, request_yaml())
    access_repo.write(bad, request_yaml(requester="bob") + "colour: blue\n")
    access_repo.commit("good and bad", at=T0)

    result = run_cli("apply", "--trust-git", "--format", "json", at=T0 + H)
    assert result.exit_code == 1, result.output
    payload = result.json()
    assert [g["request"] for g in payload["grant"]] == [ALICE]
    assert any(e["file"] == bad and e["line"] for e in payload["errors"])
    assert [b["members"] for b in managed(emulator, "projects/app-prod-a")] == [
        ["user:alice@example.com"]
    ]


def test_refused_request_grants_nothing(run_cli, access_repo, emulator) -> None:
    eve = "requests/eve/inc-1.yaml"
    access_repo.write(eve, request_yaml(requester="eve"))
    access_repo.commit("eve tries", at=T0)
    result = run_cli("apply", "--trust-git", at=T0 + H)
    assert result.exit_code == 1
    assert eve in result.stdout
    assert managed(emulator, "projects/app-prod-a") == []


def test_too_long_request_grants_nothing(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml(duration="1d"))
    access_repo.commit("alice, too long", at=T0)
    result = run_cli("apply", "--trust-git", at=T0 + H)
    assert result.exit_code == 1
    assert managed(emulator, "projects/app-prod-a") == []


def test_without_github_credentials_exit_2(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)
    for command in ("plan", "apply"):
        result = run_cli(command, at=T0 + H)
        assert result.exit_code == 2
        assert "GITHUB_TOKEN" in result.stderr and "--trust-git" in result.stderr
        assert "Traceback" not in result.output
    assert emulator.reads() == emulator.writes() == 0


def test_broken_policies_change_nothing(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml(duration="4h"))
    access_repo.commit("alice", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + H).exit_code == 0
    access_repo.write("policies/access.yaml", "policies: [\n")
    access_repo.commit("oops", at=T0 + 2 * H)

    result = run_cli("apply", "--trust-git", at=T0 + 2 * H)
    assert result.exit_code == 2
    assert "policies/access.yaml" in result.stderr
    assert len(managed(emulator, "projects/app-prod-a")) == 1


def test_not_a_git_repository_exit_2(tmp_path, emulator) -> None:
    from click.testing import CliRunner

    from reconciler.cli import cli

    result = CliRunner().invoke(
        cli,
        ["plan", "--trust-git", "--repo", str(tmp_path)],
        env={"ACCESSCTL_GCP_ENDPOINT": emulator.url},
    )
    assert result.exit_code == 2
    assert "not a git repository" in result.stderr


def test_github_format_writes_summary_and_annotations(
    run_cli, access_repo, emulator, tmp_path
) -> None:
    summary = tmp_path / "summary.md"
    access_repo.write(ALICE, request_yaml(reason="Investigate <b>INC</b> @everyone `x`"))
    access_repo.write("requests/eve/inc-1.yaml", request_yaml(requester="eve"))
    access_repo.commit("requests", at=T0)

    result = run_cli(
        "apply",
        "--trust-git",
        "--format",
        "github",
        at=T0 + H,
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.exit_code == 1
    assert "::error file=requests/eve/inc-1.yaml" in result.stdout
    text = summary.read_text()
    # the principal is shown, with a zero-width space after "@" so it never mentions anyone
    assert "| + grant |" in text and "user:alice@\u200bexample.com" in text
    assert "<b>" not in text and "@everyone" not in text


def test_policy_scope_nobody_uses_is_only_a_warning_when_unreadable(
    run_cli, access_repo, emulator
) -> None:
    access_repo.write(ALICE, request_yaml(scope="projects/app-prod-a"))
    access_repo.commit("alice", at=T0)
    emulator.fail_next("projects/app-prod-c", status=403, count=None)

    result = run_cli("apply", "--trust-git", "--format", "json", at=T0 + H)
    assert result.exit_code == 0, result.output
    assert result.json()["errors"] == []
    assert "warning:" in result.stderr and "projects/app-prod-c" in result.stderr
    assert len(managed(emulator, "projects/app-prod-a")) == 1


def test_tampered_and_orphaned_managed_bindings_are_fixed(run_cli, access_repo, emulator) -> None:
    def binding(name: str, expression: str, member: str = "user:alice@example.com") -> dict:
        return {
            "role": "roles/cloudsql.viewer",
            "members": [member],
            "condition": {"title": name, "expression": expression},
        }

    untraced = binding(
        legacy("requests/mallory/ghost.yaml"),
        'request.time < timestamp("2030-01-01T00:00:00Z")',
        "user:mallory@example.com",
    )
    emulator.set_policy(
        "projects/app-prod-a",
        {
            "bindings": [
                # our binding, but someone widened its expression: unreadable, so replaced
                binding(title(ALICE), "true"),
                # this deployment's binding whose request never existed on this branch
                binding(
                    title("requests/mallory/ghost.yaml"),
                    'request.time < timestamp("2030-01-01T00:00:00Z")',
                    "user:mallory@example.com",
                ),
                # an old-style title naming no request this repository ever had: not
                # provably ours (another deployment's, or by hand), so left alone
                untraced,
            ]
        },
    )
    access_repo.write(ALICE, request_yaml())
    access_repo.commit("alice", at=T0)

    result = run_cli("apply", "--trust-git", at=T0 + H)
    assert result.exit_code == 0, result.output
    assert "request file deleted" in result.stdout
    held = managed(emulator, "projects/app-prod-a")
    assert untraced in held
    (only,) = [b for b in held if b != untraced]
    assert only["members"] == ["user:alice@example.com"]
    assert only["condition"]["title"] == title(ALICE)
    end = format_rfc3339(T0 + 2 * H)
    assert only["condition"]["expression"] == f'request.time < timestamp("{end}")'
    assert emulator.writes() == 1


def test_unreadable_scope_of_a_recent_deletion_fails_the_run_old_ones_warn(
    run_cli, access_repo, emulator
) -> None:
    """A deleted request whose grant the ledger recorded and never revoked: its scope
    unreadable is an error (a revocation is pending there) for 30 days, then a warning."""
    access_repo.write(BOB, request_yaml(requester="bob", scope="projects/app-prod-b"))
    access_repo.commit("bob asks", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + H / 12).exit_code == 0  # granted, recorded
    access_repo.remove(BOB)
    access_repo.commit("bob is done", at=T0 + H)
    emulator.fail_next("projects/app-prod-b", status=403, count=None)  # the project is gone

    recent = run_cli("apply", "--trust-git", "--format", "json", at=T0 + 2 * H)
    assert recent.exit_code == 1
    assert [e["code"] for e in recent.json()["errors"]] == ["E-SCOPE-UNREADABLE"]

    later = run_cli("apply", "--trust-git", "--format", "json", at=T0 + 24 * 40 * H)
    assert later.exit_code == 0, later.output
    assert later.json()["errors"] == []
    assert "W-SCOPE-UNREADABLE" in later.stderr


def test_unreadable_scope_of_a_version_that_never_granted_only_warns(
    run_cli, access_repo, emulator
) -> None:
    """An edited or deleted version the reconciler never granted (e.g. an unapproved commit
    inside a rebased pull request) cannot turn every run red for 30 days."""
    access_repo.write(BOB, request_yaml(requester="bob", scope="projects/app-prod-d"))
    access_repo.commit("bob asks for a project that does not exist", at=T0)
    access_repo.remove(BOB)
    access_repo.commit("bob is done", at=T0 + H)
    recent = run_cli("apply", "--trust-git", "--format", "json", at=T0 + 2 * H)
    assert recent.exit_code == 0, recent.output
    assert "W-SCOPE-UNREADABLE" in recent.stderr


def test_requests_past_their_window_are_not_problems(run_cli, access_repo, emulator) -> None:
    access_repo.write(ALICE, request_yaml(duration=None, expires=T0 + H))
    access_repo.write(BOB, request_yaml(requester="bob", duration="1h"))
    access_repo.commit("two short requests", at=T0)
    assert run_cli("apply", "--trust-git", at=T0 + H / 2).exit_code == 0
    result = run_cli("apply", "--trust-git", "--format", "json", at=T0 + 5 * H)
    assert result.exit_code == 0, result.output
    payload = result.json()
    assert payload["errors"] == [] and len(payload["revoke"]) == 2
    assert managed(emulator, "projects/app-prod-a") == []
    again = run_cli("plan", "--trust-git", "--format", "json", at=T0 + 48 * H)
    assert again.exit_code == 0 and again.json() == {
        "grant": [],
        "revoke": [],
        "keep": [],
        "errors": [],
    }
