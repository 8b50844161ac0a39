"""Policy test cases (``policies/tests/*.yaml``): each judged by the one judgment.

A case is a request, who approved its pull request, when it merged, and the verdict the
policies must give. ``accessctl test`` runs them; ``accessctl validate`` warns about a
policy no case covers (only where ``policies/tests/`` exists).

```yaml
cases:
  - name: on call, with a lead's approval
    request:
      requester: alice
      provider: gcp
      scope: projects/payments-prod
      role: roles/cloudsql.viewer
      reason: Investigate INC-4821, slow checkout queries
      ticket: INC-4821
      duration: 2h
    approved_by: [dave]
    at: 2026-12-01T09:00:00Z
    expect: allowed by payments-db-read    # | refused E-POLICY-TOO-LONG | needs 1 approval from team:payments-leads
```
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

from reconciler.core.judgment import Approval, Judgment, judge_request
from reconciler.core.loader import Document, Path_, load
from reconciler.core.models import AccessRequest, Approvals, Config, Policy, Reason
from reconciler.core.timeutil import parse_rfc3339
from reconciler.core.validate import REFUSAL_CODES, SchemaChecker, as_mapping, check_request
from reconciler.errors import Finding
from reconciler.repo import POLICY_TESTS, FileSource, checker

TESTS_DIR = POLICY_TESTS
SCHEMA_FILE = "policy-test.schema.json"
UNTESTED = "W-POLICY-UNTESTED"

_EXPECT = re.compile(
    r"allowed by (?P<policy>\S+)"
    r"|refused(?P<codes>(?: E-[A-Z0-9-]+)*)"
    r"|needs (?P<count>[0-9]+) approvals? from (?P<who>.+)"
)


@dataclass(frozen=True)
class Expectation:
    """The verdict a case expects, as written (``allowed by x``, ``refused E-...``...)."""

    text: str
    kind: Literal["allowed", "refused", "needs"]
    policy: str | None = None
    codes: tuple[str, ...] = ()
    count: int = 0
    approvers: frozenset[str] = frozenset()  # lowercased, as written


@dataclass(frozen=True)
class Case:
    file: str
    line: int
    name: str
    request: AccessRequest
    approval: Approval
    at: datetime
    expect: Expectation


@dataclass(frozen=True)
class Outcome:
    """A case and what the policies said about it."""

    case: Case
    passed: bool
    got: str
    problems: tuple[str, ...] = ()
    policies: frozenset[str] = frozenset()  # the policies the verdict rests on (coverage)


@dataclass
class Suite:
    """Every case of every test file, and what is wrong with the files themselves."""

    cases: list[Case] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# -- reading the files -----------------------------------------------------------------------


def case_files(source: FileSource) -> list[str]:
    return [p for p in source.list(TESTS_DIR) if p.endswith((".yaml", ".yml"))]


def has_tests(source: FileSource) -> bool:
    return bool(source.list(TESTS_DIR))


def load_suite(source: FileSource, paths: Sequence[str] | None = None) -> Suite:
    """Parse the test files (all of ``policies/tests/`` when ``paths`` is None)."""
    suite = Suite()
    for path in case_files(source) if paths is None else paths:
        suite.files.append(path)
        if source.is_symlink(path):
            suite.findings.append(Finding(path, 1, "E-FILE-SYMLINK", "symlinks are not allowed"))
            continue
        try:
            data = source.read(path)
        except OSError as exc:
            suite.findings.append(Finding(path, 1, "E-FILE-READ", f"cannot read the file: {exc}"))
            continue
        cases, findings = parse_cases(load(data, path))
        suite.cases += cases
        suite.findings += findings
    return suite


def parse_cases(doc: Document) -> tuple[list[Case], list[Finding]]:
    """A loaded test file -> its cases; every problem at file:line (none run if any)."""
    if not doc.ok:
        return [], list(doc.findings)
    raw = as_mapping(doc, "cases: a list of test cases")
    if raw is None:
        return [], list(doc.findings)
    findings = [f for _, f in _case_checker().check(doc, raw)]
    if findings:
        return [], findings
    cases = []
    for i, entry in enumerate(raw["cases"]):
        case = _case(doc, i, entry, findings)
        if case is not None:
            cases.append(case)
    return ([], findings) if findings else (cases, [])


def _case(doc: Document, i: int, entry: Mapping[str, Any], out: list[Finding]) -> Case | None:
    here: Path_ = ("cases", i)
    request = _request(doc, (*here, "request"), entry["request"], out)
    try:
        at = parse_rfc3339(entry["at"])
    except ValueError as exc:
        out.append(Finding(doc.file, doc.line((*here, "at")), "E-TEST-TIME", f"at: {exc}"))
        return None
    expect = _expectation(entry["expect"])
    if request is None or expect is None:
        return None
    reviewers = frozenset(entry.get("approved_by", ()))
    author = entry.get("opened_by", request.requester)
    approvals = Approvals(reviewers=reviewers, pr_author=author, pr_number=1)
    approval = Approval(approved_at=at, approvals=approvals, pr=1)
    return Case(doc.file, doc.line(here), entry["name"], request, approval, at, expect)


def _request(
    doc: Document, here: Path_, data: Mapping[str, Any], out: list[Finding]
) -> AccessRequest | None:
    """The case's request, checked as a request file is (schema, times), with the case
    file's lines; then placed at requests/<requester>/ as a request file would be."""
    lines = {p[len(here) :]: n for p, n in doc.lines.items() if p[: len(here)] == here}
    sub = Document(doc.file, data, lines)
    request = check_request(sub, checker("request"))
    out.extend(sub.findings)
    if request is None:
        return None
    return replace(request, path=f"requests/{request.requester}/policy-test.yaml")


def _expectation(text: str) -> Expectation | None:
    match = _EXPECT.fullmatch(text)
    if match is None:  # the schema's pattern already reported it
        return None
    if match["policy"]:
        return Expectation(text, "allowed", policy=match["policy"])
    if match["count"]:
        who = frozenset(w.strip().lower() for w in match["who"].split(",") if w.strip())
        return Expectation(text, "needs", count=int(match["count"]), approvers=who)
    return Expectation(text, "refused", codes=tuple(match["codes"].split()))


@cache
def _case_checker() -> SchemaChecker:
    """The case file's own schema; the request inside is checked as a request file."""
    text = resources.files("reconciler").joinpath(f"schemas/{SCHEMA_FILE}").read_text("utf-8")
    schema = json.loads(text)
    item = schema["properties"]["cases"]["items"]
    item["properties"]["request"] = {"type": "object"}
    return SchemaChecker(schema)


# -- running them ----------------------------------------------------------------------------


def run(case: Case, config: Config) -> Outcome:
    """Judge the case as pr-check and apply judge a request, then compare verdicts."""
    j = judge_request(case.request, config, case.approval, case.at)
    expect = case.expect
    problems = tuple(p.message for p in j.problems)
    if expect.policy and all(p.name != expect.policy for p in config.policies):
        problems = (f"there is no policy named {expect.policy!r}", *problems)
    if j.allowed and j.policy is not None:
        got = f"allowed by {j.policy}"
        passed = expect.kind == "allowed" and expect.policy == j.policy
        return Outcome(case, passed, got, () if passed else problems, frozenset({j.policy}))
    waiting = _waiting_on(j, config)
    if j.waiting and waiting:
        got = "; ".join(_needs(p) for p in waiting)
        passed = expect.kind == "needs" and any(_needs_matches(expect, p, config) for p in waiting)
        return Outcome(case, passed, got, problems, frozenset(p.name for p in waiting))
    codes = refusal_codes(j)
    got = "refused " + " ".join(codes) if codes else "refused"
    passed = expect.kind == "refused" and set(expect.codes) <= set(codes)
    return Outcome(case, passed, got, problems)


def run_all(cases: Sequence[Case], config: Config) -> list[Outcome]:
    return [run(case, config) for case in cases]


def refusal_codes(j: Judgment) -> tuple[str, ...]:
    """Every finding code behind a refusal: the policies' (as ``validate`` reports them)
    and the approval's own (a pull request opened by someone else...)."""
    out: list[str] = []
    if j.decision is not None:
        out += [REFUSAL_CODES[r.reason] for r in j.decision.refusals]
    out += [p.code for p in j.problems if p.kind != "policy"]
    return tuple(dict.fromkeys(out))


def _waiting_on(j: Judgment, config: Config) -> list[Policy]:
    """The policies whose only objection is missing approvals."""
    if j.decision is None:
        return []
    objections: dict[str, set[Reason]] = {}
    for r in j.decision.refusals:
        if r.policy is not None:
            objections.setdefault(r.policy, set()).add(r.reason)
    names = {n for n, reasons in objections.items() if reasons == {Reason.APPROVALS_MISSING}}
    return [p for p in config.policies if p.name in names]


def _needs(policy: Policy) -> str:
    plural = "approval" if policy.approvals == 1 else "approvals"
    return f"needs {policy.approvals} {plural} from {', '.join(policy.approvers)}"


def _needs_matches(expect: Expectation, policy: Policy, config: Config) -> bool:
    if expect.count != policy.approvals:
        return False
    written = frozenset(a.lower() for a in policy.approvers)
    return expect.approvers in (written, config.expand(policy.approvers))


# -- coverage --------------------------------------------------------------------------------


def untested(config: Config, outcomes: Sequence[Outcome]) -> list[Finding]:
    """A warning at each policy no case's verdict rests on (allowed by it, or waiting
    for its approvals) and no case names."""
    covered: set[str] = set()
    for o in outcomes:
        covered |= o.policies
        if o.case.expect.policy:
            covered.add(o.case.expect.policy)
    return [
        Finding(
            p.file,
            p.line,
            UNTESTED,
            f"policy {p.name!r} has no test case in {TESTS_DIR}/ (one it allows, or one "
            "waiting for its approvals); see `accessctl test`",
            severity="warning",
        )
        for p in config.policies
        if p.name not in covered
    ]
