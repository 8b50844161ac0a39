"""Break-glass in the policies and the one judgment: the setting checked at load time (file
and line), a table of verdicts (passing with no approval only under a policy that allows
it and within its max_duration; every other break-glass request refused, never
waiting), the follow-up review's rules, and `accessctl test` judging cases the same way."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.core.judgment import Approval, judge_request
from reconciler.core.loader import load
from reconciler.core.models import Approvals, Config
from reconciler.core.reviews import Review
from reconciler.core.validate import check_request
from reconciler.history import MemorySource
from reconciler.repo import checker, load_config

from .conftest import ACCESSCTL, POLICY, T0, H, M, request


def config(text: str = POLICY) -> Config:
    loaded, findings = load_config(MemorySource({"policies/p.yaml": text.encode()}))
    assert not [f for f in findings if f.severity == "error"], findings
    return loaded


def parsed(text: str, login: str = "alice"):
    doc = load(text.encode(), f"requests/{login}/inc-4821.yaml")
    found = check_request(doc, checker("request"))
    assert found is not None, doc.findings
    return found


def approval(*reviewers: str, author: str = "alice", reviews: tuple[Review, ...] | None = None):
    given = Approvals(frozenset(reviewers), pr_author=author, pr_number=7)
    return Approval(T0, given, 7, reviews=reviews)


# (request, its login, approvals before the merge) -> (allowed, waiting, the problem codes)
VERDICTS = {
    "break-glass, no approval": (request(), "alice", (), True, False, []),
    "break-glass, at its max_duration": (request(duration="2h"), "alice", (), True, False, []),
    "break-glass, over its max_duration": (
        request(duration="3h"),
        "alice",
        (),
        False,
        False,
        ["E-REFUSED-TOO-LONG"],
    ),
    "break-glass, over it even with an approval": (
        request(duration="3h"),
        "alice",
        ("dave",),
        False,
        False,
        ["E-REFUSED-TOO-LONG"],
    ),
    "break-glass, no ticket": (
        request(ticket=None),
        "alice",
        (),
        False,
        False,
        ["E-REFUSED-TICKET-MISSING"],
    ),
    "break-glass, requester not listed": (
        request("mallory"),
        "mallory",
        (),
        False,
        False,
        ["E-REFUSED-NOT-REQUESTER"],
    ),
    "break-glass, policy without break_glass": (
        request(role="roles/logging.viewer"),
        "alice",
        ("dave",),
        False,
        False,
        ["E-REFUSED-NO-BREAK-GLASS"],
    ),
    "normal, no approval: waiting": (
        request(break_glass=False),
        "alice",
        (),
        False,
        True,
        ["E-REFUSED-APPROVALS-MISSING"],
    ),
    "normal, approved, longer than break-glass allows": (
        request(duration="8h", break_glass=False),
        "alice",
        ("dave",),
        True,
        False,
        [],
    ),
}


@pytest.mark.parametrize(
    ("text", "login", "reviewers", "allowed", "waiting", "codes"), VERDICTS.values(), ids=VERDICTS
)
def test_verdicts(
    text: str,
    login: str,
    reviewers: tuple[str, ...],
    allowed: bool,
    waiting: bool,
    codes: list[str],
) -> None:
    j = judge_request(parsed(text, login), config(), approval(*reviewers, author=login), T0)
    assert (j.allowed, j.waiting) == (allowed, waiting)
    assert [p.code for p in j.problems] == codes
    if allowed:
        assert j.policy == "db-read" and j.state == "active"


def review(login: str, at: timedelta, state: str = "APPROVED", bot: bool = False) -> Review:
    return Review(
        hash((login, at, state)) % 10_000, login, state, "head", T0 + at, "Bot" if bot else "User"
    )


FOLLOW_UPS = {
    "none yet": ((), "unreviewed", None),
    "an eligible approver after the merge": ((review("dave", 2 * H),), "reviewed", "dave"),
    "the requester's own": ((review("alice", 2 * H),), "unreviewed", None),
    "a requester who is not an approver": ((review("bob", 2 * H),), "unreviewed", None),
    "someone not among the approvers": ((review("carol", 2 * H),), "unreviewed", None),
    "a bot": ((review("dave", 2 * H, bot=True),), "unreviewed", None),
    "before the merge": ((review("dave", -5 * M),), "unreviewed", None),
    "taken back by a change request": (
        (review("dave", 2 * H), review("dave", 3 * H, "CHANGES_REQUESTED")),
        "unreviewed",
        None,
    ),
    "after the --at time": ((review("dave", 5 * H),), "unreviewed", None),
}


@pytest.mark.parametrize(("reviews", "status", "by"), FOLLOW_UPS.values(), ids=FOLLOW_UPS)
def test_the_follow_up_review(reviews: tuple[Review, ...], status: str, by: str | None) -> None:
    """Judged at T0 + 4h (alice's pull request, merged at T0)."""
    at = T0 + 4 * H
    j = judge_request(parsed(request(duration="2h")), config(), approval(reviews=reviews), at)
    assert j.follow_up is not None
    assert (j.follow_up.status, j.follow_up.by) == (status, by)
    assert j.follow_up.due == T0 + 24 * H
    assert j.follow_up.eligible == ("dave", "erin")


def test_no_follow_up_is_judged_without_reviews_or_for_a_normal_request() -> None:
    bg = judge_request(parsed(request()), config(), approval(), T0)
    assert bg.follow_up is not None and bg.follow_up.status == "unchecked"
    normal = judge_request(parsed(request(break_glass=False)), config(), approval("dave"), T0)
    assert normal.follow_up is None


BAD_POLICIES = {
    "unknown key": (
        "    break_glass: {max_duration: 1h, review_within: 24h, approve: never}\n",
        "E-SCHEMA-UNKNOWN-KEY",
        "unknown key 'approve'",
    ),
    "a duration that is not one": (
        "    break_glass: {max_duration: soon, review_within: 24h}\n",
        "E-CONFIG-DURATION",
        "break_glass.max_duration",
    ),
    "review_within missing": (
        "    break_glass: {max_duration: 1h}\n",
        "E-SCHEMA-MISSING",
        "review_within",
    ),
    "longer than max_duration": (
        "    break_glass: {max_duration: 9h, review_within: 24h}\n",
        "E-CONFIG-BREAK-GLASS",
        "may not last longer than approved access",
    ),
}


@pytest.mark.parametrize(("line", "code", "words"), BAD_POLICIES.values(), ids=BAD_POLICIES)
def test_bad_settings_are_refused_at_file_and_line(
    tmp_path: Path, line: str, code: str, words: str
) -> None:
    text = POLICY.replace("    break_glass: {max_duration: 2h, review_within: 24h}\n", line)
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(text)
    proc = subprocess.run(
        [ACCESSCTL, "validate", "--repo", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"policies/p.yaml:10: {code}" in proc.stdout, proc.stdout
    assert words in proc.stdout


def test_a_break_glass_policy_needs_someone_to_review(tmp_path: Path) -> None:
    text = POLICY.replace(
        "    approvers: [team:leads]\n    approvals: 1\n    max_duration: 8h\n    break_glass",
        "    approvals: 0\n    max_duration: 8h\n    break_glass",
        1,
    )
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(text)
    proc = subprocess.run(
        [ACCESSCTL, "validate", "--repo", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "policies/p.yaml:9: E-CONFIG-BREAK-GLASS" in proc.stdout, proc.stdout
    assert "no break-glass request could ever get its follow-up review" in proc.stdout


def test_a_request_says_break_glass_as_a_boolean(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    (tmp_path / "requests" / "alice").mkdir(parents=True)
    path = tmp_path / "requests" / "alice" / "inc-4821.yaml"
    path.write_text(request().replace("break_glass: true", "break_glass: yes"))
    proc = subprocess.run(
        [ACCESSCTL, "validate", "--repo", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "requests/alice/inc-4821.yaml:8: E-SCHEMA-TYPE: break_glass: must be a boolean" in (
        proc.stdout
    )


CASES = """\
cases:
  - name: break-glass needs no approval
    request: {request}
    at: 2026-12-01T09:00:00Z
    expect: allowed by db-read
  - name: break-glass, too long
    request: {too_long}
    at: 2026-12-01T09:00:00Z
    expect: refused E-POLICY-TOO-LONG
  - name: break-glass where the policy has none
    request: {logs}
    approved_by: [dave]
    at: 2026-12-01T09:00:00Z
    expect: refused E-POLICY-NO-BREAK-GLASS
  - name: break-glass without a ticket
    request: {no_ticket}
    at: 2026-12-01T09:00:00Z
    expect: refused E-POLICY-TICKET-MISSING
"""


def flow(text: str) -> str:
    """A request file's lines as a YAML flow mapping, for a test case."""
    pairs = [line.split(": ", 1) for line in text.strip().splitlines()]
    return (
        "{"
        + ", ".join(f"{k}: {v!r}" if k != "break_glass" else f"{k}: {v}" for k, v in pairs)
        + "}"
    )


def test_accessctl_test_judges_break_glass_cases_alike(tmp_path: Path) -> None:
    (tmp_path / "policies" / "tests").mkdir(parents=True)
    (tmp_path / "policies" / "p.yaml").write_text(POLICY)
    cases = CASES.format(
        request=flow(request()),
        too_long=flow(request(duration="3h")),
        logs=flow(request(role="roles/logging.viewer")),
        no_ticket=flow(request(ticket=None)),
    )
    (tmp_path / "policies" / "tests" / "bg.yaml").write_text(cases)
    ok = subprocess.run(
        [ACCESSCTL, "test", "--repo", str(tmp_path)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # A case that takes an over-long break-glass request for one waiting for approval fails.
    wrong = cases + (
        "  - name: mistaken for waiting\n"
        f"    request: {flow(request(duration='3h'))}\n"
        "    at: 2026-12-01T09:00:00Z\n"
        "    expect: needs 1 approval from team:leads\n"
    )
    (tmp_path / "policies" / "tests" / "bg.yaml").write_text(wrong)
    failed = subprocess.run(
        [ACCESSCTL, "test", "--repo", str(tmp_path)], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert "refused E-POLICY-TOO-LONG" in failed.stdout + failed.stderr
