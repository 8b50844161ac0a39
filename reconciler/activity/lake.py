"""CloudTrail Lake: one SQL query per account over an organisation event data store.

At thousands of accounts, ``LookupEvents`` (2 per second per account and region, one
account's credentials each) stops scaling; an organisation event data store holds every
account's and region's management events in one place. Each scope is still its own query,
so one failure is one account's error, but every query runs under one role in the store's
region (the delegated administrator's), with no per-account pacing.

A query is ``StartQuery``, ``DescribeQuery`` until it leaves ``QUEUED``/``RUNNING`` (polled
with a growing interval; ``CancelQuery`` when it takes longer than ``timeout``), then
``GetQueryResults`` page by page. Lake allows 10 queries at once: a refusal for that
(``MaxConcurrentQueriesException``) or for throttling is retried with backoff. An event
data store that does not exist is one clear error per scope, asked of AWS once.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

from reconciler.activity.aws import error_code, is_denied, session_of
from reconciler.activity.sources import LogReadError
from reconciler.core.activity import LogEvent, ScopeQuery
from reconciler.core.timeutil import parse_rfc3339
from reconciler.retry import Backoff, retrying

# (column, alias): the alias is the key of the cell in each result row.
COLUMNS = (
    ("eventTime", None),
    ("eventSource", None),
    ("eventName", None),
    ("errorCode", None),
    ("userIdentity.arn", "sessionArn"),
    ("resources", None),
)
PAGE = 1000  # GetQueryResults' maximum MaxQueryResults
BUSY = frozenset({"MaxConcurrentQueriesException", "ThrottlingException", "Throttling"})
BUSY_BACKOFF = Backoff(attempts=6, base=1.0, cap=16.0)
_STORE_ARN = re.compile(
    r"^arn:aws[a-z-]*:cloudtrail:(?P<region>[a-z0-9-]+):[0-9]{12}:eventdatastore/"
)
_ARN = re.compile(r"arn:aws[a-z-]*:[^\s,}\]\"']+")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def store_region(store: str) -> str | None:
    """The region in an event data store ARN (None for a bare id)."""
    m = _STORE_ARN.match(store)
    return m["region"] if m else None


def build_sql(store: str, query: ScopeQuery) -> str:
    """Every Identity Center session's event in the account and range (the store is
    named by the id at the end of its ARN)."""
    table = store.rpartition("/")[2]
    start = query.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    stop = query.stop.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if not (query.scope.isdigit() and len(query.scope) == 12):
        raise LogReadError(f"CloudTrail Lake: {query.scope!r} is not an account id")
    columns = ", ".join(f"{c} AS {alias}" if alias else c for c, alias in COLUMNS)
    # Values are an account id (checked above), times we format and the store id the
    # settings schema constrains; CloudTrail Lake has no bound parameters for the table.
    sql = f"SELECT {columns} FROM {table}"  # noqa: S608
    return (
        sql + f" WHERE recipientAccountId = {_quote(query.scope)}"
        f" AND eventTime >= {_quote(start)} AND eventTime <= {_quote(stop)}"
        " AND userIdentity.arn LIKE '%:assumed-role/AWSReservedSSO_%'"
    )


def event_of(row: list[Mapping[str, str]], scope: str) -> LogEvent | None:
    """One result row (single-key maps of strings) as an event; None unless an Identity
    Center session in ``scope``."""
    cells = {k: v for cell in row for k, v in cell.items()}
    arn = cells.get("sessionArn") or cells.get("userIdentity.arn") or cells.get("arn") or ""
    session = session_of(arn)
    if session is None or session[0] != scope:
        return None
    try:
        when = parse_rfc3339(cells.get("eventTime", "").replace(" ", "T").rstrip("Z") + "Z")
    except ValueError:
        return None
    found = _ARN.search(cells.get("resources") or "")
    return LogEvent(
        time=when,
        principal=session[2],
        provider="aws",
        scope=scope,
        service=cells.get("eventSource", "").removesuffix(".amazonaws.com"),
        action=cells.get("eventName", ""),
        resource=found.group(0) if found else "",
        denied=is_denied(cells.get("errorCode")),
        role=session[1],
    )


class CloudTrailLake:
    """The ``LogSource`` over a CloudTrail Lake event data store."""

    def __init__(
        self,
        store: str,
        *,
        region: str,
        client: Any = None,
        poll: float = 0.25,
        poll_cap: float = 5.0,
        timeout: float = 300.0,
        backoff: Backoff = BUSY_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.region = store_region(store) or region
        self.calls = 0
        self.poll = poll
        self.poll_cap = poll_cap
        self.timeout = timeout
        self.backoff = backoff
        self._sleep = sleep
        self._client = client
        self._lock = threading.Lock()
        self._missing: str | None = None  # the store does not exist: said once, not asked again

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                self._client = boto3.session.Session(region_name=self.region).client("cloudtrail")
            return self._client

    def _call(self, name: str, **kwargs: Any) -> Any:
        def once() -> Any:
            with self._lock:
                self.calls += 1
            return getattr(self.client(), name)(**kwargs)

        return retrying(
            once,
            policy=self.backoff,
            retryable=lambda exc: error_code(exc) in BUSY,
            sleep=self._sleep,
        )

    def read(self, query: ScopeQuery) -> list[LogEvent]:
        if self._missing:
            raise LogReadError(self._missing)
        wanted = set(query.principals)
        try:
            rows = self._rows(build_sql(self.store, query), query.scope)
        except LogReadError:
            raise
        except Exception as exc:
            raise LogReadError(self._describe(exc, query.scope)) from None
        events = [e for row in rows if (e := event_of(row, query.scope))]
        return [e for e in events if e.principal in wanted]

    def _rows(self, sql: str, scope: str) -> list[list[Mapping[str, str]]]:
        query_id = str(self._call("start_query", QueryStatement=sql)["QueryId"])
        self._finish(query_id, scope)
        rows: list[list[Mapping[str, str]]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"QueryId": query_id, "MaxQueryResults": PAGE}
            if token:
                kwargs["NextToken"] = token
            page = self._call("get_query_results", **kwargs)
            status = page.get("QueryStatus")
            if status != "FINISHED":
                raise LogReadError(_failed(scope, status, page.get("ErrorMessage")))
            rows += page.get("QueryResultRows") or []
            token = page.get("NextToken")
            if not token:
                return rows

    def _finish(self, query_id: str, scope: str) -> None:
        """DescribeQuery until the query leaves QUEUED/RUNNING; cancelled after timeout."""
        waited, wait = 0.0, self.poll
        while True:
            found = self._call("describe_query", QueryId=query_id)
            status = found.get("QueryStatus")
            if status == "FINISHED":
                return
            if status not in ("QUEUED", "RUNNING"):
                raise LogReadError(_failed(scope, status, found.get("ErrorMessage")))
            if waited >= self.timeout:
                self._cancel(query_id)
                raise LogReadError(
                    f"CloudTrail Lake query for {scope} still {status} after "
                    f"{self.timeout:.0f}s: cancelled"
                )
            self._sleep(wait)
            waited += wait
            wait = min(self.poll_cap, wait * 2)

    def _cancel(self, query_id: str) -> None:
        with contextlib.suppress(Exception):  # it may have finished meanwhile
            self._call("cancel_query", QueryId=query_id)

    def _describe(self, exc: BaseException, scope: str) -> str:
        code = error_code(exc)
        if code in ("EventDataStoreNotFoundException", "EventDataStoreARNInvalidException"):
            message = (
                f"CloudTrail Lake: no event data store {self.store} in {self.region} "
                "(providers.aws.activity_event_data_store)"
            )
            with self._lock:
                self._missing = message
            return message
        if code in ("AccessDeniedException", "AccessDenied"):
            return (
                f"CloudTrail Lake {scope}: {code}: the reader needs cloudtrail:StartQuery, "
                "cloudtrail:DescribeQuery and cloudtrail:GetQueryResults on the event data store"
            )
        message = getattr(exc, "response", {}).get("Error", {}).get("Message", "") or str(exc)
        return (
            f"CloudTrail Lake {scope}: {code}: {message}"
            if code
            else f"CloudTrail Lake {scope}: {exc}"
        )


def _failed(scope: str, status: object, message: object) -> str:
    why = f": {message}" if message else ""
    return f"CloudTrail Lake query for {scope} {str(status or 'FAILED').lower()}{why}"
