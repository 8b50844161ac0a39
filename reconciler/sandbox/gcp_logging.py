"""Cloud Logging's ``entries.list`` for the GCP emulator, with Google's filter semantics.

The subset of the Logging query language accessctl sends, evaluated the way Cloud Logging
documents it: comparisons ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``:`` (has) on
field paths (``protoPayload.status.code``); quoted and bare values; a value list
``field = ("a" OR "b")``; ``NOT`` (or a leading ``-``) binding tightest, then ``OR``,
then ``AND`` (``a OR b AND c`` is ``(a OR b) AND c``: Logging gives OR the higher
precedence); juxtaposition is ``AND``; parentheses. String comparisons ignore case;
``timestamp`` compares as a time; a comparison on a missing field is false (``!=``
true), and ``NOT`` of it true.

Entries are stored per parent (``projects/p``, ``folders/n``, ``organizations/n``);
``record`` adds an audit-log entry for a call made with a principal's identity (the
emulator records the calls principals make through it; tests may record others).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MAX_PAGE = 1000
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<lparen>\() | (?P<rparen>\)) |
      (?P<op><=|>=|!=|=~|!~|=|<|>|:) |
      (?P<string>"(?:[^"\\]|\\.)*") |
      (?P<word>[^\s()<>=!:"]+)
    )""",
    re.X,
)
_KEYWORDS = {"AND", "OR", "NOT"}


class FilterError(ValueError):
    """The filter does not parse (answered 400 INVALID_ARGUMENT)."""


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"Unparseable filter at offset {pos}: {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "string":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elif kind == "word" and value in _KEYWORDS:
            kind = value
        out.append(_Tok(kind, value))
    return out


Predicate = Callable[[Mapping[str, Any]], bool]


class _Parser:
    """expression = conj { "AND" conj } | conj conj (juxtaposition);
    conj = unary { "OR" unary }; unary = ["NOT" | "-"] primary."""

    def __init__(self, tokens: list[_Tok]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (kind is not None and tok.kind != kind):
            raise FilterError(f"expected {kind or 'a term'}, found {tok.text if tok else 'end'}")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        if not self.toks:
            return lambda _e: True
        pred = self.expression()
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.peek().text!r}")  # type: ignore[union-attr]
        return pred

    def expression(self) -> Predicate:
        parts = [self.disjunction()]
        while (tok := self.peek()) is not None and tok.kind != "rparen":
            if tok.kind == "AND":
                self.take()
            parts.append(self.disjunction())
        return lambda e: all(p(e) for p in parts)

    def disjunction(self) -> Predicate:
        parts = [self.unary()]
        while (tok := self.peek()) is not None and tok.kind == "OR":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda e: any(p(e) for p in parts))

    def unary(self) -> Predicate:
        tok = self.peek()
        if tok is not None and tok.kind == "NOT":
            self.take()
            inner = self.unary()
            return lambda e: not inner(e)
        if (
            tok is not None
            and tok.kind == "word"
            and tok.text.startswith("-")
            and len(tok.text) > 1
        ):
            self.toks[self.i] = _Tok("word", tok.text[1:])
            inner = self.unary()
            return lambda e: not inner(e)
        return self.primary()

    def primary(self) -> Predicate:
        tok = self.take()
        if tok.kind == "lparen":
            inner = self.expression()
            self.take("rparen")
            return inner
        if tok.kind not in ("word", "string"):
            raise FilterError(f"unexpected {tok.text!r}")
        nxt = self.peek()
        if tok.kind == "word" and nxt is not None and nxt.kind == "op":
            op = self.take().text
            return self.comparison(tok.text, op)
        text = tok.text  # a global restriction: any field has it
        return lambda e: _has(e, text)

    def comparison(self, path: str, op: str) -> Predicate:
        if self.peek() is not None and self.peek().kind == "lparen":  # type: ignore[union-attr]
            self.take()
            values = [self.value()]
            while (tok := self.peek()) is not None and tok.kind in ("OR", "AND"):
                if tok.kind != "OR":
                    raise FilterError("only OR may join the values of one comparison here")
                self.take()
                values.append(self.value())
            self.take("rparen")
        else:
            values = [self.value()]
        if op == "=" and not _is_time(path):  # the common case, made cheap: a set lookup
            wanted = {v.lower() for v in values}

            def equals(e: Mapping[str, Any]) -> bool:
                actual = _field(e, path)
                if isinstance(actual, str):
                    return actual.lower() in wanted
                return any(_compare(actual, op, v, path) for v in values)

            return equals
        return lambda e: any(_compare(_field(e, path), op, v, path) for v in values)

    def value(self) -> str:
        tok = self.take()
        if tok.kind not in ("word", "string"):
            raise FilterError(f"expected a value, found {tok.text!r}")
        return tok.text


def compile_filter(text: str) -> Predicate:
    return _Parser(_tokens(text or "")).parse()


_MISSING = object()


def _field(entry: Mapping[str, Any], path: str) -> Any:
    node: Any = entry
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _is_time(path: str) -> bool:
    return path == "timestamp" or path.endswith("Timestamp")


def _time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _compare(actual: Any, op: str, wanted: str, path: str) -> bool:
    if actual is _MISSING:
        return op == "!="
    if op == ":":
        return _has(actual, wanted)
    if isinstance(actual, bool):
        left: Any = str(actual).lower()
        right: Any = wanted.lower()
    elif isinstance(actual, int | float):
        try:
            left, right = float(actual), float(wanted)
        except ValueError:
            left, right = str(actual), wanted
    elif _is_time(path):
        left, right = _time(str(actual)), _time(wanted)
        if left is None or right is None:
            return False
    else:
        left, right = str(actual).lower(), wanted.lower()
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == "=~":
        return re.search(wanted, str(actual)) is not None
    if op == "!~":
        return re.search(wanted, str(actual)) is None
    try:
        return bool(
            {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
        )
    except TypeError:
        return False


def _has(node: Any, wanted: str) -> bool:
    if isinstance(node, Mapping):
        return any(_has(v, wanted) for v in node.values())
    if isinstance(node, list):
        return any(_has(v, wanted) for v in node)
    return wanted.lower() in str(node).lower()


def audit_entry(
    parent: str,
    principal_email: str,
    *,
    at: datetime,
    service: str,
    method: str,
    resource: str,
    denied: bool = False,
    log: str = "activity",
    permission: str | None = None,
) -> dict[str, Any]:
    """An AuditLog entry as Cloud Logging returns it; ``permission``, when given, is the
    one IAM checked (``authorizationInfo``, ``granted`` unless ``denied``)."""
    payload: dict[str, Any] = {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": principal_email},
        "serviceName": service,
        "methodName": method,
        "resourceName": resource,
    }
    if permission:
        payload["authorizationInfo"] = [
            {"resource": resource, "permission": permission, "granted": not denied}
        ]
    if denied:
        payload["status"] = {"code": 7, "message": "PERMISSION_DENIED"}
    stamp = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # Stable across processes (hash() is salted per process), distinct per call.
    seed = json.dumps([parent, principal_email, stamp, service, method, resource, denied])
    return {
        "logName": f"{parent}/logs/cloudaudit.googleapis.com%2F{log}",
        "resource": {"type": "project", "labels": {"project_id": parent.rpartition("/")[2]}},
        "timestamp": stamp,
        "receiveTimestamp": stamp,
        "severity": "ERROR" if denied else "NOTICE",
        "insertId": hashlib.sha256(seed.encode()).hexdigest()[:16],
        "protoPayload": payload,
    }


class LoggingStore:
    """Audit-log entries per parent, and ``entries.list`` over them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, list[dict[str, Any]]] = {}
        self.lists: list[tuple[tuple[str, ...], str]] = []  # (resourceNames, filter) asked
        self.page_cap = MAX_PAGE  # at most this many entries per page (tests: pagination)

    def add(self, parent: str, entry: Mapping[str, Any]) -> None:
        with self._lock:
            self._entries.setdefault(parent, []).append(dict(entry))

    def record(self, parent: str, principal_email: str, **kwargs: Any) -> dict[str, Any]:
        """A call made with ``principal_email``'s identity, as an audit-log entry."""
        entry = audit_entry(parent, principal_email, **kwargs)
        self.add(parent, entry)
        return entry

    def known(self, parent: str) -> bool:
        with self._lock:
            return parent in self._entries

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.lists.clear()

    def list_entries(
        self, body: Mapping[str, Any], visible: Callable[[str], bool]
    ) -> dict[str, Any]:
        names = body.get("resourceNames") or []
        if not isinstance(names, list) or not names:
            raise FilterError("resourceNames is required")
        text = str(body.get("filter") or "")
        predicate = compile_filter(text)
        size = min(int(body.get("pageSize") or 50), self.page_cap, MAX_PAGE)
        offset = _offset(body.get("pageToken"), text, names)
        with self._lock:
            self.lists.append((tuple(names), text))
            pool = [e for n in names if visible(n) for e in self._entries.get(n, [])]
        matched = [e for e in pool if predicate(e)]
        descending = str(body.get("orderBy") or "").lower().endswith("desc")
        matched.sort(key=lambda e: str(e.get("timestamp")), reverse=descending)
        page = matched[offset : offset + max(1, size)]
        answer: dict[str, Any] = {"entries": page}
        if offset + len(page) < len(matched):
            answer["nextPageToken"] = _token(offset + len(page), text, names)
        return answer


def _token(offset: int, text: str, names: Sequence[str]) -> str:
    raw = json.dumps({"o": offset, "f": text, "n": list(names)}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _offset(token: object, text: str, names: Sequence[str]) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token)))
    except ValueError:
        raise FilterError("invalid page token") from None
    if data.get("f") != text or data.get("n") != list(names):
        raise FilterError("page token does not match the request")
    return int(data["o"])
