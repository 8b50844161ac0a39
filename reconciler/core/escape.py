"""Making text from files inert: in workflow commands, Markdown/HTML comments and summaries."""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def annotation_data(text: str) -> str:
    """Escape the message part of ``::error ...::message`` (GitHub's own rules)."""
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


def markdown_text(text: str, limit: int = 500) -> str:
    """Text from a file, safe inside Markdown and HTML: no markup, links, mentions, HTML
    or control characters take effect; long text is cut with an ellipsis."""
    text = _CONTROL.sub(" ", text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("\n", " ")
    # Backslash-escape Markdown punctuation, then neutralise what escaping cannot:
    # HTML-significant characters become entities, @ gets a zero-width joiner so no mention.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text).replace("@", "@\u200b")


def markdown_code(text: str, limit: int = 200) -> str:
    """Inline code span that no backtick in ``text`` can close."""
    text = _CONTROL.sub(" ", text).replace("\n", " ")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("`", "\u02cb")  # a look-alike that cannot close the span
    return f"`{text}`" if text else "``"


_TERMINAL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str) -> str:
    """Text from a file (a path, a value) on one line of terminal or log output: newlines,
    ANSI escapes and bidi overrides are shown as escapes (``\\n``, ``\\x1b``), so none can
    start a workflow command, move the cursor or reorder what a person reads."""
    return _TERMINAL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
