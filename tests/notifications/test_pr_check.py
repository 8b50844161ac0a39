"""`accessctl pr-check` sends request-waiting to the sinks the BASE commit's policies
configure, while the request waits for approvals; a sink whose variable the check job was
not given is skipped with a note. A subprocess as Actions runs it, the GitHub emulator, a
local HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
from importlib import resources

import jsonschema
import pytest

from reconciler.notify import SIGNATURE_HEADER
from tests.github.conftest import emulator, git_repo, github_env  # noqa: F401 - fixtures
from tests.github.test_pr_check import MINE, POLICIES, Scenario, request

SECRET = "pr-check-secret-42"
HOOK = """\
notifications:
  - type: webhook
    url_env: ACCESSCTL_TEST_WEBHOOK
    secret_env: ACCESSCTL_TEST_SECRET
"""
SCHEMA = json.loads(
    resources.files("reconciler").joinpath("schemas/notification.schema.json").read_text()
)


@pytest.fixture
def pr(emulator, git_repo, github_env, tmp_path) -> Scenario:  # noqa: F811
    scenario = Scenario(emulator, git_repo, github_env, tmp_path)
    scenario.main({"policies/p.yaml": POLICIES.format(approvals=1) + HOOK})
    return scenario


def test_request_waiting_is_sent_signed(pr: Scenario, receiver) -> None:
    pr.env |= {
        "ACCESSCTL_TEST_WEBHOOK": f"{receiver.url}/hook",
        "ACCESSCTL_TEST_SECRET": SECRET,
    }
    pr.open({MINE: request()})
    run = pr.run()
    assert run.code == 1  # waiting: pr-check's exit code as documented
    assert run.json["state"] == "pending"
    (delivery,) = receiver.at("/hook")
    expected = "sha256=" + hmac.new(SECRET.encode(), delivery.raw, hashlib.sha256).hexdigest()
    assert delivery.headers[SIGNATURE_HEADER] == expected
    body = delivery.json()
    jsonschema.validate(body, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert body["event"] == "request-waiting"
    assert (body["request"], body["requester"], body["pr"]) == (MINE, "alice", pr.number)
    assert (body["provider"], body["scope"]) == ("gcp", "projects/payments-prod")
    assert body["role"] == "roles/cloudsql.viewer"
    assert body["begin"] and body["end"]
    assert body["pr_url"] == f"https://github.com/acme/access/pull/{pr.number}"
    assert SECRET not in run.stdout + run.stderr and receiver.url not in run.stdout + run.stderr


def test_approved_sends_nothing(pr: Scenario, receiver) -> None:
    pr.env |= {"ACCESSCTL_TEST_WEBHOOK": f"{receiver.url}/hook", "ACCESSCTL_TEST_SECRET": SECRET}
    pr.open({MINE: request()})
    pr.review("dave")
    assert pr.run().code == 0
    assert receiver.received == []


def test_without_the_secret_the_check_still_works(pr: Scenario) -> None:
    pr.open({MINE: request()})
    run = pr.run()
    assert run.json["state"] == "pending"
    assert "ACCESSCTL_TEST_WEBHOOK is not set" in run.stderr
    assert pr.status and pr.status["state"] == "pending"
