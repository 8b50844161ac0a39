"""CloudTrail Lake: one SQL query per account over an organisation event data store.

At thousands of accounts, ``LookupEvents`` (2 per second per account and region, one
account's credentials each) stops scaling; an organisation event data store holds every
account's and region's management events in one place. Each scope is still its own query,
so one failure is one account's error, but every query runs under one role in one region
(the delegated administrator's), with no per-account pacing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

from reconciler.activity.aws import is_denied, session_of
from reconciler.activity.sources import LogReadError
from reconciler.core.activity import LogEvent, ScopeQuery
from reconciler.core.timeutil import parse_rfc3339

COLUMNS = ("eventTime", "eventSource", "eventName", "errorCode", "userIdentity.arn", "resources")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def build_sql(store: str, query: ScopeQuery) -> str:
    """Every Identity Center session's event in the account and range (the store is
    named by the id at the end of its ARN)."""
    table = store.rpartition("/")[2]
    start = query.start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    stop = query.stop.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if not (query.scope.isdigit() and len(query.scope) == 12):
        raise LogReadError(f"CloudTrail Lake: {query.scope!r} is not an account id")
    # Values are an account id (checked above), times we format and the store id the
    # settings schema constrains; CloudTrail Lake has no bound parameters for the table.
    sql = f"SELECT {', '.join(COLUMNS)} FROM {table}"  # noqa: S608
    return (
        sql + f" WHERE recipientAccountId = {_quote(query.scope)}"
        f" AND eventTime >= {_quote(start)} AND eventTime <= {_quote(stop)}"
        " AND userIdentity.arn LIKE '%:assumed-role/AWSReservedSSO_%'"
    )


def event_of(row: list[Mapping[str, str]], scope: str) -> LogEvent | None:
    cells = {k: v for cell in row for k, v in cell.items()}
    session = session_of(cells.get("userIdentity.arn", "") or cells.get("arn", ""))
    if session is None or session[0] != scope:
        return None
    try:
        when = parse_rfc3339(cells.get("eventTime", "").replace(" ", "T").rstrip("Z") + "Z")
    except ValueError:
        return None
    return LogEvent(
        time=when,
        principal=session[2],
        provider="aws",
        scope=scope,
        service=cells.get("eventSource", "").removesuffix(".amazonaws.com"),
        action=cells.get("eventName", ""),
        resource="",
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
        poll: float = 1.0,
        timeout: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.region = region
        self.calls = 0
        self.poll = poll
        self.timeout = timeout
        self._sleep = sleep
        self._client = client
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                self._client = boto3.session.Session(region_name=self.region).client("cloudtrail")
            return self._client

    def _call(self, name: str, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return getattr(self.client(), name)(**kwargs)

    def read(self, query: ScopeQuery) -> list[LogEvent]:
        wanted = set(query.principals)
        try:
            rows = self._rows(build_sql(self.store, query))
        except LogReadError:
            raise
        except Exception as exc:
            raise LogReadError(f"CloudTrail Lake {query.scope}: {exc}") from None
        events = [e for row in rows if (e := event_of(row, query.scope))]
        return [e for e in events if e.principal in wanted]

    def _rows(self, sql: str) -> list[list[Mapping[str, str]]]:
        query_id = self._call("start_query", QueryStatement=sql)["QueryId"]
        rows: list[list[Mapping[str, str]]] = []
        token: str | None = None
        waited = 0.0
        while True:
            kwargs: dict[str, Any] = {"QueryId": query_id}
            if token:
                kwargs["NextToken"] = token
            page = self._call("get_query_results", **kwargs)
            status = page.get("QueryStatus")
            if status in ("QUEUED", "RUNNING"):
                if waited >= self.timeout:
                    raise LogReadError(f"CloudTrail Lake query {query_id} still {status}")
                self._sleep(self.poll)
                waited += self.poll
                continue
            if status != "FINISHED":
                raise LogReadError(f"CloudTrail Lake query {query_id} {status}: {page}")
            rows += page.get("QueryResultRows", [])
            token = page.get("NextToken")
            if not token:
                return rows
