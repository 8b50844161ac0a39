"""CloudTrail Lake for the AWS sandbox: event data stores and SQL queries over its events.

An organisation event data store holds every account's and region's records that the
sandbox's CloudTrail holds (``CloudTrailEvents.add``). ``StartQuery`` parses the statement
(``reconciler.sandbox.lake_sql``: the subset accessctl emits) and answers a ``QueryId``;
the query is ``QUEUED``, then ``RUNNING`` for ``polls`` status answers, then ``FINISHED``
(or ``FAILED`` with an ``ErrorMessage`` when ``fail_when`` matches its statement).
``DescribeQuery`` and ``GetQueryResults`` follow botocore's model: ``QueryResultRows`` a
list of rows, each a list of single-key maps of strings, at most ``MaxQueryResults``
(1..1000) per page with a ``NextToken``; errors ``EventDataStoreNotFoundException`` (an
unknown store, or one in another region), ``InvalidQueryStatementException``,
``QueryIdNotFoundException``, ``InvalidNextTokenException``, ``InvalidMaxResultsException``,
``InactiveQueryException`` and ``MaxConcurrentQueriesException`` (10 queued or running).

```python
lake = sandbox.faults.cloudtrail.lake
arn = lake.create_store("org-events")          # in the sandbox's account and region
lake.polls = 2                                  # two RUNNING answers before FINISHED
lake.fail_when("'222222222222'", "Query exceeded the maximum scan size")
```
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.sandbox.lake_sql import SqlError, parse

Response = tuple[int, dict[str, Any]]
Caller = tuple[str, str]  # (account, region)
MAX_CONCURRENT = 10  # CloudTrail Lake's quota of queries queued or running at once
MAX_PAGE = 1000
ACTIVE = ("QUEUED", "RUNNING")
OPERATIONS = frozenset({"StartQuery", "DescribeQuery", "GetQueryResults", "CancelQuery"})


@dataclass
class _Store:
    arn: str
    name: str
    account: str
    region: str

    @property
    def id(self) -> str:
        return self.arn.rpartition("/")[2]


@dataclass
class _Query:
    id: str
    statement: str
    store: _Store
    created: float
    rows: list[list[dict[str, str]]]
    events_scanned: int
    bytes_scanned: int
    polls_left: int
    error: str | None
    status: str = "QUEUED"
    seen: list[str] = field(default_factory=list)  # the statuses it answered

    def advance(self) -> None:
        """One status answer: QUEUED -> RUNNING (``polls`` times) -> FINISHED / FAILED."""
        if self.status not in ACTIVE:
            return
        if self.polls_left > 0:
            self.polls_left -= 1
            self.status = "RUNNING"
        else:
            self.status = "FAILED" if self.error else "FINISHED"


class Lake:
    """The event data stores and queries; thread-safe."""

    def __init__(self, records: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._records = records
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._stores: dict[str, _Store] = {}
            self._queries: dict[str, _Query] = {}
            self._failing: list[tuple[str, str]] = []
            self.polls = 0  # RUNNING answers before a query finishes
            self.page_cap = MAX_PAGE  # rows per page at most (tests: pagination)
            self.started: list[str] = []  # every statement StartQuery accepted
            self.calls: list[str] = []  # every Lake operation answered, in order

    def create_store(
        self, name: str, account: str = "123456789012", region: str = "us-east-1"
    ) -> str:
        """An organisation event data store; its ARN (the id is its last part)."""
        arn = f"arn:aws:cloudtrail:{region}:{account}:eventdatastore/{uuid.uuid4()}"
        with self._lock:
            self._stores[arn] = _Store(arn, name, account, region)
        return arn

    def fail_when(self, fragment: str, message: str) -> None:
        """Queries whose statement contains ``fragment`` end FAILED with ``message``."""
        with self._lock:
            self._failing.append((fragment, message))

    def statuses(self) -> dict[str, list[str]]:
        """Query id -> the statuses it answered, in order."""
        with self._lock:
            return {q.id: list(q.seen) for q in self._queries.values()}

    def handle(self, operation: str, params: Mapping[str, Any], caller: Caller) -> Response:
        with self._lock:
            self.calls.append(operation)
            try:
                answer = self._operations()[operation](params, caller)
            except _Refusal as exc:
                return 400, {"__type": exc.code, "message": exc.message}
        return 200, answer

    # -- operations (under the lock) ---------------------------------------------------

    def _operations(self) -> dict[str, Callable[[Mapping[str, Any], Caller], dict[str, Any]]]:
        return {
            "StartQuery": self._start,
            "DescribeQuery": self._describe,
            "GetQueryResults": self._results,
            "CancelQuery": self._cancel,
        }

    def _start(self, params: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        statement = str(params.get("QueryStatement") or "")
        if not statement:
            raise _Refusal("InvalidParameterException", "QueryStatement or QueryAlias is required")
        try:
            query = parse(statement)
        except SqlError as exc:
            raise _Refusal("InvalidQueryStatementException", str(exc)) from None
        store = self._store(query.table, caller)
        if sum(q.status in ACTIVE for q in self._queries.values()) >= MAX_CONCURRENT:
            raise _Refusal(
                "MaxConcurrentQueriesException",
                f"You are already running the maximum number of concurrent queries "
                f"({MAX_CONCURRENT}).",
            )
        records = list(self._records())
        matched = [query.row(r) for r in records if query.matches(r)]
        matched.sort(key=lambda row: next((c["eventTime"] for c in row if "eventTime" in c), ""))
        error = next((m for f, m in self._failing if f in statement), None)
        found = _Query(
            str(uuid.uuid4()),
            statement,
            store,
            time.time(),
            matched,
            len(records),
            sum(len(json.dumps(r)) for r in records),
            self.polls,
            error,
        )
        self._queries[found.id] = found
        self.started.append(statement)
        return {"QueryId": found.id}

    def _describe(self, params: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        query = self._query(params, caller)
        query.advance()
        query.seen.append(query.status)
        answer: dict[str, Any] = {
            "QueryId": query.id,
            "QueryString": query.statement,
            "QueryStatus": query.status,
            "QueryStatistics": {
                "EventsMatched": len(query.rows) if query.status == "FINISHED" else 0,
                "EventsScanned": query.events_scanned,
                "BytesScanned": query.bytes_scanned,
                "ExecutionTimeInMillis": 10,
                "CreationTime": query.created,
            },
        }
        if query.status == "FAILED":
            answer["ErrorMessage"] = query.error
        return answer

    def _results(self, params: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        query = self._query(params, caller)
        size = params.get("MaxQueryResults", MAX_PAGE)
        if not isinstance(size, int) or not 1 <= size <= MAX_PAGE:
            raise _Refusal("InvalidMaxResultsException", "MaxQueryResults must be 1 to 1000")
        offset = self._offset(params.get("NextToken"), query.id)
        query.advance()
        query.seen.append(query.status)
        answer: dict[str, Any] = {"QueryStatus": query.status}
        if query.status == "FAILED":
            answer["ErrorMessage"] = query.error
        if query.status != "FINISHED":
            return answer
        page = query.rows[offset : offset + min(size, self.page_cap)]
        answer["QueryResultRows"] = page
        answer["QueryStatistics"] = {
            "ResultsCount": len(page),
            "TotalResultsCount": len(query.rows),
            "BytesScanned": query.bytes_scanned,
        }
        if offset + len(page) < len(query.rows):
            raw = json.dumps({"q": query.id, "o": offset + len(page)}).encode()
            answer["NextToken"] = base64.b64encode(raw).decode()
        return answer

    def _cancel(self, params: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        query = self._query(params, caller)
        if query.status not in ACTIVE:
            raise _Refusal(
                "InactiveQueryException", f"The query is {query.status} and cannot be cancelled."
            )
        query.status = "CANCELLED"
        query.seen.append(query.status)
        return {"QueryId": query.id, "QueryStatus": query.status}

    # -- lookups -------------------------------------------------------------------------

    def _store(self, name: str, caller: Caller) -> _Store:
        """By ARN or id, in the caller's region (stores are regional)."""
        for store in self._stores.values():
            if name in (store.arn, store.id) and store.region == caller[1]:
                return store
        raise _Refusal(
            "EventDataStoreNotFoundException",
            f"The specified event data store {name} was not found.",
        )

    def _query(self, params: Mapping[str, Any], caller: Caller) -> _Query:
        if params.get("EventDataStore"):
            self._store(str(params["EventDataStore"]), caller)
        query = self._queries.get(str(params.get("QueryId") or ""))
        if query is None or query.store.region != caller[1]:
            raise _Refusal("QueryIdNotFoundException", "The query ID does not exist.")
        return query

    @staticmethod
    def _offset(token: object, query_id: str) -> int:
        if not token:
            return 0
        try:
            data = json.loads(base64.b64decode(str(token)))
            if data["q"] != query_id:
                raise ValueError(query_id)
            return int(data["o"])
        except (ValueError, KeyError, TypeError):
            raise _Refusal("InvalidNextTokenException", "The NextToken is not valid.") from None


class _Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
