"""``github_team:ORG/SLUG`` in a policy's approvers: whom pr-check asks, never who may
approve; checked when the policies load, each problem at its file and line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from reconciler.repo import WorkTree, load_config
from tests.github.test_pr_check import ACCESSCTL
from tests.reviewrequests.conftest import POLICIES


def validate(tmp_path: Path, approvers: str, requesters: str = "[team:payments-oncall]") -> dict:
    text = POLICIES.format(approvers=approvers).replace("[team:payments-oncall]", requesters, 1)
    (tmp_path / "policies").mkdir(exist_ok=True)
    (tmp_path / "policies" / "p.yaml").write_text(text)
    proc = subprocess.run(
        [ACCESSCTL, "validate", "--repo", str(tmp_path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr
    return {"code": proc.returncode, **json.loads(proc.stdout)}


def test_teams_to_ask_are_kept_apart_from_who_may_approve(tmp_path: Path) -> None:
    text = POLICIES.format(approvers="[dave, github_team:acme/Payments-Leads, team:payments-leads]")
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(text)
    config, findings = load_config(WorkTree(tmp_path))
    assert not findings
    [policy] = config.policies
    assert policy.approvers == ("dave", "team:payments-leads")
    assert policy.review_teams == ("acme/payments-leads",)
    assert config.expand(("github_team:acme/payments-leads",)) == frozenset()


@pytest.mark.parametrize(
    ("approvers", "requesters", "line", "code", "words"),
    [
        (
            "[github_team:acme/payments-leads]",
            "[team:payments-oncall]",
            8,
            "E-CONFIG-APPROVALS",
            "github_team: entries only say whom to ask for a review",
        ),
        (
            "[team:payments-leads, github_team:payments-leads]",
            "[team:payments-oncall]",
            7,
            "E-SCHEMA-VALUE",
            "github_team:<org>/<team-slug>",
        ),
        (
            "[team:payments-leads]",
            "[github_team:acme/payments-oncall]",
            6,
            "E-SCHEMA-VALUE",
            "must be a GitHub login or team:<name>",
        ),
    ],
    ids=["only-teams-to-ask", "no-organisation", "asked-team-as-requesters"],
)
def test_misplaced_github_teams_are_errors_at_their_line(
    tmp_path: Path, approvers: str, requesters: str, line: int, code: str, words: str
) -> None:
    result = validate(tmp_path, approvers, requesters)
    assert result["code"] == 1 and not result["ok"]
    [finding] = result["findings"]
    assert (finding["file"], finding["line"], finding["code"]) == ("policies/p.yaml", line, code)
    assert words in finding["message"]
