"""Every rejection class of `accessctl validate`: exit 1 and a finding at file, line, code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.core.conftest import GOOD_REQUEST, run_validate, write_files

R = "requests/alice/inc-4821.yaml"
P = "policies/extra.yaml"


def req(**changes: str | None) -> str:
    """The good request with keys replaced (in place, so lines stay put) or removed (None)."""
    lines = []
    for line in GOOD_REQUEST.splitlines():
        key = line.split(":", 1)[0]
        if key in changes:
            if changes[key] is not None:
                lines.append(f"{key}: {changes.pop(key)}")
            else:
                changes.pop(key)
            continue
        lines.append(line)
    lines += [f"{k}: {v}" for k, v in changes.items() if v is not None]
    return "\n".join(lines) + "\n"


POLICY = """\
policies:
  - name: {name}
    provider: {provider}
    scopes: {scopes}
    roles: {roles}
    requesters: {requesters}
    approvers: [team:payments-leads]
    approvals: {approvals}
    max_duration: {max_duration}
"""


def policy(**changes: str) -> str:
    values = {
        "name": "extra",
        "provider": "gcp",
        "scopes": "[projects/extra-prod]",
        "roles": "[roles/logging.viewer]",
        "requesters": "[alice]",
        "approvals": "1",
        "max_duration": "2h",
    }
    values.update(changes)
    return POLICY.format(**values)


# (id, files to write, expected file, line, code)
CASES: list[tuple[str, dict[str, str | bytes | None], str, int, str]] = [
    # --- request: YAML ---
    ("dup-key", {R: req() + "role: roles/logging.viewer\n"}, R, 8, "E-YAML-DUPKEY"),
    ("tag", {R: req(reason="!!str Investigate INC-4821 now")}, R, 5, "E-YAML-TAG"),
    (
        "python-tag",
        {R: req(reason="!!python/object/apply:os.system [echo hi]")},
        R,
        5,
        "E-YAML-TAG",
    ),
    ("anchor", {R: req(reason="&r Investigate INC-4821 now")}, R, 5, "E-YAML-ANCHOR"),
    ("alias", {R: req(ticket="&t INC-1", reason="*t")}, R, 5, "E-YAML-ALIAS"),
    ("merge-key", {R: req() + "<<: {role: roles/owner}\n"}, R, 8, "E-YAML-MERGE"),
    ("multi-doc", {R: req() + "---\n" + req()}, R, 8, "E-YAML-MULTIDOC"),
    ("syntax", {R: req(reason="[unclosed")}, R, 6, "E-YAML-SYNTAX"),
    ("empty", {R: ""}, R, 1, "E-SCHEMA-SHAPE"),
    ("list", {R: "- requester: alice\n"}, R, 1, "E-SCHEMA-SHAPE"),
    ("scalar", {R: "just text\n"}, R, 1, "E-SCHEMA-SHAPE"),
    ("too-big", {R: req() + "#" * 70_000 + "\n"}, R, 1, "E-FILE-SIZE"),
    ("not-utf8", {R: req().encode() + b"# \xff\xfe\n"}, R, 8, "E-FILE-ENCODING"),
    # --- request: schema ---
    ("unknown-key", {R: req(duraton="2h")}, R, 8, "E-SCHEMA-UNKNOWN-KEY"),
    ("missing-role", {R: req(role=None)}, R, 1, "E-SCHEMA-MISSING"),
    ("missing-reason", {R: req(reason=None)}, R, 1, "E-SCHEMA-MISSING"),
    ("role-is-list", {R: req(role="[roles/cloudsql.viewer]")}, R, 4, "E-SCHEMA-TYPE"),
    ("requester-bool", {R: req(requester="true")}, R, 1, "E-SCHEMA-TYPE"),
    ("requester-not-login", {R: req(requester="-alice")}, R, 1, "E-SCHEMA-VALUE"),
    ("provider-unknown", {R: req(provider="azure")}, R, 2, "E-SCHEMA-VALUE"),
    ("reason-short", {R: req(reason="because")}, R, 5, "E-REQ-REASON"),
    ("reason-blank", {R: req(reason="'            '")}, R, 5, "E-REQ-REASON"),
    ("reason-control", {R: req(reason='"Investigate \\e[31m INC-4821"')}, R, 5, "E-REQ-REASON"),
    ("no-end", {R: req(duration=None)}, R, 1, "E-REQ-NO-END"),
    ("duration-words", {R: req(duration="2 hours")}, R, 7, "E-REQ-DURATION"),
    ("duration-zero", {R: req(duration="0m")}, R, 7, "E-REQ-DURATION"),
    ("duration-sexagesimal", {R: req(duration="1:30")}, R, 7, "E-REQ-DURATION"),
    ("duration-number", {R: req(duration="90")}, R, 7, "E-REQ-DURATION"),
    ("start-no-offset", {R: req(start="2026-12-01T09:00:00")}, R, 8, "E-REQ-TIME"),
    ("start-date-only", {R: req(start="2026-12-01")}, R, 8, "E-REQ-TIME"),
    ("expires-bad-month", {R: req(expires="2026-13-01T09:00:00Z")}, R, 8, "E-REQ-TIME"),
    ("expires-past", {R: req(expires="2026-11-01T09:00:00Z")}, R, 8, "E-REQ-EXPIRED"),
    ("gcp-scope", {R: req(scope="payments-prod")}, R, 3, "E-REQ-SCOPE"),
    ("gcp-scope-glob", {R: req(scope="projects/payments-*")}, R, 3, "E-REQ-SCOPE"),
    ("gcp-role", {R: req(role="cloudsql.viewer")}, R, 4, "E-REQ-ROLE"),
    (
        "aws-scope",
        {R: req(provider="aws", scope="'11112222333'", role="ReadOnlyAccess")},
        R,
        3,
        "E-REQ-SCOPE",
    ),
    (
        "aws-role",
        {R: req(provider="aws", scope="111122223333", role="arn:aws:iam::role/x")},
        R,
        4,
        "E-REQ-ROLE",
    ),
    # --- request: meaning and policy ---
    ("basic-role", {R: req(role="roles/owner")}, R, 4, "E-REQ-BASIC-ROLE"),
    ("wrong-directory", {R: req(requester="bob")}, R, 1, "E-REQ-DIRECTORY"),
    ("no-policy-scope", {R: req(scope="projects/other-prod")}, R, 3, "E-POLICY-NONE"),
    ("no-policy-role", {R: req(role="roles/cloudsql.admin")}, R, 4, "E-POLICY-NONE"),
    (
        "not-requester",
        {"requests/dave/x.yaml": req(requester="dave")},
        "requests/dave/x.yaml",
        1,
        "E-POLICY-NOT-REQUESTER",
    ),
    ("too-long", {R: req(duration="5h")}, R, 7, "E-POLICY-TOO-LONG"),
    (
        "too-long-expires",
        {R: req(duration=None, expires="2026-12-02T00:00:00Z")},
        R,
        7,
        "E-POLICY-TOO-LONG",
    ),
    (
        "empty-window",
        {R: req(start="2026-12-02T00:00:00Z", expires="2026-12-01T00:00:00Z")},
        R,
        9,
        "E-POLICY-EMPTY-WINDOW",
    ),
    ("ticket-missing", {R: req(ticket=None)}, R, 1, "E-POLICY-TICKET-MISSING"),
    ("ticket-mismatch", {R: req(ticket="JIRA-12")}, R, 6, "E-POLICY-TICKET-MISMATCH"),
    ("ticket-partial", {R: req(ticket="INC-12 and more")}, R, 6, "E-POLICY-TICKET-MISMATCH"),
    ("ticket-yaml11-no", {R: req(ticket="no")}, R, 6, "E-POLICY-TICKET-MISMATCH"),
    (
        "no-identity",
        {
            "requests/carol/x.yaml": req(
                requester="carol", provider="aws", scope="111122223333", role="ReadOnlyAccess"
            )
        },
        "requests/carol/x.yaml",
        1,
        "E-POLICY-NO-IDENTITY",
    ),
    # --- request: layout ---
    ("layout-top", {"requests/x.yaml": req()}, "requests/x.yaml", 1, "E-FILE-LAYOUT"),
    (
        "layout-deep",
        {"requests/alice/sub/x.yaml": req()},
        "requests/alice/sub/x.yaml",
        1,
        "E-FILE-LAYOUT",
    ),
    (
        "layout-upper-slug",
        {"requests/alice/Fix.yaml": req()},
        "requests/alice/Fix.yaml",
        1,
        "E-FILE-LAYOUT",
    ),
    (
        "layout-upper-ext",
        {"requests/alice/fix.YAML": req()},
        "requests/alice/fix.YAML",
        1,
        "E-FILE-LAYOUT",
    ),
    (
        "layout-json",
        {"requests/alice/fix.json": "{}"},
        "requests/alice/fix.json",
        1,
        "E-FILE-LAYOUT",
    ),
    (
        "layout-long-slug",
        {f"requests/alice/{'a' * 49}.yaml": req()},
        f"requests/alice/{'a' * 49}.yaml",
        1,
        "E-FILE-LAYOUT",
    ),
    (
        "layout-bad-login",
        {"requests/al_ice/x.yaml": req()},
        "requests/al_ice/x.yaml",
        1,
        "E-FILE-LAYOUT",
    ),
    # --- policies ---
    ("policy-unknown-key", {P: policy() + "    bogus: 1\n"}, P, 10, "E-SCHEMA-UNKNOWN-KEY"),
    ("policy-unknown-section", {P: "azure: {}\n"}, P, 1, "E-SCHEMA-UNKNOWN-KEY"),
    (
        "policy-missing",
        {P: policy().replace("    max_duration: 2h\n", "")},
        P,
        2,
        "E-SCHEMA-MISSING",
    ),
    ("policy-dup-name", {P: policy(name="payments-aws")}, P, 2, "E-CONFIG-DUPLICATE"),
    ("policy-dup-team", {P: "teams:\n  payments-leads: [bob]\n"}, P, 2, "E-CONFIG-DUPLICATE"),
    (
        "policy-dup-identity",
        {P: "identities:\n  Alice: {gcp: user:a@example.com}\n"},
        P,
        2,
        "E-CONFIG-DUPLICATE",
    ),
    (
        "policy-unknown-team",
        {P: policy(requesters="[alice, team:nobody]")},
        P,
        6,
        "E-CONFIG-UNKNOWN-TEAM",
    ),
    ("policy-bad-regex", {P: policy() + "    ticket: '(['\n"}, P, 10, "E-CONFIG-REGEX"),
    # Ticket patterns run on RE2 (linear time), which has no backreferences or lookarounds.
    (
        "policy-ticket-backreference",
        {P: policy() + "    ticket: '(INC)-\\1'\n"},
        P,
        10,
        "E-CONFIG-REGEX",
    ),
    (
        "policy-ticket-lookahead",
        {P: policy() + "    ticket: '(?=I)INC'\n"},
        P,
        10,
        "E-CONFIG-REGEX",
    ),
    ("policy-scope-short-project", {P: policy(scopes="[projects/ab]")}, P, 4, "E-CONFIG-SCOPE"),
    ("policy-scope-folder-glob-bad", {P: policy(scopes="['folders/x*']")}, P, 4, "E-CONFIG-SCOPE"),
    ("policy-role-glob", {P: policy(roles="['roles/*']")}, P, 5, "E-CONFIG-ROLE"),
    ("policy-scope-any", {P: policy(scopes="['*']")}, P, 4, "E-CONFIG-SCOPE"),
    (
        "policy-scope-incomplete",
        {P: policy(provider="aws", scopes="['1234']", roles="[ReadOnlyAccess]")},
        P,
        4,
        "E-CONFIG-SCOPE",
    ),
    ("policy-basic-role", {P: policy(roles="[roles/editor]")}, P, 5, "E-CONFIG-BASIC-ROLE"),
    ("policy-approvals-negative", {P: policy(approvals="-1")}, P, 8, "E-SCHEMA-VALUE"),
    ("policy-approvals-word", {P: policy(approvals="one")}, P, 8, "E-SCHEMA-TYPE"),
    ("policy-approvals-octal", {P: policy(approvals="0o1")}, P, 8, "E-SCHEMA-TYPE"),
    ("policy-approvals-unreachable", {P: policy(approvals="3")}, P, 8, "E-CONFIG-APPROVALS"),
    ("policy-max-duration", {P: policy(max_duration="forever")}, P, 9, "E-CONFIG-DURATION"),
    (
        "policy-identity-gcp",
        {P: "identities:\n  zed: {gcp: zed@example.com}\n"},
        P,
        2,
        "E-CONFIG-IDENTITY",
    ),
    (
        "policy-identity-aws",
        {P: "identities:\n  zed: {aws: 'zed smith'}\n"},
        P,
        2,
        "E-CONFIG-IDENTITY",
    ),
    (
        "policy-provider-missing-key",
        {
            P: None,
            "policies/base.yaml": None,
            "policies/p.yaml": "providers:\n  aws: {region: us-east-1}\n",
        },
        "policies/p.yaml",
        2,
        "E-SCHEMA-MISSING",
    ),
    ("policy-shape", {P: "- name: x\n"}, P, 1, "E-SCHEMA-SHAPE"),
    ("policy-other-file", {"policies/notes.txt": "hi"}, "policies/notes.txt", 1, "E-FILE-LAYOUT"),
]


@pytest.mark.parametrize(
    ("files", "file", "line", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rejection(
    repo: Path, files: dict[str, str | bytes | None], file: str, line: int, code: str
) -> None:
    write_files(repo, files)
    result = run_validate(repo)
    assert result.exit_code == 1, result.output
    found = [(f["file"], f["line"], f["code"]) for f in result.findings]
    assert (file, line, code) in found, found
    assert not result.json["ok"]


def test_aws_policy_without_provider_settings(repo: Path) -> None:
    text = (repo / "policies/base.yaml").read_text()
    start = text.index("providers:")
    end = text.index("policies:")
    (repo / "policies/base.yaml").write_text(text[:start] + text[end:])
    result = run_validate(repo)
    assert result.exit_code == 1
    codes = {f["code"] for f in result.findings}
    assert "E-CONFIG-PROVIDER" in codes


def test_symlinked_request_is_refused(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text(GOOD_REQUEST)
    os.symlink(secret, repo / "requests/alice/link.yaml")
    os.symlink(tmp_path, repo / "requests/mallory")
    result = run_validate(repo)
    assert result.exit_code == 1
    found = {(f["file"], f["line"], f["code"]) for f in result.findings}
    assert ("requests/alice/link.yaml", 1, "E-FILE-SYMLINK") in found
    assert ("requests/mallory", 1, "E-FILE-SYMLINK") in found


def test_duplicate_names_both_files(repo: Path) -> None:
    write_files(repo, {"policies/zz.yaml": policy(name="payments-db-read")})
    result = run_validate(repo)
    dup = [f for f in result.findings if f["code"] == "E-CONFIG-DUPLICATE"]
    assert dup and dup[0]["file"] == "policies/zz.yaml"
    assert "policies/base.yaml:" in dup[0]["message"]


def test_all_problems_at_once(repo: Path) -> None:
    write_files(
        repo, {R: "requester: alice\nprovider: azure\nscope: x\nrole: y\nreason: short\nfoo: 1\n"}
    )
    result = run_validate(repo)
    codes = sorted(f["code"] for f in result.findings)
    assert codes == ["E-REQ-NO-END", "E-REQ-REASON", "E-SCHEMA-UNKNOWN-KEY", "E-SCHEMA-VALUE"]
