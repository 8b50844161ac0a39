"""Fixtures for review requests and request-waiting: ``accessctl pr-check`` in a subprocess
as Actions runs it, the GitHub emulator over HTTP (PyGithub on both sides), a real git
clone, and a local HTTP receiver for the webhook sink."""

from __future__ import annotations

from pathlib import Path

import pytest
from github import Auth, Github
from github.Repository import Repository

from reconciler.sandbox.github_emulator import GitHubEmulator
from tests.github.conftest import REPO, GitRepo, emulator, git_repo, github_env  # noqa: F401
from tests.github.test_pr_check import MINE, Run, Scenario, request
from tests.notifications.conftest import receiver  # noqa: F401 - a fixture pytest finds by name

__all__ = ["MINE", "REPO", "Run", "person", "request"]

POLICIES = """\
policies:
  - name: payments-db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [team:payments-oncall]
    approvers: {approvers}
    approvals: 1
    max_duration: 4h
    ticket: '^INC-[0-9]+$'
teams:
  payments-oncall: [alice, carol]
  payments-leads: [dave, erin]
identities:
  alice: {{gcp: user:alice@example.com}}
  carol: {{gcp: user:carol@example.com}}
providers:
  gcp: {{}}
"""
LEADS = "[team:payments-leads]"
SECRET = "request-waiting-secret-7"
HOOK = """\
notifications:
  - type: webhook
    url_env: ACCESSCTL_TEST_WEBHOOK
    secret_env: ACCESSCTL_TEST_SECRET
"""


class Asking(Scenario):
    """A pull request by alice against policies whose ``approvers`` the test chooses."""

    def policies(self, approvers: str = LEADS, extra: str = "") -> None:
        self.main({"policies/p.yaml": POLICIES.format(approvers=approvers) + extra})

    def requested(self) -> tuple[list[str], list[str]]:
        """(logins, team slugs) whose review GitHub has open now."""
        return self.emulator.requested_reviewers(REPO, self.number)

    def posts(self) -> int:
        return self.emulator.calls["POST /repos/{o}/{r}/pulls/{n}/requested_reviewers"]

    def event_reads(self) -> int:
        return self.emulator.calls["GET /repos/{o}/{r}/issues/{n}/events"]


@pytest.fixture
def pr(emulator, git_repo, github_env, tmp_path: Path) -> Asking:  # noqa: F811
    return Asking(emulator, git_repo, github_env, tmp_path)


def person(emulator: GitHubEmulator, login: str) -> Repository:  # noqa: F811
    """The repository as ``login`` sees it through PyGithub with their own token."""
    token = f"token-of-{login}"
    emulator.add_token(token, login)
    return Github(base_url=emulator.url, auth=Auth.Token(token), lazy=True).get_repo(REPO)
