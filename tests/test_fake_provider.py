"""Providers are plug-ins: a third cloud is one registered class, with no edit to the core.

The fake ``acme`` provider below declares its scopes, roles, principals and settings; the
schemas, ``accessctl validate`` and policy evaluation pick it up from the registry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler import schema as schemas
from reconciler.cli import cli
from reconciler.core import providers
from reconciler.core.loader import load
from reconciler.core.policy import evaluate
from reconciler.core.policyfile import check_policy_file, merge_config
from reconciler.core.providers import ProviderSpec, SettingProblem, register, unregister
from reconciler.core.validate import check_request, check_request_now

NOW = "2026-12-01T09:00:00Z"
REQUEST = "requests/alice/tenant-debug.yaml"


class Acme(ProviderSpec):
    name = "acme"
    title = "Acme Cloud"
    scope_pattern = r"^tenants/[a-z0-9-]+$"
    scope_help = "tenants/<id>"
    role_pattern = r"^[a-z]+$"
    role_help = "a role name in lowercase letters"
    principal_pattern = r"^[a-z]+@acme\.test$"
    principal_help = "an Acme user such as alice@acme.test"
    future_start = False
    settings_required = True
    settings_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["endpoint"],
        "properties": {
            "endpoint": {"type": "string", "pattern": "^https://[a-z.]+$"},
            "timeout": {"type": "integer", "minimum": 1, "maximum": 60},
            "retries": {"type": "integer", "minimum": 0, "maximum": 5},
        },
    }

    def settings_problems(self, raw: Mapping[str, Any]) -> list[SettingProblem]:
        # A cross-field rule a schema cannot say: retries must fit in the timeout.
        if raw.get("retries", 0) > raw.get("timeout", 60):
            return [SettingProblem("retries", "must not exceed timeout")]
        return []


@pytest.fixture
def acme() -> Iterator[type[Acme]]:
    register(Acme)
    try:
        yield Acme
    finally:
        unregister("acme")


POLICIES = """\
teams:
  tenant-oncall: [alice]
identities:
  alice: {acme: alice@acme.test}
providers:
  acme: {endpoint: "https://api.acme.test", timeout: 30}
policies:
  - name: tenant-debug
    provider: acme
    scopes: [tenants/payments, 'tenants/staging-*']
    roles: [reader, debugger]
    requesters: [team:tenant-oncall]
    approvers: []
    approvals: 0
    max_duration: 4h
"""


def request(scope: str = "tenants/payments", role: str = "debugger") -> str:
    return (
        "requester: alice\n"
        "provider: acme\n"
        f"scope: {scope}\n"
        f"role: {role}\n"
        "reason: Debug the stuck payments tenant\n"
        "duration: 2h\n"
    )


def access_repo(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in {"policies/acme.yaml": POLICIES, **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def validate(repo: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        cli,
        ["validate", "--repo", str(repo), "--at", NOW, "--format", "json"],
        catch_exceptions=False,
    )
    return result.exit_code, json.loads(result.stdout)


def findings(out: dict[str, Any]) -> set[tuple[str, int, str]]:
    return {(f["file"], f["line"], f["code"]) for f in out["findings"]}


# -- the command line -----------------------------------------------------------------------


@pytest.mark.usefixtures("acme")
def test_validate_accepts_a_request_for_the_registered_provider(tmp_path: Path) -> None:
    repo = access_repo(tmp_path, {REQUEST: request()})
    code, out = validate(repo)
    assert code == 0, out
    assert out["requests"] == [
        {
            "file": REQUEST,
            "requester": "alice",
            "provider": "acme",
            "scope": "tenants/payments",
            "role": "debugger",
            "policy": "tenant-debug",
        }
    ]


@pytest.mark.usefixtures("acme")
def test_a_glob_in_the_policy_covers_a_matching_scope(tmp_path: Path) -> None:
    repo = access_repo(tmp_path, {REQUEST: request(scope="tenants/staging-eu")})
    code, out = validate(repo)
    assert code == 0, out


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize(
    ("scope", "role", "line", "code"),
    [
        ("accounts/payments", "debugger", 3, "E-REQ-SCOPE"),
        ("tenants/Payments", "debugger", 3, "E-REQ-SCOPE"),
        ("tenants/payments", "Debugger", 4, "E-REQ-ROLE"),
        ("tenants/other", "debugger", 3, "E-POLICY-NONE"),
    ],
    ids=["scope-shape", "scope-case", "role", "no-policy"],
)
def test_validate_rejects_a_bad_request_at_its_line(
    tmp_path: Path, scope: str, role: str, line: int, code: str
) -> None:
    repo = access_repo(tmp_path, {REQUEST: request(scope=scope, role=role)})
    exit_code, out = validate(repo)
    assert exit_code == 1
    assert (REQUEST, line, code) in findings(out), out["findings"]
    if code == "E-REQ-SCOPE":
        message = next(f["message"] for f in out["findings"] if f["code"] == code)
        assert message.startswith("scope: for acme must be tenants/<id>")


def test_without_the_registration_the_provider_is_unknown(tmp_path: Path) -> None:
    repo = access_repo(tmp_path, {REQUEST: request()})
    code, out = validate(repo)
    assert code == 1
    assert (REQUEST, 2, "E-SCHEMA-VALUE") in findings(out)
    assert ("policies/acme.yaml", 6, "E-SCHEMA-UNKNOWN-KEY") in findings(out)  # providers.acme


@pytest.mark.usefixtures("acme")
@pytest.mark.parametrize(
    ("policy_change", "line", "code"),
    [
        (("[tenants/payments,", "[tenants/pay_ments,"), 10, "E-CONFIG-SCOPE"),
        (("[reader, debugger]", "[reader, '*']"), 11, "E-CONFIG-ROLE"),
        (("{acme: alice@acme.test}", "{acme: alice@evil.test}"), 4, "E-CONFIG-IDENTITY"),
        (("timeout: 30}", "timeout: 30, region: eu}"), 6, "E-SCHEMA-UNKNOWN-KEY"),
        (("timeout: 30}", "timeout: 2, retries: 3}"), 6, "E-CONFIG-PROVIDER"),
        (('acme: {endpoint: "https://api.acme.test", timeout: 30}', "{}"), 9, "E-CONFIG-PROVIDER"),
    ],
    ids=[
        "scope",
        "role-glob",
        "identity",
        "unknown-setting",
        "settings-problem",
        "settings-required",
    ],
)
def test_validate_rejects_a_bad_policy_for_the_provider_at_its_line(
    tmp_path: Path, policy_change: tuple[str, str], line: int, code: str
) -> None:
    old, new = policy_change
    assert old in POLICIES
    repo = access_repo(tmp_path, {"policies/acme.yaml": POLICIES.replace(old, new)})
    exit_code, out = validate(repo)
    assert exit_code == 1
    assert ("policies/acme.yaml", line, code) in findings(out), out["findings"]


# -- the schema -----------------------------------------------------------------------------


@pytest.mark.usefixtures("acme")
def test_the_policy_schema_takes_the_settings_the_provider_declares() -> None:
    checker = schemas.checker("policy")

    def problems(settings: str) -> list[str]:
        doc = load(f"providers:\n  acme: {settings}\n".encode(), "policies/p.yaml")
        return [f.code for _, f in checker.check(doc, doc.data)]

    assert problems('{endpoint: "https://api.acme.test", timeout: 5, retries: 1}') == []
    assert problems('{endpoint: "https://api.acme.test"}') == []
    assert problems('{endpoint: "https://api.acme.test", timeout: 0}') == ["E-SCHEMA-VALUE"]
    assert problems('{endpoint: "https://api.acme.test", zone: eu}') == ["E-SCHEMA-UNKNOWN-KEY"]
    assert problems("{}") == ["E-SCHEMA-MISSING"]
    assert schemas.schema("policy")["properties"]["providers"]["properties"]["acme"] == (
        Acme.settings_schema
    )


@pytest.mark.usefixtures("acme")
def test_the_request_schema_lists_the_provider() -> None:
    provider = schemas.schema("request")["properties"]["provider"]
    assert provider["enum"] == [*providers.names()]
    assert provider["enum"][-1] == "acme"
    assert provider["x-message"] == "must be gcp, aws or acme"


# -- the core -------------------------------------------------------------------------------


@pytest.mark.usefixtures("acme")
def test_policy_evaluation_allows_it() -> None:
    pf = check_policy_file(load(POLICIES.encode(), "policies/acme.yaml"), schemas.checker("policy"))
    config, problems = merge_config([pf])
    assert pf.doc.findings == [] and problems == []
    assert config.providers["acme"] == {"endpoint": "https://api.acme.test", "timeout": 30}
    doc = load(request().encode(), REQUEST)
    access = check_request(doc, schemas.checker("request"))
    assert access is not None, doc.findings
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    decision = evaluate(access, config, approved_at=at, approvals=None)
    assert decision.allowed and decision.policy == "tenant-debug"
    assert decision.principal == "alice@acme.test"
    assert check_request_now(access, config, at)[1] == []
