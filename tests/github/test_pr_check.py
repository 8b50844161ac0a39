"""``accessctl pr-check`` as Actions runs it: a subprocess with the event, the API
emulator over HTTP, and a real git clone holding the PR's base and head commits."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.core.prcheck import MARKER, STATUS_CONTEXT
from reconciler.sandbox.github_emulator import GitHubEmulator

from .conftest import REPO, GitRepo

ACCESSCTL = str(Path(sys.executable).parent / "accessctl")
NOW = "2026-12-01T08:00:00Z"

POLICIES = """\
policies:
  - name: payments-db-read
    provider: gcp
    scopes: [projects/payments-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [team:payments-oncall]
    approvers: [team:payments-leads]
    approvals: {approvals}
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


def request(
    requester: str = "alice",
    reason: str = "Investigate INC-4821, slow queries",
    ticket: str = "INC-4821",
) -> str:
    return (
        f"requester: {requester}\nprovider: gcp\nscope: projects/payments-prod\n"
        f"role: roles/cloudsql.viewer\nreason: {json.dumps(reason)}\n"
        f"ticket: {json.dumps(ticket)}\nduration: 2h\n"
    )


MINE = "requests/alice/inc-4821.yaml"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    summary: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)


class Scenario:
    """A base commit on main, a head commit on a branch, and the PR on the emulator."""

    def __init__(
        self, emulator: GitHubEmulator, repo: GitRepo, env: dict[str, str], tmp: Path
    ) -> None:
        self.emulator, self.repo, self.env, self.tmp = emulator, repo, env, tmp
        self.base = repo.commit({"policies/p.yaml": POLICIES.format(approvals=1)}, "policies")
        self.number = 0
        self.head = ""

    def main(self, files: dict[str, str | None]) -> None:
        """More commits on main before the PR branches off."""
        self.base = self.repo.commit(files, "main", author="admin")

    def open(
        self,
        files: dict[str, str | None],
        author: str = "alice",
        api_files: list[dict] | None = None,
    ) -> int:
        self.repo.checkout("pr", new=True)
        self.head = self.repo.commit(files, "request", author=author)
        self.number = self.emulator.add_pull(
            REPO,
            author=author,
            head_sha=self.head,
            base_sha=self.base,
            files=api_files or self.diff(),
        )
        return self.number

    def push(self, files: dict[str, str | None]) -> None:
        self.head = self.repo.commit(files, "more")
        self.emulator.push(REPO, self.number, self.head, files=self.diff())

    def diff(self) -> list[dict]:
        """The PR's files as GitHub lists them (renames detected)."""
        out = []
        for line in self.repo.git("diff", "--name-status", "-M", self.base, self.head).splitlines():
            status, *paths = line.split("\t")
            kind = {"A": "added", "D": "removed", "M": "modified"}.get(status[0], "renamed")
            entry = {"filename": paths[-1], "status": kind}
            if kind == "renamed":
                entry["previous_filename"] = paths[0]
            out.append(entry)
        return out

    def review(self, login: str, state: str = "APPROVED", **kw: object) -> int:
        return self.emulator.add_review(REPO, self.number, login, state, **kw)  # type: ignore[arg-type]

    def run(
        self,
        fmt: str = "json",
        event: str = "pull_request",
        payload: dict | None = None,
        extra: tuple[str, ...] = (),
    ) -> Run:
        event_path = self.tmp / "event.json"
        if payload is None:
            # The payload's author is a lie on purpose: pr-check must ask the API.
            pull = {"number": self.number, "user": {"login": "mallory"}}
            payload = {"action": "opened", "pull_request": pull}
            if event == "pull_request_review":
                payload = {"action": "submitted", "review": {"state": "approved"}, **payload}
        event_path.write_text(json.dumps(payload))
        summary = self.tmp / "summary.md"
        summary.write_text("")
        env = {
            **self.env,
            "GITHUB_EVENT_NAME": event,
            "GITHUB_EVENT_PATH": str(event_path),
            "GITHUB_STEP_SUMMARY": str(summary),
            "PATH": "/usr/bin:/bin",
        }
        proc = subprocess.run(
            [
                ACCESSCTL,
                "pr-check",
                "--repo",
                str(self.repo.root),
                "--format",
                fmt,
                "--at",
                NOW,
                *extra,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Run(proc.returncode, proc.stdout, proc.stderr, summary.read_text())

    @property
    def status(self) -> dict | None:
        return self.emulator.latest_status(REPO, self.head, STATUS_CONTEXT)

    @property
    def comments(self) -> list[dict]:
        return self.emulator.comments(REPO, self.number)


@pytest.fixture
def pr(
    emulator: GitHubEmulator, git_repo: GitRepo, github_env: dict[str, str], tmp_path: Path
) -> Scenario:
    return Scenario(emulator, git_repo, github_env, tmp_path)


# ----------------------------------------------------------------------------- approvals
def test_eligible_approval_on_head_passes(pr: Scenario) -> None:
    pr.open({MINE: request()})
    pr.review("dave")
    run = pr.run()
    assert run.code == 0, run.stdout + run.stderr
    assert run.json["state"] == "success"
    assert run.json["files"][0]["approvals"]["present"] == ["dave"]
    assert pr.status and pr.status["state"] == "success"
    [comment] = pr.comments
    assert comment["body"].startswith(MARKER) and "`payments-db-read`" in comment["body"]
    assert "accessctl: may merge" in run.summary


def test_a_status_that_cannot_be_set_does_not_change_the_verdict(pr: Scenario) -> None:
    """A fork's read-only token gets 403 on statuses: warn, still comment, exit by verdict."""
    pr.open({MINE: request()})
    pr.review("dave")
    pr.emulator.fail(r"POST /repos/.*/statuses/", 403, times=10, message="Resource not accessible")
    run = pr.run()
    assert run.code == 0, run.stdout + run.stderr
    assert "could not set the accessctl/approval status" in run.stderr
    assert pr.status is None
    assert len(pr.comments) == 1


def test_a_comment_that_cannot_be_written_fails_the_step_but_keeps_the_verdict(
    pr: Scenario,
) -> None:
    """The verdict (success) is set in the status; the step fails so someone looks."""
    pr.open({MINE: request()})
    pr.review("dave")
    pr.emulator.fail(r"POST /repos/.*/issues/\d+/comments", 403, times=10, message="Forbidden")
    run = pr.run()
    assert run.code == 1, run.stdout + run.stderr
    assert "could not write the PR comment" in run.stderr and "success" in run.stderr
    assert pr.status and pr.status["state"] == "success"
    assert pr.comments == []


@pytest.mark.parametrize(
    ("reviewer", "state", "code"), [(None, "pending", 1), ("dave", "success", 0)]
)
def test_the_json_report_file_tells_waiting_from_failing(
    pr: Scenario, reviewer: str | None, state: str, code: int
) -> None:
    """--json-out writes the state whatever --format is: the workflow keeps a PR that only
    waits for approvals green, while pr-check's own exit code stays as documented."""
    pr.open({MINE: request()})
    if reviewer:
        pr.review(reviewer)
    out = pr.tmp / "report.json"
    run = pr.run("github", extra=("--json-out", str(out)))
    assert run.code == code, run.stdout + run.stderr
    assert json.loads(out.read_text())["state"] == state


def test_no_review_is_pending_with_who_is_needed(pr: Scenario) -> None:
    pr.open({MINE: request()})
    run = pr.run()
    assert run.code == 1
    assert pr.status and pr.status["state"] == "pending"
    assert pr.status["description"] == "needs 1 more approval from team:payments-leads (dave, erin)"


@pytest.mark.parametrize(
    "reviews",
    [
        pytest.param([("alice", "APPROVED", {})], id="self-approval"),
        pytest.param([("carol", "APPROVED", {})], id="ineligible-approver"),
        pytest.param(
            [("dave", "APPROVED", {"commit_id": "0" * 40})], id="approval-on-older-commit"
        ),
        pytest.param([("dave", "DISMISSED", {})], id="dismissed-approval"),
        pytest.param(
            [("dave", "APPROVED", {}), ("dave", "CHANGES_REQUESTED", {})],
            id="later-changes-requested",
        ),
        pytest.param(
            [("dave[bot]", "APPROVED", {}), ("erin", "APPROVED", {"user_type": "Bot"})],
            id="bot-approval",
        ),
    ],
)
def test_approvals_that_do_not_count(pr: Scenario, reviews: list[tuple[str, str, dict]]) -> None:
    pr.open({MINE: request()})
    for login, state, kw in reviews:
        pr.review(login, state, **kw)
    run = pr.run()
    assert run.code == 1
    assert run.json["state"] == "pending"
    assert run.json["files"][0]["approvals"]["present"] == []
    assert pr.status and pr.status["state"] == "pending"


def test_approval_before_a_new_push_no_longer_counts(pr: Scenario) -> None:
    pr.open({MINE: request()})
    pr.review("dave")
    assert pr.run().code == 0
    pr.push({MINE: request(reason="Investigate INC-4821, and also more")})
    run = pr.run(event="pull_request")
    assert run.code == 1 and pr.status and pr.status["state"] == "pending"


# ----------------------------------------------------------------------------- who and what
def test_request_for_someone_else_fails(pr: Scenario) -> None:
    pr.open({"requests/carol/inc-4821.yaml": request("carol")})
    pr.review("dave")
    run = pr.run()
    assert run.code == 1
    codes = [f["code"] for f in run.json["findings"]]
    assert "E-PR-AUTHOR" in codes
    assert pr.status and pr.status["state"] == "failure"


def test_requester_compares_case_insensitively(pr: Scenario) -> None:
    pr.open({MINE: request("alice")}, author="Alice")
    pr.review("Dave")
    assert pr.run().code == 0


def test_mixing_policy_and_request_changes_fails(pr: Scenario) -> None:
    pr.open({MINE: request(), "policies/p.yaml": POLICIES.format(approvals=0)})
    run = pr.run()
    assert run.code == 1
    assert "together with other files (policies/p.yaml)" in run.json["problems"][0]
    assert pr.status and pr.status["state"] == "failure"


def test_policy_loosened_in_the_head_is_not_the_judge(pr: Scenario) -> None:
    # Even if the API listed only the request, the base commit's policy (1 approval) judges.
    pr.open(
        {MINE: request(), "policies/p.yaml": POLICIES.format(approvals=0)},
        api_files=[{"filename": MINE, "status": "added"}],
    )
    run = pr.run()
    assert run.code == 1
    assert run.json["files"][0]["approvals"]["needed"] == 1


def test_readme_only_pr_passes_with_a_note(pr: Scenario) -> None:
    pr.open({"README.md": "docs\n"})
    run = pr.run()
    assert run.code == 0
    assert "no access request files changed" in run.json["notes"][0]
    assert pr.status and pr.status["state"] == "success"


def test_policy_only_pr_is_validated_at_its_head(pr: Scenario) -> None:
    pr.open({"policies/p.yaml": POLICIES.format(approvals=2)})
    run = pr.run()
    assert run.code == 0 and "policy files changed" in run.json["notes"][0]


def test_policy_only_pr_that_breaks_the_policies_fails(pr: Scenario) -> None:
    pr.open({"policies/p.yaml": POLICIES.format(approvals="many")})
    run = pr.run(fmt="github")
    assert run.code == 1
    assert any(
        line.startswith("::error file=policies/p.yaml,line=") for line in run.stdout.splitlines()
    )
    assert pr.status and pr.status["state"] == "failure"


def test_invalid_request_fails_with_annotations(pr: Scenario) -> None:
    pr.open({MINE: request() + "colour: blue\n"})
    run = pr.run(fmt="github")
    assert run.code == 1
    assert any(line.startswith(f"::error file={MINE},line=") for line in run.stdout.splitlines())


# ----------------------------------------------------------------------------- revocation
@pytest.mark.parametrize(
    ("author", "code", "state"),
    [("alice", 0, "success"), ("dave", 0, "success"), ("bob", 1, "failure")],
)
def test_early_revocation(pr: Scenario, author: str, code: int, state: str) -> None:
    pr.main({MINE: request()})
    pr.open({MINE: None}, author=author)
    run = pr.run()
    assert run.code == code, run.stdout
    assert run.json["files"][0]["kind"] == "revocation"
    assert pr.status and pr.status["state"] == state


def test_rename_is_a_revocation_plus_a_new_request(pr: Scenario) -> None:
    pr.main({MINE: request()})
    pr.open({MINE: None, "requests/alice/inc-4822.yaml": request()})
    assert any(f.get("previous_filename") == MINE for f in pr.diff())
    run = pr.run()
    kinds = sorted((f["kind"], f["state"]) for f in run.json["files"])
    assert kinds == [("request", "pending"), ("revocation", "success")]
    assert run.code == 1


# ----------------------------------------------------------------------------- the comment
def test_comment_is_updated_not_duplicated(pr: Scenario) -> None:
    pr.open({MINE: request()})
    assert pr.run().code == 1
    [first] = pr.comments
    assert "waiting for approvals" in first["body"]
    pr.review("erin")
    assert pr.run(event="pull_request_review").code == 0
    [second] = pr.comments
    assert second["id"] == first["id"] and "may merge" in second["body"]
    assert pr.status and pr.status["state"] == "success"


def test_a_forged_marker_comment_never_stands_alone(pr: Scenario, emulator: GitHubEmulator) -> None:
    pr.open({MINE: request()})
    repo = emulator.repos[REPO]
    forged = MARKER + "\n### ✅ accessctl: may merge"
    repo.comments[1] = {
        "id": 1,
        "body": forged,
        "user": {"login": "mallory", "type": "User"},
        "_issue": pr.number,
    }
    assert pr.run().code == 1
    assert pr.run().code == 1
    ours = [c for c in pr.comments if c["id"] != 1]
    assert (
        len(ours) == 1 and "waiting for approvals" in ours[0]["body"]
    )  # found again, not duplicated
    assert repo.comments[1]["body"] == forged  # we never edit mallory's


HOSTILE = "@org/team <img src=x onerror=alert(1)> [x](javascript:alert(1)) **b** | col\n::set-output name=a::b"


def test_hostile_text_is_inert(pr: Scenario) -> None:
    pr.open({MINE: request(reason=HOSTILE, ticket="INC-1\n::warning::@org/team <img>")})
    run = pr.run(fmt="github")
    assert run.code == 1
    body = pr.comments[0]["body"]
    for text in (body, run.summary):
        assert "@org" not in text  # a zero-width joiner follows every @
        assert "<img" not in text and "](javascript:" not in text and "**b**" not in text
        assert "\n::" not in text
    for line in run.stdout.splitlines():
        assert not line.startswith(("::set-output", "::warning")), line
        assert line.startswith(("::error ", "::notice ")) or "::" not in line.split(" ", 1)[0]


def test_api_calls_per_check(pr: Scenario, emulator: GitHubEmulator) -> None:
    pr.open({MINE: request()})
    pr.review("dave")
    emulator.reset_calls()
    run = pr.run()
    assert run.code == 0
    # pull, files, reviews, status, list comments, create comment
    assert emulator.total_calls == 6 == run.json["github_calls"]


# ----------------------------------------------------------------------------- misuse
def test_not_a_pull_request_event_is_a_usage_error(pr: Scenario) -> None:
    pr.open({MINE: request()})
    run = pr.run(event="push", payload={"ref": "refs/heads/main"})
    assert run.code == 2 and "not a pull_request or pull_request_review event" in run.stderr


def test_missing_token_is_a_usage_error(pr: Scenario) -> None:
    pr.open({MINE: request()})
    pr.env = {k: v for k, v in pr.env.items() if k != "GITHUB_TOKEN"}
    run = pr.run()
    assert run.code == 2 and "GITHUB_TOKEN" in run.stderr


def test_base_not_in_clone_is_a_usage_error(pr: Scenario, emulator: GitHubEmulator) -> None:
    pr.open({MINE: request()})
    emulator.repos[REPO].pulls[pr.number].base_sha = "1" * 40
    run = pr.run()
    assert run.code == 2 and "fetch-depth: 0" in run.stderr
