"""Safe YAML loading: (bytes, filename) -> plain data + the line of every value.

Only a small, predictable subset of YAML is accepted, and nothing in a file can run code:

- one document, UTF-8 (a leading BOM is tolerated), at most 64 KiB, nesting at most 32 deep;
- anchors, aliases, merge keys (``<<``), explicit tags and ``%TAG`` directives are errors;
- duplicate keys are errors; keys are always the string written;
- scalars resolve YAML-1.2-JSON style: quoted and block scalars are strings; a plain scalar is
  ``null`` (``null``, ``~`` or empty), a boolean (``true``/``false`` only), an integer
  (plain decimal, no sign ``+``, no leading zeros, at most 18 digits) or else the string
  written. ``yes``, ``no``, ``on``, ``True``, ``1:30``, ``0o17``, ``1e3`` and
  ``2026-12-01`` therefore stay strings; timestamps are parsed later by our own RFC 3339
  parser, which demands an offset.

The tree is built from libyaml's event stream (PyYAML's C parser when available), never by
PyYAML's constructors, so no tag can instantiate anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.errors import Finding

MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
MAX_FINDINGS = 10  # per file: enough to fix it, not a flood from a hostile file

Path_ = tuple[str | int, ...]

_INT = re.compile(r"^(?:0|-?[1-9][0-9]{0,17})$")
_PARSER: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader


@dataclass
class Document:
    """A loaded file: ``data`` (dict/list/str/int/bool/None) and the 1-based line of each value.

    ``lines`` maps a path like ``("policies", 0, "name")`` to the line of that entry (for a
    mapping entry: the line of its key, where a person looks).
    """

    file: str
    data: Any = None
    lines: dict[Path_, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def line(self, path: Path_ = ()) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)

    @property
    def ok(self) -> bool:
        return not self.findings


class _Fatal(Exception):
    """Stops building the tree: the rest of the file cannot be trusted."""


def load(data: bytes, file: str) -> Document:
    """Parse ``data`` (the bytes of ``file``) safely; problems become findings, never raise."""
    doc = Document(file)
    if len(data) > MAX_BYTES:
        doc.findings.append(
            Finding(file, 1, "E-FILE-SIZE", f"file is {len(data)} bytes; the limit is {MAX_BYTES}")
        )
        return doc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        doc.findings.append(
            Finding(file, line, "E-FILE-ENCODING", f"not UTF-8 text (byte {exc.start})")
        )
        return doc
    text = text.removeprefix("\ufeff")
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        doc.findings.append(Finding(file, line, "E-FILE-ENCODING", "file contains a NUL byte"))
        return doc
    try:
        _Builder(doc).build(yaml.parse(text, Loader=_PARSER))
    except _Fatal:
        doc.data = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        doc.findings.append(Finding(file, line, "E-YAML-SYNTAX", f"invalid YAML: {problem}"))
        doc.data = None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError, MemoryError) as exc:
        doc.findings.append(Finding(file, 1, "E-YAML-SYNTAX", f"invalid YAML: {exc}"))
        doc.data = None
    if doc.findings:
        doc.data = None
        del doc.findings[MAX_FINDINGS:]
    return doc


def resolve_plain(value: str) -> Any:
    """YAML-1.2-JSON-style resolution of a plain (unquoted) scalar."""
    if value in ("", "~", "null"):
        return None
    if value == "true":
        return True
    if value == "false":
        return False
    if _INT.match(value):
        return int(value)
    return value


class _Builder:
    """Turns the event stream into plain data, checking each event as it comes."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.documents = 0

    def error(self, event: Any, code: str, message: str, *, fatal: bool = False) -> None:
        self.doc.findings.append(Finding(self.doc.file, _line(event), code, message))
        if fatal or len(self.doc.findings) >= MAX_FINDINGS:
            raise _Fatal

    def build(self, events: Iterator[Any]) -> None:
        for event in events:
            if isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    self.error(
                        event, "E-YAML-MULTIDOC", "only one YAML document per file", fatal=True
                    )
                if event.tags:
                    self.error(event, "E-YAML-TAG", "%TAG directives are not allowed", fatal=True)
            elif isinstance(event, yaml.StreamEndEvent | yaml.DocumentEndEvent):
                continue
            elif not isinstance(event, yaml.StreamStartEvent):
                self.doc.data = self.node(event, events, (), 1)

    def check_node(self, event: Any) -> None:
        if isinstance(event, yaml.AliasEvent):
            self.error(
                event, "E-YAML-ALIAS", "aliases (*name) are not allowed; write the value out",
                fatal=True,
            )
        if getattr(event, "anchor", None) is not None:
            self.error(
                event, "E-YAML-ANCHOR", f"anchors (&{event.anchor}) are not allowed", fatal=True
            )
        if getattr(event, "tag", None) is not None:
            self.error(event, "E-YAML-TAG", f"explicit tags ({event.tag}) are not allowed")

    def node(self, event: Any, events: Iterator[Any], path: Path_, depth: int) -> Any:
        self.check_node(event)
        self.doc.lines.setdefault(path, _line(event))
        if depth > MAX_DEPTH:
            self.error(
                event, "E-YAML-DEPTH", f"nested more than {MAX_DEPTH} levels deep", fatal=True
            )
        if isinstance(event, yaml.ScalarEvent):
            return resolve_plain(event.value) if not event.style else event.value
        if isinstance(event, yaml.SequenceStartEvent):
            return self.sequence(events, path, depth)
        if isinstance(event, yaml.MappingStartEvent):
            return self.mapping(events, path, depth)
        self.error(event, "E-YAML-SYNTAX", "unexpected YAML structure", fatal=True)
        return None

    def sequence(self, events: Iterator[Any], path: Path_, depth: int) -> list[Any]:
        out: list[Any] = []
        for event in events:
            if isinstance(event, yaml.SequenceEndEvent):
                return out
            item = (*path, len(out))
            self.doc.lines[item] = _line(event)
            out.append(self.node(event, events, item, depth + 1))
        return out

    def mapping(self, events: Iterator[Any], path: Path_, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_event in events:
            if isinstance(key_event, yaml.MappingEndEvent):
                return out
            key = self.key(key_event)
            value_event = next(events)
            if key is None:
                self.node(value_event, events, (*path, "?"), depth + 1)
                continue
            item = (*path, key)
            if key in out:
                first = self.doc.lines.get(item, 0)
                self.error(
                    key_event, "E-YAML-DUPKEY", f"duplicate key {key!r} (first on line {first})"
                )
                self.node(value_event, events, (*path, "?"), depth + 1)
                continue
            self.doc.lines[item] = _line(key_event)
            out[key] = self.node(value_event, events, item, depth + 1)
        return out

    def key(self, event: Any) -> str | None:
        self.check_node(event)
        if not isinstance(event, yaml.ScalarEvent):
            self.error(event, "E-YAML-KEY", "mapping keys must be plain strings", fatal=True)
            return None
        if event.value == "<<" and not event.style:
            self.error(event, "E-YAML-MERGE", "merge keys (<<) are not allowed")
            return None
        return str(event.value)


def _line(event: Any) -> int:
    mark = getattr(event, "start_mark", None)
    return int(mark.line) + 1 if mark is not None else 1
