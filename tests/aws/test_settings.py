"""Fields the decision does not need never fail an account (SessionDuration), and the
typed ``providers.aws`` settings (concurrency)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import cli
from reconciler.core.models import Change, ChangeKind, Grant
from reconciler.errors import ConfigError
from reconciler.providers.aws import AwsSettings, Tuning, session_duration
from reconciler.sandbox.aws import AwsSandbox, SeededInstance

from .conftest import ACCOUNT_A, ALICE, BOB, aws_config, provider_for

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("PT1H", timedelta(hours=1)),
        ("PT12H", timedelta(hours=12)),
        ("PT30M", timedelta(minutes=30)),
        (3600, timedelta(hours=1)),  # moto, when no SessionDuration was set
        (None, None),
        ("banana", None),
        ("PT0S", None),
        ("", None),
        (0, None),
        (-5, None),
        (True, None),
        (1.5, None),
        ({"hours": 1}, None),
    ],
    ids=repr,
)
def test_session_duration_never_raises(raw: object, expected: timedelta | None) -> None:
    assert session_duration(raw) == expected


@pytest.fixture
def odd(aws: AwsSandbox) -> SeededInstance:
    """ReadOnly with a SessionDuration nobody can read, Admin with none (moto: 3600)."""
    return aws.seed(users=[ALICE, BOB], permission_sets={"ReadOnly": "banana", "Admin": None})


def test_unreadable_session_duration_leaves_the_account_managed(
    aws: AwsSandbox, odd: SeededInstance
) -> None:
    aws.assign(odd, ACCOUNT_A, "ReadOnly", BOB)
    provider = provider_for(aws_config(odd))
    obs = provider.observe([ACCOUNT_A], NOW)
    assert not obs.failures
    assert {(g.role, g.principal) for g in obs.grants[ACCOUNT_A]} == {("ReadOnly", BOB)}
    assert len(obs.warnings) == 1 and "'ReadOnly'" in obs.warnings[0], obs.warnings
    [bob] = obs.grants[ACCOUNT_A]
    grant = Change(ChangeKind.GRANT, Grant("aws", ACCOUNT_A, "ReadOnly", ALICE), "test")
    admin = Change(ChangeKind.GRANT, Grant("aws", ACCOUNT_A, "Admin", ALICE), "test")
    results = provider.apply(ACCOUNT_A, [Change(ChangeKind.REVOKE, bob, "test"), grant, admin], NOW)
    assert all(r.ok and r.verified for r in results), results
    assert aws.assignments(odd, ACCOUNT_A) == {
        ("ReadOnly", "USER", ALICE),
        ("Admin", "USER", ALICE),
    }
    durations = {name: d for name, _, d in provider.describe_permission_sets()}
    assert durations == {"ReadOnly": None, "Admin": timedelta(hours=1)}


# -- concurrency ---------------------------------------------------------------------------


def with_concurrency(seeded: SeededInstance, value: object) -> AwsSettings:
    config = aws_config(seeded)
    raw = {**seeded.provider_settings(), "concurrency": value}
    return AwsSettings.from_config(replace(config, providers={"aws": raw}))


@pytest.mark.parametrize(
    ("policies", "option", "workers"),
    [
        (None, None, 8),  # nothing said: the default
        (3, None, 3),  # providers.aws.concurrency in policies/
        (3, 16, 16),  # a --concurrency flag wins
        (None, 2, 2),
        (None, 500, 64),  # bounded
    ],
    ids=["default", "policies", "flag-wins", "flag-only", "bounded"],
)
def test_concurrency_comes_from_the_caller_then_the_policies(
    seeded: SeededInstance, policies: int | None, option: int | None, workers: int
) -> None:
    raw = dict(seeded.provider_settings())
    if policies is not None:
        raw["concurrency"] = policies  # type: ignore[assignment]
    config = replace(aws_config(seeded), providers={"aws": raw})
    options = {} if option is None else {"concurrency": option}
    provider = provider_for(config, tuning=Tuning(poll_first=0.01), **options)
    assert provider.tuning.workers == workers
    assert provider.tuning.poll_first == 0.01  # the rest of the tuning is kept
    assert AwsSettings.from_config(config).concurrency == policies


@pytest.mark.parametrize("value", [0, 65, True, "8", 2.5])
def test_concurrency_out_of_range_is_a_configuration_error(
    seeded: SeededInstance, value: object
) -> None:
    with pytest.raises(ConfigError, match=r"providers\.aws\.concurrency"):
        with_concurrency(seeded, value)


def test_concurrency_is_in_the_settings_schema() -> None:
    from reconciler.core.providers import spec

    schema = spec("aws").settings_schema
    assert schema["properties"]["concurrency"]["minimum"] == 1
    assert schema["properties"]["concurrency"]["maximum"] == 64
    assert "concurrency" not in schema["required"]


@pytest.mark.parametrize(
    ("value", "ok"), [("16", True), ("0", False), ("65", False), ("'8'", False)]
)
def test_validate_checks_the_concurrency_setting(
    tmp_path: Path, seeded: SeededInstance, value: str, ok: bool
) -> None:
    s = seeded.provider_settings()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.yaml").write_text(
        "identities:\n  alice: {aws: alice@example.com}\nproviders:\n  aws:\n"
        f"    instance_arn: {s['instance_arn']}\n    identity_store_id: {s['identity_store_id']}\n"
        f"    region: {s['region']}\n    concurrency: {value}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["validate", "--repo", str(tmp_path), "--format", "json"])
    findings = json.loads(result.stdout)["findings"]
    if ok:
        assert result.exit_code == 0 and findings == [], result.output
    else:
        assert result.exit_code == 1, result.output
        assert [(f["file"], f["line"]) for f in findings] == [("policies/p.yaml", 8)]
        assert "providers.aws.concurrency" in findings[0]["message"]
