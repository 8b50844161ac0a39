"""CloudTrail ``LookupEvents`` for the AWS sandbox (moto has none), with seeded events.

Events live per (account, region); the account of a call is the one its access key belongs
to (moto's own mapping: an STS-assumed role's keys act in the role's account; unknown keys
in moto's default account), the region the one its signature names. Answers follow the API
reference: ``Events`` newest first, at most 50 per page (``MaxResults``), ``NextToken``,
one ``LookupAttributes`` entry (``Username``, ``EventName``, ``EventSource``,
``ResourceName``), ``StartTime``/``EndTime`` inclusive. ``throttle_next`` answers
``ThrottlingException``; ``enforce_rate`` refuses a third call within one second per
account and region, as CloudTrail's 2-per-second quota does. CloudTrail Lake's queries
(``StartQuery``, ``DescribeQuery``, ``GetQueryResults``, ``CancelQuery``) run over the same
records in ``lake`` (``reconciler.sandbox.cloudtrail_lake``).

```python
trail = sandbox.faults.cloudtrail
trail.add("111111111111", "us-east-1", sso_event("111111111111", "ReadOnly", "alice@example.com",
          at=when, source="s3.amazonaws.com", name="ListBuckets"))
```
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.sandbox.cloudtrail_lake import OPERATIONS as LAKE_OPERATIONS
from reconciler.sandbox.cloudtrail_lake import Lake

TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101."
DEFAULT_ACCOUNT = "123456789012"
_CREDENTIAL = re.compile(r"Credential=(?P<key>[^/]+)/[0-9]+/(?P<region>[a-z0-9-]+)/")
_ATTRIBUTES = {
    "Username": "Username",
    "EventName": "EventName",
    "EventSource": "EventSource",
    "EventId": "EventId",
}
Response = tuple[int, dict[str, Any]]


def sso_event(
    account: str,
    permission_set: str,
    user: str,
    *,
    at: datetime,
    source: str,
    name: str,
    error_code: str | None = None,
    resource: str | None = None,
    suffix: str = "0123456789abcdef",
) -> dict[str, Any]:
    """A CloudTrail record of a call made in an Identity Center session."""
    arn = f"arn:aws:sts::{account}:assumed-role/AWSReservedSSO_{permission_set}_{suffix}/{user}"
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": {"type": "AssumedRole", "arn": arn, "accountId": account},
        "eventTime": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": source,
        "eventName": name,
        "eventID": str(uuid.uuid4()),
        "recipientAccountId": account,
    }
    if error_code:
        record["errorCode"] = error_code
        record["errorMessage"] = "not authorized"
    if resource:
        record["resources"] = [{"ARN": resource}]
    return record


class CloudTrailEvents:
    """The events and the ``LookupEvents`` answers; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lake = Lake(self.records)  # CloudTrail Lake over the same records
        self.clear()

    def clear(self) -> None:
        self.lake.clear()
        with self._lock:
            self._events: dict[tuple[str, str], list[dict[str, Any]]] = {}
            self.calls: list[tuple[str, str]] = []  # (account, region) of each LookupEvents
            self.throttles = 0  # ThrottlingException answers still to give
            self.throttled = 0  # how many were given
            self.enforce_rate = False
            self.denied: set[str] = set()  # accounts whose reader is refused
            self._recent: dict[tuple[str, str], deque[float]] = {}

    def add(self, account: str, region: str, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._events.setdefault((account, region), []).append(dict(record))

    def records(self) -> list[dict[str, Any]]:
        """Every record of every account and region (``awsRegion`` filled in)."""
        with self._lock:
            return [
                {"awsRegion": region, **record}
                for (_, region), records in self._events.items()
                for record in records
            ]

    def throttle_next(self, count: int) -> None:
        with self._lock:
            self.throttles = count

    def deny(self, account: str) -> None:
        with self._lock:
            self.denied.add(account)

    def handle(self, target: str, params: dict[str, Any], environ: Mapping[str, Any]) -> Response:
        operation = target[len(TARGET) :]
        if operation in LAKE_OPERATIONS:
            return self.lake.handle(operation, params, _caller(environ))
        if operation != "LookupEvents":
            return _error("UnsupportedOperationException", f"{operation} is not emulated")
        account, region = _caller(environ)
        with self._lock:
            self.calls.append((account, region))
            if account in self.denied:
                return _error("AccessDeniedException", f"not authorized in {account}")
            if self.throttles > 0 or self._over_rate((account, region)):
                self.throttles = max(0, self.throttles - 1)
                self.throttled += 1
                return _error("ThrottlingException", "Rate exceeded")
            pool = list(self._events.get((account, region), []))
        return 200, _lookup(pool, params)

    def _over_rate(self, key: tuple[str, str]) -> bool:
        if not self.enforce_rate:
            return False
        now = time.monotonic()
        recent = self._recent.setdefault(key, deque())
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if len(recent) >= 2:
            return True
        recent.append(now)
        return False


def _caller(environ: Mapping[str, Any]) -> tuple[str, str]:
    match = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION") or ""))
    if not match:
        return DEFAULT_ACCOUNT, "us-east-1"
    try:
        from moto.iam.models import get_account_id_from

        account = get_account_id_from(match["key"])
    except Exception:
        account = DEFAULT_ACCOUNT
    return account, match["region"]


def _time(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _item(record: Mapping[str, Any]) -> dict[str, Any]:
    arn = str(record.get("userIdentity", {}).get("arn", ""))
    when = datetime.fromisoformat(str(record["eventTime"]).replace("Z", "+00:00"))
    resources = [
        {"ResourceType": "AWS::Unknown", "ResourceName": r.get("ARN", "")}
        for r in record.get("resources", [])
    ]
    return {
        "EventId": record.get("eventID", ""),
        "EventName": record.get("eventName", ""),
        "ReadOnly": "true",
        "EventTime": when.timestamp(),
        "EventSource": record.get("eventSource", ""),
        "Username": arn.rpartition("/")[2],
        "Resources": resources,
        "CloudTrailEvent": json.dumps(record),
    }


def _lookup(pool: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    start, end = _time(params.get("StartTime")), _time(params.get("EndTime"))
    items = [_item(r) for r in pool]
    if start is not None:
        items = [i for i in items if i["EventTime"] >= start.timestamp()]
    if end is not None:
        items = [i for i in items if i["EventTime"] <= end.timestamp()]
    for attribute in params.get("LookupAttributes") or []:
        key = _ATTRIBUTES.get(attribute.get("AttributeKey", ""))
        if key:
            items = [i for i in items if i[key] == attribute.get("AttributeValue")]
    items.sort(key=lambda i: i["EventTime"], reverse=True)  # newest first, like CloudTrail
    size = max(1, min(int(params.get("MaxResults") or 50), 50))
    offset = 0
    if params.get("NextToken"):
        offset = int(json.loads(base64.b64decode(params["NextToken"]))["o"])
    page = items[offset : offset + size]
    answer: dict[str, Any] = {"Events": page}
    if offset + size < len(items):
        answer["NextToken"] = base64.b64encode(json.dumps({"o": offset + size}).encode()).decode()
    return answer


def _error(code: str, message: str) -> Response:
    return 400, {"__type": code, "message": message}
