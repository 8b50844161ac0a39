"""The safe loader: YAML-1.2-style scalars, lines for every value, structure refused."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.loader import MAX_BYTES, load

SCALARS = [
    ("true", True),
    ("false", False),
    ("True", "True"),
    ("TRUE", "TRUE"),
    ("yes", "yes"),
    ("no", "no"),
    ("on", "on"),
    ("off", "off"),
    ("y", "y"),
    ("~", None),
    ("null", None),
    ("", None),
    ("Null", "Null"),
    ("0", 0),
    ("42", 42),
    ("-7", -7),
    ("-0", "-0"),
    ("+1", "+1"),
    ("017", "017"),
    ("0o17", "0o17"),
    ("0x1F", "0x1F"),
    ("1_000", "1_000"),
    ("1:30", "1:30"),
    ("1.5", "1.5"),
    ("1e3", "1e3"),
    (".inf", ".inf"),
    (".nan", ".nan"),
    ("2026-12-01", "2026-12-01"),
    ("2026-12-01T09:00:00Z", "2026-12-01T09:00:00Z"),
    ("123456789012", 123456789012),
    ("1234567890123456789", "1234567890123456789"),
    ("'true'", "true"),
    ('"42"', "42"),
    ("'~'", "~"),
    ('"a\\tb"', "a\tb"),
]


@pytest.mark.parametrize(("text", "value"), SCALARS, ids=[s[0] or "empty" for s in SCALARS])
def test_scalar_resolution(text: str, value: object) -> None:
    doc = load(f"key: {text}\n".encode(), "f.yaml")
    assert doc.ok, doc.findings
    assert doc.data == {"key": value}
    assert type(doc.data["key"]) is type(value)


def test_every_value_keeps_its_line() -> None:
    text = b"# comment\na: 1\nb:\n  - x\n  - {c: d}\ne: |\n  block\n  text\nf: g\n"
    doc = load(text, "f.yaml")
    assert doc.data == {"a": 1, "b": ["x", {"c": "d"}], "e": "block\ntext\n", "f": "g"}
    assert doc.line(("a",)) == 2
    assert doc.line(("b", 0)) == 4
    assert doc.line(("b", 1, "c")) == 5
    assert doc.line(("e",)) == 6
    assert doc.line(("f",)) == 9
    assert doc.line(("b", 1, "missing")) == 5  # nearest ancestor


def test_bom_is_tolerated() -> None:
    doc = load(b"\xef\xbb\xbfa: 1\n", "f.yaml")
    assert doc.ok and doc.data == {"a": 1}


def test_size_is_checked_before_parsing() -> None:
    doc = load(b"a: [" * (MAX_BYTES // 4 + 1), "f.yaml")
    assert [f.code for f in doc.findings] == ["E-FILE-SIZE"]
    assert load(b"#" * MAX_BYTES, "f.yaml").ok


def test_several_structural_problems_at_once() -> None:
    doc = load(b"a: 1\na: 2\nb: !!str x\n<<: {c: 1}\n", "f.yaml")
    assert [(f.line, f.code) for f in doc.findings] == [
        (2, "E-YAML-DUPKEY"),
        (3, "E-YAML-TAG"),
        (4, "E-YAML-MERGE"),
    ]
    assert doc.data is None


def test_quoted_merge_key_is_just_a_key() -> None:
    assert load(b"'<<': 1\n", "f.yaml").data == {"<<": 1}


def test_keys_are_the_text_written() -> None:
    assert load(b"1: a\ntrue: b\nnull: c\n", "f.yaml").data == {"1": "a", "true": "b", "null": "c"}


# --- the quick path for flat files agrees with libyaml -----------------------------------------

TRICKY = st.text(alphabet="ab :#'\"-?,[]{}&*!|>%@`~\\=.0123456789tTruefalsnyo\t\r", max_size=14)
LINES = st.one_of(
    st.builds(
        lambda k, v: f"{k}: {v}", st.sampled_from(["a", "b", "role", "k_1", "x-y", "true"]), TRICKY
    ),
    st.builds(lambda k, v: f"{k}:{v}", st.sampled_from(["a", "b"]), TRICKY),
    st.sampled_from(
        ["", "# comment", "  # indented comment", "---", "...", "  a: 1", "- x", "a:", "a :b"]
    ),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(LINES, max_size=6), st.booleans())
def test_quick_path_agrees_with_libyaml(lines: list[str], final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    quick = load(text.encode(), "f.yaml")
    full = load(text.encode(), "f.yaml", flat=False)
    assert (quick.data, quick.findings) == (full.data, full.findings)
    if full.ok and isinstance(full.data, dict):
        for key in full.data:
            assert quick.line((key,)) == full.line((key,))
        assert quick.line() == full.line()


@pytest.mark.parametrize(
    "text",
    [
        "a: b # c\n",
        "a: b#c\n",
        "a: 'x' # y\n",
        'a: "x"\n',
        "a: x, y [z] {w}\n",
        "a: http://example.com/x\n",
        "a: b: c\n",
        "a: b:\n",
        "a: -1\n",
        "a: - x\n",
        "a: ~\n",
        "a: 'it''s'\n",
        'a: "\\t"\n',
    ],
)
def test_quick_path_examples_agree(text: str) -> None:
    quick = load(text.encode(), "f.yaml")
    full = load(text.encode(), "f.yaml", flat=False)
    assert (quick.data, quick.findings, quick.lines) == (full.data, full.findings, full.lines)
