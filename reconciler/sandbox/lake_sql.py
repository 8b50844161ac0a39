"""The subset of CloudTrail Lake SQL the sandbox evaluates: what ``activity.lake.build_sql``
emits, parsed and run over CloudTrail records the way Lake (Trino) would.

```sql
SELECT eventTime, userIdentity.arn AS sessionArn FROM <event data store id>
WHERE recipientAccountId = '111111111111' AND eventTime >= '2026-12-01 09:00:00'
  AND (userIdentity.arn LIKE '%:assumed-role/AWSReservedSSO_%' OR NOT errorCode = 'x')
```

Supported: a column list (dotted field paths, each with an optional ``AS`` alias), one
``FROM``, and a ``WHERE`` of ``=``, ``!=``/``<>``, ``<``, ``<=``, ``>``, ``>=``, ``LIKE``,
``IS [NOT] NULL`` against quoted literals (``''`` escapes a quote), joined with
``AND``/``OR``/``NOT`` and parentheses. Field names ignore case, as in Lake. A missing field
is NULL: a comparison with it is neither true nor false. ``eventTime`` compares as a time
(``'YYYY-MM-DD HH:MM:SS'``) and is rendered ``2026-12-01 09:30:00.000``; an array of rows
(``resources``) is rendered as Trino prints it. Anything else is ``SqlError`` (Lake's
``InvalidQueryStatementException``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<op><>|!=|<=|>=|=|<|>|\(|\)|,|\.|\*)"
    r"|(?P<word>[A-Za-z0-9_][A-Za-z0-9_\-]*))"
)
_KEYWORDS = frozenset({"select", "from", "where", "and", "or", "not", "like", "as", "is", "null"})
_TIMES = frozenset({"eventtime"})
Row = Mapping[str, Any]
Predicate = Callable[[Row], bool | None]


class SqlError(ValueError):
    """The statement is outside the subset, or malformed."""


@dataclass(frozen=True)
class Column:
    path: tuple[str, ...]
    name: str  # the key of its cell in a result row


@dataclass(frozen=True)
class Query:
    columns: tuple[Column, ...]
    table: str
    where: Predicate

    def matches(self, record: Row) -> bool:
        return self.where(record) is True

    def row(self, record: Row) -> list[dict[str, str]]:
        """One result row: a single-key map per selected column (NULL cells left out)."""
        out = []
        for column in self.columns:
            value = field(record, column.path)
            if value is not None:
                out.append({column.name: render(column.path, value)})
        return out


def tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip().rstrip(";")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise SqlError(f"unexpected character at {pos}: {text[pos : pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "word" and value.lower() in _KEYWORDS:
            out.append(("kw", value.lower()))
        else:
            out.append((kind, value))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = tokens(text)
        self.at = 0

    def peek(self, kind: str, value: str | None = None) -> bool:
        if self.at >= len(self.items):
            return False
        k, v = self.items[self.at]
        return k == kind and (value is None or v == value)

    def take(self, kind: str, value: str | None = None) -> str:
        if not self.peek(kind, value):
            found = self.items[self.at][1] if self.at < len(self.items) else "the end"
            raise SqlError(f"expected {value or kind}, found {found!r}")
        self.at += 1
        return self.items[self.at - 1][1]

    def query(self) -> Query:
        self.take("kw", "select")
        columns = [self.column()]
        while self.peek("op", ","):
            self.take("op", ",")
            columns.append(self.column())
        self.take("kw", "from")
        table = self.take("word")
        where: Predicate = lambda _row: True  # noqa: E731
        if self.peek("kw", "where"):
            self.take("kw", "where")
            where = self.disjunction()
        if self.at != len(self.items):
            raise SqlError(f"unexpected {self.items[self.at][1]!r}")
        return Query(tuple(columns), table, where)

    def column(self) -> Column:
        path = self.path()
        name = path[-1]
        if self.peek("kw", "as"):
            self.take("kw", "as")
            name = self.take("word")
        return Column(path, name)

    def path(self) -> tuple[str, ...]:
        parts = [self.take("word")]
        while self.peek("op", "."):
            self.take("op", ".")
            parts.append(self.take("word"))
        return tuple(parts)

    def disjunction(self) -> Predicate:
        terms = [self.conjunction()]
        while self.peek("kw", "or"):
            self.take("kw", "or")
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else _any(terms)

    def conjunction(self) -> Predicate:
        factors = [self.factor()]
        while self.peek("kw", "and"):
            self.take("kw", "and")
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else _all(factors)

    def factor(self) -> Predicate:
        if self.peek("kw", "not"):
            self.take("kw", "not")
            inner = self.factor()
            return lambda row: None if (v := inner(row)) is None else not v
        if self.peek("op", "("):
            self.take("op", "(")
            inner = self.disjunction()
            self.take("op", ")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        path = self.path()
        if self.peek("kw", "is"):
            self.take("kw", "is")
            negated = self.peek("kw", "not")
            if negated:
                self.take("kw", "not")
            self.take("kw", "null")
            return lambda row: (field(row, path) is None) != negated
        if self.peek("kw", "like"):
            self.take("kw", "like")
            pattern = _like(_literal(self.take("string")))
            return lambda row: (
                None if (v := field(row, path)) is None else bool(pattern.fullmatch(str(v)))
            )
        op = self.take("op")
        if op not in _COMPARE:
            raise SqlError(f"unsupported operator {op!r}")
        literal = _literal(self.take("string"))
        return _comparison(path, op, literal)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _comparison(path: tuple[str, ...], op: str, literal: str) -> Predicate:
    compare = _COMPARE[op]
    timed = path[-1].lower() in _TIMES
    right: Any = lake_time(literal) if timed else literal

    def test(row: Row) -> bool | None:
        value = field(row, path)
        if value is None:
            return None
        left = lake_time(str(value)) if timed else str(value)
        return compare(left, right)

    return test


def _any(terms: Sequence[Predicate]) -> Predicate:
    def test(row: Row) -> bool | None:
        values = [t(row) for t in terms]
        return True if True in values else (None if None in values else False)

    return test


def _all(factors: Sequence[Predicate]) -> Predicate:
    def test(row: Row) -> bool | None:
        values = [f(row) for f in factors]
        return False if False in values else (None if None in values else True)

    return test


def _literal(token: str) -> str:
    return token[1:-1].replace("''", "'")


def _like(pattern: str) -> re.Pattern[str]:
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return re.compile("".join(parts), re.S)


def lake_time(text: str) -> datetime:
    """``2026-12-01 09:30:00[.000]`` or an ISO 8601 record time, as a UTC time."""
    try:
        when = datetime.fromisoformat(text.strip().replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        raise SqlError(f"{text!r} is not a timestamp") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def field(record: Row, path: Sequence[str]) -> Any:
    """The value at ``path`` (names ignore case), or None."""
    node: Any = record
    for part in path:
        if not isinstance(node, Mapping):
            return None
        key = part if part in node else next((k for k in node if k.lower() == part.lower()), None)
        if key is None:
            return None
        node = node[key]
    return node


def render(path: Sequence[str], value: Any) -> str:
    """A cell as Lake returns it: a string."""
    if path[-1].lower() in _TIMES:
        return lake_time(str(value)).strftime("%Y-%m-%d %H:%M:%S.") + "000"
    if isinstance(value, list):
        return "[" + ", ".join(render(path, v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    return str(value)


def parse(text: str) -> Query:
    """The statement, or SqlError."""
    return _Parser(text).query()
