"""Rendering plans: Terraform-like text, the SPEC's JSON, an inert Markdown job summary."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from reconciler.core.models import Change, ChangeKind, ChangeResult, Grant, Plan
from reconciler.core.render import (
    Problem,
    apply_json,
    plan_json,
    render_annotations,
    render_markdown,
    render_text,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
HOSTILE = "requests/eve/x|<img src=x>@everyone`::error::pwn\n.yaml"


def grant(request: str = "requests/alice/a.yaml", **kw) -> Grant:
    base = {
        "provider": "gcp",
        "scope": "projects/app-prod-a",
        "role": "roles/cloudsql.viewer",
        "principal": "user:alice@example.com",
        "request": request,
        "begin": NOW - H,
        "end": NOW + H,
        "pr": 7,
    }
    return Grant(**{**base, **kw})


PLAN = Plan(
    grant=(Change(ChangeKind.GRANT, grant(), "allowed by policy p"),),
    revoke=(Change(ChangeKind.REVOKE, grant("requests/bob/b.yaml", end=NOW - H), "expired"),),
    keep=(Change(ChangeKind.KEEP, grant("requests/carol/c.yaml"), "in place"),),
)


def test_text_reads_like_terraform() -> None:
    text = render_text(PLAN, NOW)
    assert (
        "  + grant  user:alice@example.com  roles/cloudsql.viewer  on gcp projects/app-prod-a"
        in text
    )
    assert "  - revoke" in text and "    keep" in text
    assert "until 2026-12-01T13:00:00Z (1h0m left)" in text or "(1h left)" in text
    assert "request: requests/alice/a.yaml (PR #7)" in text
    assert "why: expired" in text
    assert "Plan: 1 to grant, 1 to revoke, 1 unchanged." in text


def test_text_strips_control_characters() -> None:
    p = Plan(grant=(Change(ChangeKind.GRANT, grant(HOSTILE), "why\x1b[31m"),))
    text = render_text(p, NOW)
    assert "\x1b" not in text and "pwn\n" not in text


def test_json_is_the_spec_shape() -> None:
    payload = plan_json(PLAN, [Problem("E-X", "bad", file="requests/x/y.yaml", line=3)])
    assert list(payload) == ["grant", "revoke", "keep", "errors"]
    assert payload["grant"][0] == {
        "request": "requests/alice/a.yaml",
        "principal": "user:alice@example.com",
        "provider": "gcp",
        "scope": "projects/app-prod-a",
        "role": "roles/cloudsql.viewer",
        "begin": "2026-12-01T11:00:00Z",
        "end": "2026-12-01T13:00:00Z",
    }
    assert payload["errors"][0]["file"] == "requests/x/y.yaml"
    assert payload["errors"][0]["line"] == 3


def test_apply_json_adds_results() -> None:
    results = [ChangeResult(PLAN.grant[0], ok=False, message="503")]
    payload = apply_json(PLAN, [], results)
    assert payload["results"][0]["ok"] is False
    assert payload["results"][0]["action"] == "grant"
    assert payload["results"][0]["message"] == "503"


def test_markdown_summary_is_inert() -> None:
    p = Plan(grant=(Change(ChangeKind.GRANT, grant(HOSTILE), "<b>@everyone</b>"),))
    results = [ChangeResult(p.grant[0], ok=False, message="<script>x</script>")]
    md = render_markdown(p, NOW, [Problem("E-X", "@everyone <b>", file=HOSTILE)], results)
    # Inside code spans text is literal; everywhere else no markup or mention survives.
    prose = re.sub(r"`[^`]*`", "", md)
    assert "<img" not in prose and "<script>" not in prose and "<b>" not in prose
    assert "@everyone" not in prose
    for row in (line for line in md.splitlines() if line.startswith("| +")):
        assert row.count(" | ") == 7, row  # a pipe in a value never adds a column


def test_annotations_cannot_inject_commands() -> None:
    results = [
        ChangeResult(
            Change(ChangeKind.GRANT, grant(HOSTILE), "x"), ok=False, message="a\n::error::b"
        )
    ]
    lines = render_annotations([Problem("E-X", "m\n::warning::n", file=HOSTILE, line=2)], results)
    assert all("\n" not in line for line in lines)
    assert all("\r" not in line and line.startswith("::error ") for line in lines), lines


def test_summary_lists_every_change_but_caps_unchanged_grants() -> None:
    keeps = tuple(
        Change(ChangeKind.KEEP, grant(f"requests/u/r-{i}.yaml"), "in place") for i in range(500)
    )
    md = render_markdown(Plan(grant=PLAN.grant, keep=keeps), NOW)
    assert md.count("| = keep |") == 200 and md.count("| + grant |") == 1
    assert "300 more unchanged" in md


CONTROLS = "\x1b[31m\x07\r\x9b\u202e\u2066\u2028"
RAW = set("\x1b\x07\r\x9b\u202e\u2066\u2028")


def test_text_shows_control_and_bidi_characters_as_escapes() -> None:
    g = grant(f"requests/eve/x{CONTROLS}.yaml", role=f"roles/x{CONTROLS}")
    p = Plan(grant=(Change(ChangeKind.GRANT, g, f"why{CONTROLS}"),))
    problems = [Problem("E-X", f"bad{CONTROLS}", file="::error::x.yaml")]
    results = [ChangeResult(p.grant[0], ok=False, message=f"cloud said{CONTROLS}")]
    text = render_text(p, NOW, problems, results)
    assert not RAW & set(text)
    assert "\\x1b[31m\\x07\\r\\x9b\\u202e\\u2066\\u2028" in text  # seen, not obeyed
    assert all(not line.lstrip().startswith("::") for line in text.splitlines())


def test_json_strings_carry_no_control_characters() -> None:
    g = grant(f"requests/eve/x{CONTROLS}.yaml", scope=f"projects/x{CONTROLS}")
    p = Plan(grant=(Change(ChangeKind.GRANT, g, f"why{CONTROLS}"),))
    results = [ChangeResult(p.grant[0], ok=False, message=f"cloud said{CONTROLS}")]
    payload = apply_json(p, [Problem("W-X", f"warn{CONTROLS}\tend", severity="warning")], results)
    strings = _strings(payload)
    assert not any(RAW & set(s) for s in strings), strings
    assert payload["errors"][0]["message"].endswith("\\u2028\tend")  # tabs are kept


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_markdown_table_keeps_its_columns_whatever_the_values_hold() -> None:
    hostile = "a|b`c\nd\\|e"
    g = grant(f"requests/eve/{hostile}.yaml", role=hostile, scope=hostile, principal=hostile)
    p = Plan(grant=(Change(ChangeKind.GRANT, g, hostile),))
    results = [ChangeResult(p.grant[0], ok=False, message=hostile)]
    md = render_markdown(p, NOW, [], results)
    header = next(line for line in md.splitlines() if line.startswith("|  | who"))
    row = next(line for line in md.splitlines() if line.startswith("| +"))
    # GitHub's table parser splits on every pipe not preceded by a backslash.
    assert len(re.split(r"(?<!\\)\|", row)) == len(header.split("|"))
    assert "\n" not in row and all(code.count("`") == 2 for code in re.findall(r"`[^`]*`", row))
