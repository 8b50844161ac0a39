"""Fixtures for black-box CLI tests: real git repos in tmp dirs, the installed CLI, emulators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import support
from tests.e2e.independent_gcp import IndependentGcp

ROOT = Path(__file__).resolve().parents[2]
_VENV_CLI = ROOT / ".venv" / "bin" / "accessctl"
CLI = str(_VENV_CLI) if _VENV_CLI.exists() else str(Path(sys.executable).parent / "accessctl")

POLICIES = """\
policies:
  - name: payments-db-read
    description: Read payments production data while on call
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer, roles/logging.viewer]
    requesters: [team:payments-oncall, bob]
    approvers: [team:payments-leads]
    approvals: 1
    max_duration: 4h
    ticket: '^(INC|CHG)-[0-9]+$'
  - name: payments-nonprod
    description: Debug payments non-prod projects
    provider: gcp
    scopes: ['projects/payments-*', 'folders/1234567']
    roles: [roles/logging.viewer, roles/monitoring.viewer]
    requesters: [team:payments-oncall]
    approvers: [team:payments-leads]
    approvals: 0
    max_duration: 1d
  - name: payments-aws-debug
    description: Inspect the payments AWS account during an incident
    provider: aws
    scopes: ['111122223333']
    roles: [ReadOnlyAccess]
    requesters: [team:payments-oncall]
    approvers: [team:payments-leads]
    approvals: 1
    max_duration: 8h
teams:
  payments-oncall: [alice, carol]
  payments-leads: [dave, erin]
identities:
  alice: {gcp: user:alice@example.com, aws: alice}
  bob: {gcp: user:bob@example.com, aws: bob}
  carol: {gcp: user:carol@example.com, aws: carol}
providers:
  aws: {instance_arn: "arn:aws:sso:::instance/ssoins-1111111111111111", identity_store_id: d-1111111111, region: us-east-1}
  gcp: {}
"""


def request_yaml(
    requester: str = "alice",
    scope: str = "projects/payments-prod",
    role: str = "roles/cloudsql.viewer",
    provider: str = "gcp",
    extra: str = "duration: 2h\n",
    ticket: str | None = "INC-4821",
) -> str:
    text = (
        f"requester: {requester}\nprovider: {provider}\nscope: {scope}\nrole: {role}\n"
        "reason: Investigate INC-4821, slow checkout queries\n"
    )
    if ticket:
        text += f"ticket: {ticket}\n"
    return text + extra


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user with no GitHub/cloud credentials and nothing pinned."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GITHUB_", "ACCESSCTL_", "AWS_", "GOOGLE_", "CLOUDSDK_", "PYTEST"))
        and k not in ("CI",)
    }
    env["HOME"] = env.get("HOME", "/tmp")
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 30
) -> Result:
    proc = subprocess.run(
        [CLI, *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return Result(proc.returncode, proc.stdout, proc.stderr)


class GitRepo(support.GitRepo):
    """A repo the test initialises itself; git runs in the clean user environment, and
    ``env`` is what the CLI gets on top of it (see ``run``)."""

    def __init__(self, path: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(path, init=False)
        self.env = env if env is not None else {}

    def base_env(self) -> dict[str, str]:
        return clean_env()

    def git(self, *args: str, date: str | None = None, author: str = "alice") -> str:
        return self.run_git(*args, author=author, date=date)

    def write(self, rel: str, text: str | bytes) -> Path:  # type: ignore[override]
        return self.write_file(rel, text)

    def commit(  # type: ignore[override]  # e2e tests pass the message first
        self, message: str, date: str, author: str = "alice", paths: tuple[str, ...] = (".",)
    ) -> str:
        self.run_git("add", "-A", *paths)
        return self.commit_staged(message, author=author, date=date)

    def remove(self, rel: str) -> None:
        self.run_git("rm", "-q", rel)

    def run(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        return run_cli(
            *args, cwd=cwd or self.path, env=env if env is not None else clean_env(**self.env)
        )


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    path = tmp_path / "access"
    path.mkdir()
    r = GitRepo(path)
    r.git("init", "-q", "-b", "main")
    r.write("policies/main.yaml", POLICIES)
    r.write("requests/README.md", "How to ask for access.\n")
    r.commit("policies", "2026-11-01T00:00:00Z", author="erin")
    return r


@pytest.fixture
def gcp() -> Iterator[IndependentGcp]:
    emu = IndependentGcp().start()
    try:
        yield emu
    finally:
        emu.stop()


# GCP-only policies: the example content minus the AWS policy and provider settings.
GCP_POLICIES = (
    POLICIES.split("  - name: payments-aws-debug", maxsplit=1)[0]
    + "teams:"
    + POLICIES.split("teams:")[1].split("providers:", maxsplit=1)[0]
    + "providers:\n  gcp: {}\n"
)


@pytest.fixture
def gcp_repo(tmp_path: Path, gcp: IndependentGcp) -> GitRepo:
    path = tmp_path / "access"
    path.mkdir()
    r = GitRepo(path, env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    r.git("init", "-q", "-b", "main")
    r.write("policies/main.yaml", GCP_POLICIES)
    r.write("requests/README.md", "How to ask for access.\n")
    r.commit("policies", "2026-11-01T00:00:00Z", author="erin")
    return r
