"""Text from files reaches the output of validate, plan, status and audit only through
core/escape: no raw control, bidi or invisible character in any format, no workflow
command, Markdown tables that keep their columns, and JSON that still parses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.escape import (
    annotation,
    clean_json,
    clean_text,
    csv_cell,
    log_line,
    markdown_cell,
    markdown_code,
    markdown_text,
    terminal_text,
)
from tests.support.emulators import running_gcp

from .conftest import NOW, POLICY, SCOPE, GitRepo, Result, request, run_cli
from .test_injection import check_output

# ESC (ANSI), BEL, CR, C1 (0x9b is a one-byte CSI, 0x85 a line break), bidi overrides and
# isolates, line/paragraph separators, a zero-width space: none may be printed as such.
RAW = "\x1b\x07\r\x9b\x85\u202e\u2066\u2069\u2028\u2029\u200b"
HOSTILE = "\x1b[31m\x07\x9b\u202e\u2066x\u2069\u2028"
YAML_HOSTILE = json.dumps(HOSTILE)[1:-1]  # the same, as escapes in a double-quoted YAML string
CELL = re.compile(r"(?<!\\)\|")  # GitHub's table parser splits on every unescaped pipe

BAD_POLICY = f"""\
teams:
  "x|y`z{YAML_HOSTILE}": [alice]
  oncall2: "not | a `list`"
"""


def raw_in(text: str, allowed: str = "") -> set[str]:
    return set(RAW) - set(allowed) & set(text)


def strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def check_json(text: str) -> None:
    payload = json.loads(text)
    for s in strings(payload):
        assert not raw_in(s), s


def check_tables(md: str) -> int:
    """Every row of every table has its header's column count; returns the rows seen."""
    rows, columns = 0, None
    for line in md.splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        cells = len(CELL.split(line))
        if columns is None:
            columns = cells
        assert cells == columns, line
        rows += 1
    return rows


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Policies and requests that validate reports: names and values with pipes, backticks,
    escapes, bidi and C1 characters."""
    repo = GitRepo(tmp_path_factory.mktemp("escaping") / "bad")
    repo.commit(
        {
            "policies/p.yaml": POLICY,
            "policies/a|b`c.yaml": BAD_POLICY,
            "requests/alice/a|b`c.yaml": request(),
            f"requests/alice/x{HOSTILE}.yaml": request(),
            "requests/alice/esc.yaml": request(reason=f"Investigate {HOSTILE} | `x` queries"),
            "requests/alice/scope.yaml": request(scope="projects/a|b`c"),
        },
        "direct push",
        author="alice",
    )
    repo.write_file("::error::boom.yaml", request())  # a path git itself reads as magic
    return repo.root


@pytest.fixture(scope="module")
def branch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Valid policies; a valid request whose reason and ticket carry C1, bidi and invisible
    characters (the schema lets them through), an invalid one, a misplaced one."""
    repo = GitRepo(tmp_path_factory.mktemp("escaping") / "branch")
    c1 = request(
        reason="Investigate \x9b31m slow\u200b queries\x85 | `x` \ufeffevil",
        extra=f"ticket: {json.dumps('INC-1 | `x` ' + HOSTILE[6:-1])}\n",
    )
    repo.commit(
        {
            "policies/p.yaml": POLICY,
            "requests/alice/c1.yaml": c1,
            "requests/alice/esc.yaml": request(reason=f"Investigate {HOSTILE} | `x` queries"),
            f"requests/alice/x{HOSTILE}.yaml": request(),
        },
        "direct push",
        author="alice",
        date="2026-12-01T07:00:00Z",
    )
    return repo.root


@pytest.fixture(scope="module")
def gcp_url() -> Iterator[str]:
    with running_gcp(SCOPE) as gcp:
        yield gcp.url


def run(args: list[str], repo: Path, tmp: Path, gcp_url: str = "") -> tuple[Result, str]:
    """The command's result, checked, and its job summary."""
    summary = tmp / "summary.md"
    summary.write_text("")
    env = {"GITHUB_STEP_SUMMARY": str(summary), "ACCESSCTL_NOW": NOW}
    if gcp_url:
        env["ACCESSCTL_GCP_ENDPOINT"] = gcp_url
    result = run_cli(*args, "--repo", str(repo), env=env)
    assert result.code in (0, 1), result.stderr
    if "json" in args:
        check_json(result.stdout)
    else:
        check_output(result.stdout + result.stderr)
    assert not raw_in(result.stdout + result.stderr)
    return result, summary.read_text()


FORMATS = {
    "validate": ["text", "json", "github"],
    "plan": ["text", "json", "github"],
    "status": ["text", "json"],
    "audit": ["text", "json", "csv", "markdown", "github"],
}


@pytest.mark.parametrize(
    ("command", "fmt"),
    [(c, f) for c, formats in FORMATS.items() for f in formats],
    ids=lambda v: v,
)
def test_no_raw_control_character_in_any_output(
    command: str, fmt: str, bad_files: Path, branch: Path, gcp_url: str, tmp_path: Path
) -> None:
    args = [command, "--format", fmt]
    if command == "plan":
        args.append("--trust-git")
    if command == "audit":
        args.append("--no-ledger")
    result, summary = run(args, bad_files if command == "validate" else branch, tmp_path, gcp_url)
    assert not raw_in(summary, allowed="\u200b")  # markdown_text breaks mentions with it
    check_tables(summary)
    if fmt == "markdown":
        assert check_tables(result.stdout) >= 3


def test_validate_summary_table_keeps_its_columns(bad_files: Path, tmp_path: Path) -> None:
    result, summary = run(["validate", "--format", "github"], bad_files, tmp_path)
    assert check_tables(summary) >= 6  # header, rule and a row per finding
    rows = [line for line in summary.splitlines() if line.startswith("| `")]
    assert any(r.startswith(r"| `policies/a\|bˋc.yaml` | 2 |") for r in rows), rows
    assert any(r.startswith(r"| `requests/alice/a\|bˋc.yaml` |") for r in rows), rows
    assert any(r"\x1b[31m\x07\x9b\u202e" in r for r in rows), rows  # seen, not obeyed
    assert "::error file=policies/a|b`c.yaml,line=2" in result.stdout


def test_a_file_named_like_a_workflow_command_is_not_one(bad_files: Path, tmp_path: Path) -> None:
    for fmt in ("text", "github"):
        result, _ = run(["validate", "--format", fmt, "::error::boom.yaml"], bad_files, tmp_path)
        assert result.code == 1 and "boom.yaml" in result.stdout  # on a line nobody obeys


def test_plan_json_keeps_its_shape_and_cleans_file_text(
    branch: Path, gcp_url: str, tmp_path: Path
) -> None:
    result, _ = run(["plan", "--trust-git", "--format", "json"], branch, tmp_path, gcp_url)
    payload = result.json
    assert list(payload) == ["grant", "revoke", "keep", "errors"]
    assert [g["request"] for g in payload["grant"]] == ["requests/alice/c1.yaml"]
    assert any("\\x1b[31m" in e["message"] for e in payload["errors"]), payload["errors"]
    assert "warning: requests/alice/x\\x1b[31m\\x07\\x9b\\u202e" in result.stderr


def test_audit_keeps_what_the_file_said_visibly(branch: Path, tmp_path: Path) -> None:
    result, _ = run(["audit", "--no-ledger", "--format", "json"], branch, tmp_path)
    c1 = next(e for e in result.json["requests"] if e["file"].endswith("c1.yaml"))
    assert c1["reason"] == "Investigate \\x9b31m slow\\u200b queries\\x85 | `x` \\ufeffevil"


# --- the helpers themselves ----------------------------------------------------------------

UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]"
)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("a\x1b[31mb", "a\\x1b[31mb"),
        ("bell\x07", "bell\\x07"),
        ("over\rwrite\x08", "over\\rwrite\\x08"),
        ("two\nlines\ttab", "two\\nlines\\ttab"),
        ("csi\x9b1m nel\x85", "csi\\x9b1m nel\\x85"),
        ("bidi\u202eevil\u2066x\u2069", "bidi\\u202eevil\\u2066x\\u2069"),
        ("sep\u2028par\u2029", "sep\\u2028par\\u2029"),
        ("ali\u200bce\ufeff", "ali\\u200bce\\ufeff"),
        ("undecodable\udc9b", "undecodable\\udc9b"),
        ("plain: ü, 日本, emoji 🙂", "plain: ü, 日本, emoji 🙂"),
    ],
    ids=["ansi", "bel", "cr-bs", "lf-tab", "c1", "bidi", "separators", "invisible", "surrogate",
         "printable"],
)  # fmt: skip
def test_terminal_text_shows_every_control_class_as_an_escape(text: str, shown: str) -> None:
    assert terminal_text(text) == shown


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("::error::x", "\\x3a:error::x"),
        ("  ::warning file=a::b", "  \\x3a:warning file=a::b"),
        ("\n::error::x", "\\n::error::x"),
        ("requests/a::b.yaml: ok", "requests/a::b.yaml: ok"),
    ],
)
def test_log_line_never_starts_a_workflow_command(line: str, shown: str) -> None:
    assert log_line(line) == shown


def test_clean_text_keeps_tabs_and_json_stays_valid() -> None:
    payload = {"reason\x1b": ["a\tb\nc\u202e", 3, None, True], "n": {"m": "\x9b"}}
    cleaned = clean_json(payload)
    assert cleaned == {"reason\\x1b": ["a\tb\\nc\\u202e", 3, None, True], "n": {"m": "\\x9b"}}
    assert json.loads(json.dumps(cleaned)) == cleaned
    assert clean_text("x\ty") == "x\ty"


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "\\r=1"),
        ("\uff1d1", "'\uff1d1"),
        ("requests/a.yaml", "requests/a.yaml"),
        ("a\x1b[2J", "a\\x1b[2J"),
    ],
)
def test_csv_cell_is_never_a_formula(value: str, cell: str) -> None:
    assert csv_cell(value) == cell


@pytest.mark.parametrize(
    "value",
    ["a|b", "a\\|b", "`a`|`b`", "a\nb|c", "<img src=x>|@dave", "|", "\\", "a\x1b|\u202e"],
)
def test_markdown_cell_is_one_cell_one_code_span(value: str) -> None:
    cell = markdown_cell(value)
    assert len(CELL.split(f"| {cell} |")) == 3
    assert cell.count("`") == 2 and cell.startswith("`") and cell.endswith("`")
    assert "\n" not in cell and "<" not in cell and "@d" not in cell
    assert not UNSAFE.search(cell.replace("@\u200b", "@"))


def test_markdown_text_is_safe_in_a_table_cell() -> None:
    text = markdown_text("a | b `c` <b>x</b> @dave\nnext [l](https://e) \x1b[31m")
    assert len(CELL.split(f"| {text} |")) == 3
    assert "<b>" not in text and "@dave" not in text and "](" not in text
    assert "\n" not in text and "\x1b" not in text


def test_annotation_escapes_properties_and_message() -> None:
    line = annotation("error", "m\n::error::x\x1b%", file="a,b:c\u202e.yaml", line=2, title="t")
    assert line == "::error file=a%2Cb%3Ac\\u202e.yaml,line=2,title=t::m%0A::error::x\\x1b%25"


@given(st.text())
def test_terminal_text_is_inert_and_idempotent(text: str) -> None:
    shown = terminal_text(text)
    assert not UNSAFE.search(shown)
    assert terminal_text(shown) == shown
    assert not log_line(text).lstrip().startswith("::")


@given(st.text())
def test_markdown_helpers_stay_on_one_line_and_in_one_cell(text: str) -> None:
    for rendered in (markdown_cell(text), markdown_text(text)):
        assert "\n" not in rendered and "\r" not in rendered
        assert len(CELL.split(f"| {rendered} |")) == 3
        assert not UNSAFE.search(rendered.replace("@\u200b", "@"))
    assert markdown_code(text).count("`") == 2
