"""The gate's pure parts: renames split, revocation rights, status texts, escaping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.models import AccessRequest, Config, Policy
from reconciler.core.prcheck import (
    MARKER,
    Approval,
    FileVerdict,
    PathChange,
    Report,
    judge_revocation,
    render_markdown,
    split_changes,
    status_description,
)
from reconciler.errors import Finding

POLICY = Policy(
    name="db-read",
    provider="gcp",
    scopes=("projects/payments-*",),
    roles=("roles/cloudsql.viewer",),
    requesters=("team:oncall",),
    approvers=("team:leads",),
    approvals=1,
    max_duration=timedelta(hours=4),
)
CONFIG = Config(
    policies=(POLICY,),
    teams={"oncall": frozenset({"alice"}), "leads": frozenset({"dave", "erin"})},
)
REQ = AccessRequest(
    path="requests/alice/x.yaml",
    requester="alice",
    provider="gcp",
    scope="projects/payments-prod",
    role="roles/cloudsql.viewer",
    reason="Investigate INC-1 please",
    duration=timedelta(hours=2),
)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (("a", "added", None), [PathChange("a", "added")]),
        (("a", "removed", None), [PathChange("a", "removed")]),
        (("a", "modified", None), [PathChange("a", "modified")]),
        (("b", "renamed", "a"), [PathChange("a", "removed"), PathChange("b", "added")]),
        (("a", "copied", "z"), [PathChange("a", "added")]),
        (("a", "changed", None), [PathChange("a", "modified")]),
    ],
    ids=["added", "removed", "modified", "renamed", "copied", "mode-change"],
)
def test_split_changes(entry: tuple[str, str, str | None], expected: list[PathChange]) -> None:
    assert split_changes([entry]) == expected


@pytest.mark.parametrize(
    ("author", "access_request", "state"),
    [
        ("alice", REQ, "success"),
        ("ALICE", REQ, "success"),
        ("dave", REQ, "success"),
        ("bob", REQ, "failure"),
        ("alice", None, "success"),  # unparseable file: its directory's owner may delete it
        ("dave", None, "failure"),
    ],
    ids=[
        "requester",
        "requester-case",
        "approver",
        "stranger",
        "owner-unparsed",
        "approver-unparsed",
    ],
)
def test_revocation_rights(author: str, access_request: AccessRequest | None, state: str) -> None:
    assert judge_revocation(REQ.path, access_request, CONFIG, author).state == state


def _pending(eligible: tuple[str, ...] = ("dave", "erin")) -> Report:
    approval = Approval(POLICY, 1, (), eligible)
    verdict = FileVerdict(REQ.path, "request", "pending", REQ, approval=approval)
    return Report(1, "h" * 40, "b" * 40, "alice", verdicts=(verdict,))


def test_status_descriptions() -> None:
    assert status_description(_pending()) == "needs 1 more approval from team:leads (dave, erin)"
    failure = Report(1, "h", "b", "alice", problems=("mixed " * 50,))
    assert failure.state == "failure" and len(status_description(failure)) == 140
    assert status_description(Report(1, "h", "b", "alice")) == "may merge"


def test_markdown_is_inert() -> None:
    hostile = AccessRequest(
        **{**REQ.__dict__, "reason": "@org/team <script>x</script> [a](javascript:b)\n## h"}
    )
    finding = Finding(REQ.path, 3, "E-X", "bad @someone <b>")
    verdict = FileVerdict(REQ.path, "request", "failure", hostile, findings=(finding,))
    body = render_markdown(
        Report(7, "h" * 40, "b" * 40, "mal@ory", verdicts=(verdict,)),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert body.startswith(MARKER)
    assert "@org" not in body and "@someone" not in body and "mal@ory" not in body
    assert "<script" not in body and "<b>" not in body and "](javascript" not in body
    assert "\n## h" not in body
