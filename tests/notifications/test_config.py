"""The ``notifications:`` section of the policies: each type's keys, variable names (never
values), events; entries from every file add up. Table-driven over policy files on disk."""

from __future__ import annotations

import pytest

from reconciler.repo import WorkTree, load_config
from tests.reconcile.conftest import POLICY


def config_of(tmp_path, section: str):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "access.yaml").write_text(POLICY + "notifications:\n" + section)
    return load_config(WorkTree(tmp_path))


@pytest.mark.parametrize(
    ("section", "code", "words"),
    [
        pytest.param(
            "  - type: webhook\n    url_env: HOOK\n",
            "E-CONFIG-NOTIFY",
            "secret_env",
            id="webhook-without-secret",
        ),
        pytest.param(
            "  - type: slack\n    url_env: A\n    secret_env: B\n",
            "E-CONFIG-NOTIFY",
            "takes no secret_env",
            id="slack-with-secret",
        ),
        pytest.param(
            "  - type: github-issue\n    url_env: A\n",
            "E-CONFIG-NOTIFY",
            "takes no url_env",
            id="issue-with-url",
        ),
        pytest.param(
            "  - type: slack\n    url_env: https://hooks.slack.com/x\n",
            None,
            "environment variable",
            id="a-url-instead-of-a-name",
        ),
        pytest.param(
            "  - type: slack\n    url_env: S\n    events: [grantd]\n",
            None,
            "must be one of",
            id="unknown-event",
        ),
        pytest.param(
            "  - type: email\n", None, "slack, webhook or github-issue", id="unknown-type"
        ),
    ],
)
def test_refused(tmp_path, section: str, code: str | None, words: str) -> None:
    config, findings = config_of(tmp_path, section)
    errors = [f for f in findings if f.severity == "error"]
    assert errors, section
    assert any(words in f.message and (code is None or f.code == code) for f in errors), errors
    assert config.notifications == ()


def test_parsed(tmp_path) -> None:
    config, findings = config_of(
        tmp_path,
        "  - type: slack\n    url_env: SLACK\n    events: [granted, failed]\n"
        "  - type: webhook\n    url_env: HOOK\n    secret_env: HOOK_SECRET\n"
        "  - type: github-issue\n",
    )
    assert [f for f in findings if f.severity == "error"] == []
    slack, hook, issue = config.notifications
    assert (slack.type, slack.url_env, slack.events) == ("slack", "SLACK", {"granted", "failed"})
    assert slack.wants("failed") and not slack.wants("revoked")
    assert (hook.secret_env, hook.events) == ("HOOK_SECRET", None) and hook.wants("revoked")
    assert issue.type == "github-issue" and issue.line > 1
