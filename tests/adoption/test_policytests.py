"""`accessctl test`: policy cases judged by the one judgment, failures at file:line, exit
codes 0/1/2, and validate's coverage warning only where policies/tests/ exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.loader import load
from reconciler.policytests import parse_cases, run
from reconciler.repo import WorkTree, load_config

from .conftest import run_cli, write

POLICIES = """\
policies:
  - name: db-read
    provider: gcp
    scopes: [projects/shop-prod]
    roles: [roles/cloudsql.viewer]
    requesters: [team:oncall]
    approvers: [team:leads]
    approvals: 2
    max_duration: 4h
    ticket: '^INC-[0-9]+$'
  - name: staging
    provider: gcp
    scopes: ['projects/shop-staging*']
    roles: [roles/logging.viewer]
    requesters: [team:oncall]
    approvers: []
    approvals: 0
    max_duration: 1d
teams:
  oncall: [alice, bob]
  leads: [dave, erin, frank]
identities:
  alice: {gcp: user:alice@example.com}
  bob: {gcp: user:bob@example.com}
providers:
  gcp: {}
"""


def case(
    expect: str, *, approved: str = "[]", duration: str = "2h", extra: str = "", **kw: str
) -> str:
    scope = kw.get("scope", "projects/shop-prod")
    role = kw.get("role", "roles/cloudsql.viewer")
    requester = kw.get("requester", "alice")
    return f"""\
  - name: {kw.get("name", expect)}
    request:
      requester: {requester}
      provider: gcp
      scope: {scope}
      role: {role}
      reason: Investigate INC-12, slow queries
      ticket: INC-12
      duration: {duration}
    approved_by: {approved}
    at: 2026-12-01T09:00:00Z
{extra}    expect: {expect}
"""


def repo(tmp_path: Path, *cases: str, policies: str = POLICIES) -> Path:
    root = tmp_path / "access"
    write(root, {"policies/p.yaml": policies, "policies/tests/p.yaml": "cases:\n" + "".join(cases)})
    return root


def outcomes(root: Path) -> list:
    config, _ = load_config(WorkTree(root))
    doc = load((root / "policies/tests/p.yaml").read_bytes(), "policies/tests/p.yaml")
    cases, findings = parse_cases(doc)
    assert findings == []
    return [run(c, config) for c in cases]


VERDICTS = [
    pytest.param(
        case("allowed by db-read", approved="[dave, erin]"),
        True,
        "allowed by db-read",
        id="allowed",
    ),
    pytest.param(
        case("allowed by staging", approved="[dave, erin]"),
        False,
        "allowed by db-read",
        id="allowed-other",
    ),
    pytest.param(
        case("needs 2 approvals from team:leads"),
        True,
        "needs 2 approvals from team:leads",
        id="needs",
    ),
    pytest.param(
        case("needs 2 approvals from dave, erin, frank", approved="[dave]"),
        True,
        None,
        id="needs-logins",
    ),
    pytest.param(case("needs 1 approval from team:leads"), False, None, id="needs-wrong-count"),
    pytest.param(
        case("refused E-POLICY-TOO-LONG", duration="5h", approved="[dave, erin]"),
        True,
        None,
        id="too-long",
    ),
    pytest.param(
        case("refused", duration="5h", approved="[dave, erin]"), True, None, id="refused-any"
    ),
    pytest.param(
        case("refused E-POLICY-TICKET-MISSING", duration="5h"), False, None, id="wrong-code"
    ),
    pytest.param(
        case("refused E-POLICY-NOT-REQUESTER", requester="carol"), True, None, id="not-requester"
    ),
    pytest.param(
        case("refused E-REQ-BASIC-ROLE", role="roles/viewer"), True, None, id="basic-role"
    ),
    pytest.param(
        case(
            "refused E-APPROVAL-AUTHOR", approved="[dave, erin]", extra="    opened_by: mallory\n"
        ),
        True,
        None,
        id="opened-by-someone-else",
    ),
    pytest.param(
        case("allowed by db-read", approved="[alice, dave]"),
        False,
        None,
        id="self-approval-never-counts",
    ),
    pytest.param(
        case("allowed by staging", scope="projects/shop-staging-eu", role="roles/logging.viewer"),
        True,
        None,
        id="merge-alone",
    ),
]


@pytest.mark.parametrize(("text", "passes", "got"), VERDICTS)
def test_a_case_passes_when_the_one_judgment_agrees(
    tmp_path: Path, text: str, passes: bool, got: str | None
) -> None:
    (outcome,) = outcomes(repo(tmp_path, text))
    assert outcome.passed is passes, (outcome.got, outcome.problems)
    if got is not None:
        assert outcome.got == got


def test_failures_are_reported_at_the_case_line_and_exit_1(tmp_path: Path) -> None:
    root = repo(
        tmp_path,
        case("allowed by db-read", approved="[dave, erin]"),
        case("allowed by db-read", name="second"),
    )
    result = run_cli("test", "--repo", str(root))
    assert result.code == 1
    assert "policies/tests/p.yaml:14: FAIL: second: expected 'allowed by db-read'" in result.stdout
    assert "got 'needs 2 approvals from team:leads'" in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_json_lists_every_case(tmp_path: Path) -> None:
    root = repo(tmp_path, case("allowed by db-read", approved="[dave, erin]"))
    result = run_cli("test", "--repo", str(root), "--format", "json")
    assert result.code == 0
    (entry,) = result.json["cases"]
    assert entry == {
        "file": "policies/tests/p.yaml",
        "line": 2,
        "name": "allowed by db-read",
        "expected": "allowed by db-read",
        "got": "allowed by db-read",
        "passed": True,
        "problems": [],
    }


def test_github_format_annotates_failures(tmp_path: Path) -> None:
    root = repo(tmp_path, case("refused"))
    summary = tmp_path / "summary.md"
    summary.write_text("")
    result = run_cli(
        "test", "--repo", str(root), "--format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert result.code == 1
    assert result.stdout.startswith("::error file=policies/tests/p.yaml,line=2::")
    assert "## accessctl test" in summary.read_text()


MALFORMED = {
    "unknown-key": ("cases:\n  - name: x\n    bogus: 1\n", 3, "E-SCHEMA-UNKNOWN-KEY"),
    "expect": (case("maybe"), 13, "E-TEST-EXPECT"),
    "time": (case("refused").replace("2026-12-01T09:00:00Z", "2026-12-01"), 12, "E-TEST-TIME"),
    "request": (case("refused").replace("duration: 2h", "duration: 2 hours"), 10, "E-REQ-DURATION"),
    "anchor": ("cases: &a\n  - name: x\n", 1, "E-YAML-ANCHOR"),
    "duplicate": ("cases: []\ncases: []\n", 2, "E-YAML-DUPKEY"),
}


@pytest.mark.parametrize(("text", "line", "code"), MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_case_file_exits_2_with_file_and_line(
    tmp_path: Path, text: str, line: int, code: str
) -> None:
    body = text if text.startswith("cases") else "cases:\n" + text
    root = tmp_path / "access"
    write(root, {"policies/p.yaml": POLICIES, "policies/tests/p.yaml": body})
    result = run_cli("test", "--repo", str(root), "--format", "json")
    assert result.code == 2, result.stdout + result.stderr
    found = {(f["file"], f["line"], f["code"]) for f in result.json["findings"]}
    assert ("policies/tests/p.yaml", line, code) in {
        (f, ln, c) for f, ln, c in found if c == code
    }, found


def test_no_test_files_is_a_usage_error(tmp_path: Path) -> None:
    root = tmp_path / "access"
    write(root, {"policies/p.yaml": POLICIES})
    result = run_cli("test", "--repo", str(root))
    assert result.code == 2 and "policies/tests/" in result.stderr


def test_invalid_policies_are_a_configuration_error(tmp_path: Path) -> None:
    root = repo(
        tmp_path, case("refused"), policies=POLICIES.replace("approvals: 2", "approvals: two")
    )
    result = run_cli("test", "--repo", str(root))
    assert result.code == 2 and "policies are invalid" in result.stderr


def test_validate_warns_about_untested_policies_only_where_tests_exist(tmp_path: Path) -> None:
    root = repo(tmp_path, case("allowed by db-read", approved="[dave, erin]"))
    result = run_cli("validate", "--repo", str(root), "--format", "json")
    assert result.code == 0  # a warning, not a finding that fails
    warned = [(f["file"], f["line"], f["code"]) for f in result.json["findings"]]
    assert warned == [("policies/p.yaml", 11, "W-POLICY-UNTESTED")]  # staging
    (root / "policies/tests/p.yaml").unlink()
    (root / "policies/tests").rmdir()
    quiet = run_cli("validate", "--repo", str(root), "--format", "json")
    assert quiet.code == 0 and quiet.json["findings"] == []


def test_validate_reports_a_malformed_case_file(tmp_path: Path) -> None:
    root = repo(tmp_path, case("maybe"))
    result = run_cli("validate", "--repo", str(root), "--format", "json")
    assert result.code == 1
    assert ("policies/tests/p.yaml", "E-TEST-EXPECT") in {
        (f["file"], f["code"]) for f in result.json["findings"]
    }


def test_case_files_are_not_policies(tmp_path: Path) -> None:
    """Apply, pr-check and status read policies through the same loader: a case file never
    becomes a policy, and never breaks the policies either."""
    root = repo(tmp_path, case("allowed by db-read", approved="[dave, erin]"))
    config, findings = load_config(WorkTree(root))
    assert findings == []
    assert [p.name for p in config.policies] == ["db-read", "staging"]
