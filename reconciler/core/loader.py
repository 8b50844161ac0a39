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
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.errors import AccessctlError, Finding

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


class _Fatal(AccessctlError):
    """Stops building the tree: the rest of the file cannot be trusted."""


def load(data: bytes, file: str, *, flat: bool = True) -> Document:
    """Parse ``data`` (the bytes of ``file``) safely; problems become findings, never raise.

    ``flat=False`` skips the quick path for flat files (the tests compare both paths)."""
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
    quick = _flat(text) if flat else None
    if quick is not None:
        doc.data, doc.lines = quick
        return doc
    parser = _PARSER(text)
    try:
        _Builder(doc, parser.get_event).build()
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
    finally:
        parser.dispose()
    if doc.findings:
        doc.data = None
        del doc.findings[MAX_FINDINGS:]
    return doc


_FLAT_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]{0,63}):(?: (.*))?$")
_FLAT_QUOTED = re.compile(r"""(?:'([^']*)'|"([^"\\]*)") *(?: #.*)?$""")
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@` ")
_PRINTABLE = re.compile(r"[\x20-\x7e\n]*")


def _flat(text: str) -> tuple[dict[str, Any], dict[Path_, int]] | None:
    """The common request file -- ``key: value`` lines of printable ASCII, comments -- read
    without libyaml (4x quicker). Anything else returns None and takes the full path; tests
    check both paths agree on every file this accepts."""
    if not text.isascii() or not _PRINTABLE.fullmatch(text):
        return None
    data: dict[str, Any] = {}
    lines: dict[Path_, int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        m = _FLAT_KEY.match(line)
        if m is None or m[1] in data or not m[2]:
            return None
        value = _flat_value(m[2])
        if value is _NOT_FLAT:
            return None
        if not lines:
            lines[()] = number
        data[m[1]] = value
        lines[(m[1],)] = number
    return (data, lines) if data else None


_NOT_FLAT = object()


def _flat_value(rest: str) -> Any:
    if rest[0] in "'\"":
        q = _FLAT_QUOTED.match(rest)
        return _NOT_FLAT if q is None else (q[1] if q[1] is not None else q[2])
    cut = rest.find(" #")
    value = (rest if cut < 0 else rest[:cut]).rstrip(" ")
    if not value or value[0] in _INDICATORS or ": " in value or value.endswith(":"):
        return _NOT_FLAT
    return resolve_plain(value)


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
    """Turns the event stream into plain data, checking each event as it comes.

    The common case (a plain or quoted scalar without anchor or tag) is handled inline:
    loading 10,000 small files is dominated by this loop.
    """

    def __init__(self, doc: Document, get_event: Any) -> None:
        self.doc = doc
        self.get = get_event
        self.documents = 0

    def error(self, event: Any, code: str, message: str, *, fatal: bool = False) -> None:
        self.doc.findings.append(Finding(self.doc.file, _line(event), code, message))
        if fatal or len(self.doc.findings) >= MAX_FINDINGS:
            raise _Fatal

    def build(self) -> None:
        while True:
            event = self.get()
            kind = type(event)
            if kind is yaml.StreamEndEvent:
                return
            if kind is yaml.DocumentStartEvent:
                self.documents += 1
                if self.documents > 1:
                    self.error(
                        event, "E-YAML-MULTIDOC", "only one YAML document per file", fatal=True
                    )
                if event.tags:
                    self.error(event, "E-YAML-TAG", "%TAG directives are not allowed", fatal=True)
            elif kind is not yaml.StreamStartEvent and kind is not yaml.DocumentEndEvent:
                self.doc.data = self.node(event, (), 1)

    def check_node(self, event: Any) -> None:
        if type(event) is yaml.AliasEvent:
            self.error(
                event,
                "E-YAML-ALIAS",
                "aliases (*name) are not allowed; write the value out",
                fatal=True,
            )
        if event.anchor is not None:
            self.error(
                event, "E-YAML-ANCHOR", f"anchors (&{event.anchor}) are not allowed", fatal=True
            )
        if getattr(event, "tag", None) is not None:
            self.error(event, "E-YAML-TAG", f"explicit tags ({event.tag}) are not allowed")

    def node(self, event: Any, path: Path_, depth: int) -> Any:
        self.check_node(event)
        self.doc.lines.setdefault(path, event.start_mark.line + 1)
        if depth > MAX_DEPTH:
            self.error(
                event, "E-YAML-DEPTH", f"nested more than {MAX_DEPTH} levels deep", fatal=True
            )
        kind = type(event)
        if kind is yaml.ScalarEvent:
            return event.value if event.style else resolve_plain(event.value)
        if kind is yaml.SequenceStartEvent:
            return self.sequence(path, depth)
        if kind is yaml.MappingStartEvent:
            return self.mapping(path, depth)
        self.error(event, "E-YAML-SYNTAX", "unexpected YAML structure", fatal=True)
        return None

    def sequence(self, path: Path_, depth: int) -> list[Any]:
        out: list[Any] = []
        lines = self.doc.lines
        while True:
            event = self.get()
            if type(event) is yaml.SequenceEndEvent:
                return out
            item = (*path, len(out))
            lines[item] = event.start_mark.line + 1
            out.append(self.node(event, item, depth + 1))

    def mapping(self, path: Path_, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        lines = self.doc.lines
        scalar = yaml.ScalarEvent
        while True:
            key_event = self.get()
            if type(key_event) is yaml.MappingEndEvent:
                return out
            key = self.key(key_event)
            value_event = self.get()
            if key is None or key in out:
                if key is not None:
                    first = lines.get((*path, key), 0)
                    self.error(
                        key_event, "E-YAML-DUPKEY", f"duplicate key {key!r} (first on line {first})"
                    )
                self.node(value_event, (*path, "?"), depth + 1)
                continue
            item = (*path, key)
            line = key_event.start_mark.line + 1
            lines[item] = line
            if (
                type(value_event) is scalar
                and value_event.anchor is None
                and value_event.tag is None
                and depth < MAX_DEPTH
            ):
                lines.setdefault(item, line)
                value = value_event.value
                out[key] = value if value_event.style else resolve_plain(value)
            else:
                out[key] = self.node(value_event, item, depth + 1)

    def key(self, event: Any) -> str | None:
        if type(event) is not yaml.ScalarEvent:
            self.check_node(event)
            self.error(event, "E-YAML-KEY", "mapping keys must be plain strings", fatal=True)
            return None
        if event.anchor is not None or event.tag is not None:
            self.check_node(event)
        if event.value == "<<" and not event.style:
            self.error(event, "E-YAML-MERGE", "merge keys (<<) are not allowed")
            return None
        return str(event.value)


def _line(event: Any) -> int:
    mark = getattr(event, "start_mark", None)
    return int(mark.line) + 1 if mark is not None else 1
