"""The CLI surface: --help everywhere, usage errors are exit 2, mixed-provider repos."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import GitRepo, clean_env, request_yaml, run_cli
from tests.e2e.independent_gcp import IndependentGcp
from tests.support.titles import title

COMMANDS = ["validate", "pr-check", "plan", "apply", "status", "audit", "request", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help(command: str, tmp_path) -> None:
    res = run_cli(command, "--help", cwd=tmp_path)
    assert res.code == 0, res
    assert "--help" in res.out
    if command not in ("demo",):
        assert "--repo" in res.out
        assert "--format" in res.out


def test_top_level_help_lists_commands(tmp_path) -> None:
    res = run_cli("--help", cwd=tmp_path)
    assert res.code == 0
    for command in COMMANDS:
        assert command in res.out


@pytest.mark.parametrize(
    "args",
    [
        ["nonsense"],
        ["validate", "--format", "yaml"],
        ["plan", "--no-such-flag"],
        ["status", "--at", "yesterday"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path) -> None:
    assert run_cli(*args, cwd=tmp_path).code == 2


def test_not_a_repo_is_exit_2(tmp_path) -> None:
    for cmd in (["plan", "--trust-git"], ["status", "--trust-git"], ["audit", "--trust-git"]):
        res = run_cli(*cmd, "--format", "json", cwd=tmp_path)
        assert res.code == 2, (cmd, res)
        assert res.err.strip()


def test_pr_check_outside_actions_is_exit_2(repo: GitRepo) -> None:
    res = repo.run("pr-check")
    assert res.code == 2, res
    assert "GITHUB_EVENT_PATH" in res.err or "event" in res.err.lower()


def test_gcp_converges_when_policies_also_name_aws(repo: GitRepo, gcp: IndependentGcp) -> None:
    """The example policies carry an AWS policy; a GCP-only setup (no AWS credentials) must
    still grant on GCP: one unusable provider never blocks the others (SPEC §6)."""
    repo.write("requests/alice/inc-1.yaml", request_yaml())
    repo.commit("request", "2026-12-01T09:00:00Z")
    env = clean_env(ACCESSCTL_GCP_ENDPOINT=gcp.url)
    res = run_cli(
        "apply",
        "--trust-git",
        "--at",
        "2026-12-01T10:00:00Z",
        "--format",
        "json",
        cwd=repo.path,
        env=env,
    )
    assert res.code in (0, 1), res
    titles = [b.get("condition", {}).get("title") for b in gcp.bindings("projects/payments-prod")]
    assert titles == [title("requests/alice/inc-1.yaml")]  # no origin: "default" deployment


def test_request_writes_a_valid_file(repo: GitRepo) -> None:
    res = repo.run(
        "request",
        "--provider",
        "gcp",
        "--scope",
        "projects/payments-prod",
        "--role",
        "roles/cloudsql.viewer",
        "--duration",
        "2h",
        "--reason",
        "Investigate INC-4821: slow checkout # not a comment",
        "--ticket",
        "INC-4821",
        "--requester",
        "alice",
        "--at",
        "2026-12-01T08:00:00Z",
    )
    assert res.code == 0, res
    written = list((repo.path / "requests" / "alice").glob("*.yaml"))
    assert len(written) == 1
    assert str(written[0].relative_to(repo.path)) in res.out
    check = repo.run("validate", "--format", "json", "--at", "2026-12-01T08:00:00Z")
    assert check.code == 0, check
    assert check.json()["requests"][0]["policy"] == "payments-db-read"
    import yaml

    assert (
        yaml.safe_load(written[0].read_text())["reason"]
        == "Investigate INC-4821: slow checkout # not a comment"
    )
    # refused by policy: nothing written, exit 1
    res = repo.run(
        "request",
        "--provider",
        "gcp",
        "--scope",
        "projects/payments-prod",
        "--role",
        "roles/cloudsql.viewer",
        "--duration",
        "9h",
        "--reason",
        "Investigate INC-4821 for longer",
        "--ticket",
        "INC-4821",
        "--requester",
        "alice",
        "--slug",
        "too-long",
        "--at",
        "2026-12-01T08:00:00Z",
    )
    assert res.code == 1, res
    assert not (repo.path / "requests" / "alice" / "too-long.yaml").exists()


@pytest.mark.parametrize("command", ["validate", "status", "audit"])
def test_accessctl_now_is_at(repo: GitRepo, command: str) -> None:
    repo.write("requests/alice/inc-1.yaml", request_yaml(extra="duration: 1h\n"))
    repo.commit("request", "2026-12-01T09:00:00Z")
    extra = [] if command == "validate" else ["--trust-git"]
    late = "2026-12-01T12:00:00Z"
    by_flag = repo.run(command, *extra, "--format", "json", "--at", late)
    by_env = repo.run(command, *extra, "--format", "json", env=clean_env(ACCESSCTL_NOW=late))
    assert (by_flag.code, by_flag.json()) == (by_env.code, by_env.json())
    # --at wins over the environment
    both = repo.run(
        command,
        *extra,
        "--format",
        "json",
        "--at",
        late,
        env=clean_env(ACCESSCTL_NOW="2026-12-01T09:30:00Z"),
    )
    assert (both.code, both.json()) == (by_flag.code, by_flag.json())
