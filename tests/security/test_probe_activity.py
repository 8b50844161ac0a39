"""Probes of ``accessctl activity`` by a cloud principal who wants their calls hidden or
their log entries to speak: a principal spelled with the Cloud Logging filter's own syntax,
a CloudTrail Lake store id spelled with SQL, and log entries whose resource and method
carry newlines, ANSI escapes, bidi overrides, Markdown/HTML, mentions and workflow
commands, shown in the text, the annotations, the job summary and the Slack and webhook
notifications. The CLI as a user runs it, the GCP emulator's Cloud Logging over HTTP
(google-cloud-logging), real git, a local receiver for the sinks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.timeutil import parse_rfc3339
from reconciler.sandbox.gcp_emulator import GcpEmulator
from tests.activity.conftest import AWS_POLICIES, POLICIES, activity, add_request
from tests.audit.conftest import GitRepo, run_cli
from tests.notifications.conftest import receiver  # noqa: F401 - a fixture pytest finds by name
from tests.notifications.test_apply import SLACK, WEBHOOK, env_for, webhook_bodies
from tests.support.emulators import running_gcp

PAY = "projects/payments-prod"
LEDGER = "projects/ledger-prod"
# Valid for the identities schema (no space, '@' or ':' before the domain), and written in
# the filter language: unquoted it would close the principal list and match every entry.
SLY = 'x")OR(logName="cloudaudit\\@example.com'
IDENTITIES = f"""\
identities:
  alice: {{gcp: 'user:alice@example.com', aws: alice@example.com}}
  mallory: {{gcp: 'user:mallory@example.com', aws: mallory@example.com}}
  eve: {{gcp: 'user:{SLY}'}}
providers:
  gcp: {{}}
"""
# What a principal controls in their own log entries: the name of what they touch.
EVIL = (
    "db\n::error file=x::forged\x1b[2J\u202eevil\u202c <img src=x> [link](https://e.example) "
    "@security-team <!channel> *bold* `tick` | cell"
)


def record(emu: GcpEmulator, scope: str, who: str, at: str, method: str, **kw) -> None:
    emu.logging.record(
        scope,
        who,
        at=parse_rfc3339(at),
        service="cloudsql.googleapis.com",
        method=method,
        resource=kw.pop("resource", f"{scope}/instances/db"),
        log="data_access",
        **kw,
    )


@pytest.fixture
def gcp() -> Iterator[GcpEmulator]:
    with running_gcp(PAY, LEDGER) as emu:
        record(emu, PAY, "alice@example.com", "2026-12-01T09:30:00Z", "instances.get")
        record(emu, PAY, "alice@example.com", "2026-12-01T10:00:00Z", EVIL, resource=EVIL)
        # calls by people the identities do not know, in the same logs
        record(emu, PAY, "stranger@example.com", "2026-12-01T09:40:00Z", "stranger-call")
        record(emu, LEDGER, "stranger@example.com", "2026-12-01T09:41:00Z", "x", denied=True)
        # eve's own refused calls, under her literal address
        record(emu, LEDGER, SLY, "2026-12-01T09:50:00Z", "eve-tries", denied=True)
        record(emu, LEDGER, "mallory@example.com", "2026-12-01T09:55:00Z", EVIL, denied=True)
        yield emu


def make_repo(tmp_path: Path, extra: str = "") -> GitRepo:
    repo = GitRepo(tmp_path / "access")
    repo.commit({"policies/access.yaml": POLICIES + IDENTITIES + extra}, "2026-11-30T12:00:00Z")
    add_request(repo, "requests/alice/db.yaml", "2026-12-01T09:00:00Z", scope=PAY)
    return repo


def test_a_principal_spelled_in_filter_syntax_reads_only_what_it_names(tmp_path, gcp) -> None:
    """Refused already: each e-mail is a quoted string in the filter (quotes and
    backslashes escaped), so eve's spelling neither widens the query to everyone's entries
    nor loses her own refused call."""
    code, out, err = activity(make_repo(tmp_path), env={"ACCESSCTL_GCP_ENDPOINT": gcp.url})
    assert code == 0, err
    actions = [e["action"] for e in out["grants"][0]["events"]]
    assert len(actions) == 2 and actions[0] == "instances.get"  # not the stranger's call
    seen = {(u["principal"], u["action"]) for u in out["unauthorized"]}
    assert (f"user:{SLY}", "eve-tries") in seen  # her address round-trips through the quoting
    assert not any("stranger" in json.dumps(u) for u in out["unauthorized"])
    # The server was asked for exactly the known addresses: the filter parses (in the
    # emulator, as in Cloud Logging) to a match on eve's literal address, not on a log name.
    from reconciler.sandbox.gcp_logging import compile_filter

    [(_, text)] = [(n, t) for n, t in gcp.logging.lists if n == (LEDGER,)]
    matches = compile_filter(text)
    entry = {
        "logName": f"{LEDGER}/logs/cloudaudit.googleapis.com%2Fdata_access",
        "timestamp": "2026-12-01T09:50:00Z",
        "protoPayload": {"authenticationInfo": {"principalEmail": "stranger@example.com"}},
    }
    assert not matches(entry)
    entry["protoPayload"]["authenticationInfo"]["principalEmail"] = SLY
    assert matches(entry)


def test_a_store_id_spelled_in_sql_is_refused_by_validation(tmp_path) -> None:
    """Refused already: the CloudTrail Lake store id (the one value in the query's FROM
    that is not a checked account id or a time we format) must match the settings schema;
    a quote, space or comment is a finding naming the file and line, so the gate refuses
    the policy change that would bring it to main."""
    settings = (
        "  aws: {instance_arn: 'arn:aws:sso:::instance/ssoins-0000000000000000', "
        "identity_store_id: d-0000000000, region: us-east-1, activity_source: cloudtrail-lake, "
        'activity_event_data_store: "eds WHERE 1=1 --"}\n'
    )
    repo = GitRepo(tmp_path / "access")
    text = POLICIES + AWS_POLICIES + IDENTITIES + settings
    repo.commit({"policies/access.yaml": text}, "2026-11-30T12:00:00Z")
    proc = run_cli("validate", "--repo", str(repo.root))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "policies/access.yaml:" in out and "activity_event_data_store" in out
    assert "Traceback" not in proc.stderr


def _no_control(text: str) -> None:
    """Terminal and log text: no escape sequence, no reordering, no workflow command."""
    for bad in ("\x1b", "\u202e", "\n::error file=x"):
        assert bad not in text, (bad, text)


def _no_markup(text: str) -> None:
    """Markdown: none of the above, and no tag, mention or link either."""
    _no_control(text)
    for bad in ("<img", "@security-team", "](https://"):
        assert bad not in text, (bad, text)


def _no_slack_markup(text: str) -> None:
    """Slack mrkdwn: no control, no <!channel>, no <url|label> link, no extra line."""
    _no_control(text)
    for bad in ("<img", "<!channel>", "\n::error"):
        assert bad not in text, (bad, text)


def test_log_entries_never_speak_in_outputs_or_notifications(tmp_path, gcp, receiver) -> None:  # noqa: F811
    """A resource and method name chosen by the principal are shown, never obeyed: one
    log line each (no workflow command, no escape sequence, no reordering), inert in the
    job summary, and in Slack no mention, link, new line or bidi override."""
    repo = make_repo(tmp_path, "notifications:\n" + WEBHOOK + SLACK)
    summary = tmp_path / "summary.md"
    env = env_for(receiver, ACCESSCTL_GCP_ENDPOINT=gcp.url, GITHUB_STEP_SUMMARY=str(summary))
    code, out, err = activity(repo, "--notify", env=env, fmt="github")
    assert code == 0, err
    for line in out.splitlines():
        assert not line.startswith("::") or line.startswith(("::warning ", "::error title="))
        assert "forged" not in line or not line.lstrip().startswith("::error file=x")
    _no_control(out)
    _no_control(err)
    assert "instances.get" in out and "evil" in out  # her calls are still there to read
    markdown = summary.read_text()
    _no_markup(markdown)
    assert "mallory" in markdown
    slack = [d.json()["text"] for d in receiver.at("/services/T000/B000/SLACKSECRETPATH")]
    attempts = [t for t in slack if "unauthorized-attempt" in t]
    assert attempts, slack
    for text in slack:
        _no_slack_markup(text)
    # the event's own sentence stays one line: no fake "Who:" or "Why:" line can follow
    assert all(t.count("\n") <= 4 for t in attempts)
    for body in webhook_bodies(receiver):
        for value in body.values():
            if isinstance(value, str):
                assert "\x1b" not in value and "\u202e" not in value
