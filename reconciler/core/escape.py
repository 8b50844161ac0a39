"""Making text from files, pull requests and clouds inert wherever accessctl prints it.

Each output has its helper, and every command uses these (no local copies):

- a terminal or log line: ``terminal_text`` (a piece of a line), ``log_line`` (a whole line);
- a workflow command (``::error file=...::``): ``annotation``;
- JSON: ``clean_text`` (one string), ``clean_json`` (a whole payload);
- Markdown (job summaries, PR comments): ``markdown_text`` (prose, table cells too),
  ``markdown_code`` (a code span in prose), ``markdown_cell`` (a code span in a table cell);
- CSV: ``csv_cell``.
"""

from __future__ import annotations

import re
from typing import TypeVar, cast

# What can change a terminal or log instead of being read: C0 controls and DEL (ESC starts
# ANSI sequences, CR and BS overwrite, BEL rings, LF starts a new log line), C1 controls
# (0x9b is a one-byte CSI), the Unicode line/paragraph separators, bidi embeddings, overrides,
# isolates and marks (they reorder what a person reads), invisible format characters (they hide
# text: "ali\u200bce" is not "alice"), and lone surrogates (bytes git could not decode).
_NON_C0 = (
    r"\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
)
_UNSAFE = re.compile(rf"[\x00-\x1f{_NON_C0}]")
_UNSAFE_BUT_TAB = re.compile(rf"[\x00-\x08\x0a-\x1f{_NON_C0}]")  # JSON and CSV keep tabs
_UNSAFE_BUT_LAYOUT = re.compile(rf"[\x00-\x08\x0b-\x1f{_NON_C0}]")  # tab, LF handled later

_J = TypeVar("_J")

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _visible(match: re.Match[str]) -> str:
    """A character shown as its escape (``\\x1b``, ``\\u202e``): seen, never obeyed."""
    ch = match.group()
    if ch in _SHORT:
        return _SHORT[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def terminal_text(text: object) -> str:
    """Text from a file (a path, a value) within one line of terminal or log output: every
    control, bidi and invisible character is shown as an escape (``\\n``, ``\\x1b``), so
    none can start a workflow command, move the cursor or reorder what a person reads."""
    return _UNSAFE.sub(_visible, str(text))


def log_line(text: object) -> str:
    """A whole line of terminal or log output that starts with file text: ``terminal_text``,
    and a line that would start with ``::`` shows its first colon as ``\\x3a``, so the
    Actions runner never reads it as a workflow command."""
    line = terminal_text(text)
    stripped = line.lstrip()
    if stripped.startswith("::"):
        indent = line[: len(line) - len(stripped)]
        return indent + "\\x3a" + stripped[1:]
    return line


def clean_text(text: str) -> str:
    """A string value from a file or a cloud, for JSON: what ``terminal_text`` escapes is
    shown as an escape here too, tabs excepted (``jq -r`` and logs print JSON strings raw,
    newlines included); the JSON stays valid and a person still reads what the file said."""
    if text.isascii() and text.isprintable():
        return text  # the common case, decided in C: nothing to escape
    return _UNSAFE_BUT_TAB.sub(_visible, text)


def clean_json(value: _J) -> _J:
    """``clean_text`` on every string (keys too) of a JSON payload; other values unchanged."""
    return cast("_J", _clean_value(value))


def _clean_value(value: object) -> object:
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {_clean_value(k): _clean_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_clean_value(v) for v in value)
    return value


def csv_cell(text: str) -> str:
    """A CSV field from a file: ``clean_text``, and a quote before a leading ``=``, ``+``,
    ``-``, ``@`` (or their full-width forms), tab or CR, which spreadsheets would run as a
    formula."""
    text = clean_text(text)
    return "'" + text if text.startswith(_CSV_FORMULA) else text


def annotation_data(text: str) -> str:
    """Escape the message part of ``::error ...::message`` (GitHub's own rules); other
    control and bidi characters are shown as escapes, as in ``terminal_text``."""
    text = _UNSAFE_BUT_LAYOUT.sub(_visible, text)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def annotation_property(text: str) -> str:
    """Escape a property value (``file=``, ``title=``) of a workflow command."""
    return annotation_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(
    level: str,
    message: str,
    *,
    file: str | None = None,
    line: int | None = None,
    title: str | None = None,
) -> str:
    """One workflow command line: ``::error file=x,line=3,title=...::message``."""
    props = []
    if file is not None:
        props.append(f"file={annotation_property(file)}")
    if line is not None:
        props.append(f"line={int(line)}")
    if title is not None:
        props.append(f"title={annotation_property(title)}")
    head = f"::{level}" + (" " + ",".join(props) if props else "")
    return f"{head}::{annotation_data(message)}"


def _one_markdown_line(text: str) -> str:
    """Newlines and tabs become spaces (a multi-line reason reads as one paragraph and cannot
    end a table row); other control, bidi and invisible characters are shown as escapes."""
    return _UNSAFE_BUT_LAYOUT.sub(_visible, text).replace("\n", " ").replace("\t", " ")


def markdown_text(text: str, limit: int = 500) -> str:
    """Text from a file, safe inside Markdown and HTML, in prose and in table cells alike:
    no markup, links, mentions, HTML, pipes (table cells), newlines (table rows) or control
    characters take effect; long text is cut with an ellipsis."""
    text = _one_markdown_line(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    # Backslash-escape Markdown punctuation, then neutralise what escaping cannot:
    # HTML-significant characters become entities, @ gets a zero-width joiner so no mention.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("@", "@\u200b")


def markdown_code(text: str, limit: int = 200) -> str:
    """Inline code span, in prose, that no backtick in ``text`` can close. In a table cell
    use ``markdown_cell``."""
    text = _one_markdown_line(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("`", "\u02cb")  # a look-alike that cannot close the span
    return f"`{text}`" if text else "``"


def markdown_cell(text: str, limit: int = 200) -> str:
    """An identifier (path, role, scope, login) as an inline code span inside a table cell.

    GitHub splits table cells on every unescaped ``|``, even inside code spans, so pipes
    are escaped (the table parser removes the backslash again). Code spans already keep
    Markdown, HTML and mentions from taking effect; look-alike brackets and a zero-width
    joiner also keep the raw text (e-mail notifications, API readers) free of tags and
    mentions."""
    code = markdown_code(text, limit)  # first: it would show the joiner as an escape
    code = code.replace("<", "\u2039").replace(">", "\u203a").replace("@", "@\u200b")
    return code.replace("|", "\\|")
