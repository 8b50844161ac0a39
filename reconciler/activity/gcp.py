"""Cloud Audit Logs of one project, folder or organization through Cloud Logging v2.

With ``bucket`` (the ``log-bucket`` engine) the same query runs against one log bucket
view that an organisation-level aggregated sink fills, so one permission on one bucket
replaces ``logging.logEntries.list`` on every project.

``entries.list`` through the ``google-cloud-logging`` client over its HTTP transport
(``ACCESSCTL_GCP_ENDPOINT`` with anonymous credentials reaches the emulator). One query per
scope: its Admin Activity, Data Access and Policy Denied logs, the principals' e-mails and
an explicit time range on the server, paginated. The client adds a 24-hour ``timestamp``
bound to any filter without one, so the range is always spelled out.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.activity.sources import LogReadError
from reconciler.core.activity import LogEvent, ScopeQuery
from reconciler.retry import Backoff, retrying

ENDPOINT_ENV = "ACCESSCTL_GCP_ENDPOINT"
AUDIT_LOGS = ("activity", "data_access", "policy")
PERMISSION_DENIED = 7  # google.rpc.Code
PAGE_SIZE = 1000  # the API's maximum
_EMAIL_KINDS = ("user", "serviceAccount")
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
BACKOFF = Backoff(attempts=4, base=1.0, cap=16.0)


def log_names(scope: str) -> list[str]:
    """The audit logs of a scope: ``projects/p/logs/cloudaudit.googleapis.com%2Factivity``..."""
    return [f"{scope}/logs/cloudaudit.googleapis.com%2F{name}" for name in AUDIT_LOGS]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def email_of(member: str) -> str | None:
    """``user:a@x`` -> ``a@x``; None for members that never sign a call (groups, domains)."""
    kind, sep, value = member.partition(":")
    if sep and kind in _EMAIL_KINDS:
        return value
    return None


def build_filter(query: ScopeQuery) -> str:
    """The server-side filter: log names, principals, and both ends of the time range."""
    emails = sorted({e for m in query.principals if (e := email_of(m))}, key=str.lower)
    names = " OR ".join(_quote(n) for n in log_names(query.scope))
    who = " OR ".join(_quote(e) for e in emails) or '""'
    return (
        f"logName=({names})"
        f" AND protoPayload.authenticationInfo.principalEmail=({who})"
        f' AND timestamp>="{_timestamp(query.start)}"'
        f' AND timestamp<="{_timestamp(query.stop)}"'
    )


def event_of(
    entry: Mapping[str, Any], query: ScopeQuery, members: Mapping[str, str]
) -> LogEvent | None:
    """A log entry (JSON) as an event, its principal spelled as the identity (``user:a@x``).

    Called once per entry of every page, so it reads the JSON dicts directly."""
    payload = entry.get("protoPayload")
    if not isinstance(payload, dict):
        return None
    auth = payload.get("authenticationInfo")
    email = auth.get("principalEmail") if isinstance(auth, dict) else None
    if not email or not isinstance(email, str):
        return None
    try:
        timestamp = datetime.fromisoformat(entry["timestamp"]).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return None
    principal = members.get(email.lower())
    if principal is None:
        kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
        principal = f"{kind}:{email}"
    status = payload.get("status")
    return LogEvent(
        time=timestamp,
        principal=principal,
        provider="gcp",
        scope=query.scope,
        service=str(payload.get("serviceName") or ""),
        action=str(payload.get("methodName") or ""),
        resource=str(payload.get("resourceName") or ""),
        denied=isinstance(status, dict) and _code(status) == PERMISSION_DENIED,
    )


def _code(status: Mapping[str, Any]) -> int | None:
    try:
        return int(status.get("code") or 0)
    except (TypeError, ValueError):
        return None


# A partial response (the ``fields`` parameter every Google REST API takes): only what
# ``event_of`` reads. Real audit entries carry request metadata, requests and responses
# of several KB each; this keeps each page to a fraction of that, to send and to parse.
FIELDS = (
    "entries(timestamp,protoPayload(serviceName,methodName,resourceName,"
    "authenticationInfo/principalEmail,status/code)),nextPageToken"
)


class CloudLogging:
    """The ``LogSource`` over Cloud Logging ``entries.list``; thread-safe."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        page_size: int = PAGE_SIZE,
        backoff: Backoff = BACKOFF,
        client: Any = None,
        bucket: str | None = None,
    ) -> None:
        self.endpoint = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV)
        self.page_size = page_size
        self.backoff = backoff
        self.calls = 0
        self._lock = threading.Lock()
        self._client = client
        # A log bucket view that an organisation sink fills (``log-bucket`` engine): the
        # same filter, read there instead of in the scope (log names keep their origin).
        self.bucket = bucket

    def _count(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        return response

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._build()
            return self._client

    def _build(self) -> Any:
        from google.cloud import logging as cloud_logging

        client_cls: Any = cloud_logging.Client  # untyped

        if self.endpoint:
            from google.auth import credentials

            anonymous: Any = credentials.AnonymousCredentials
            client = client_cls(
                project="accessctl",
                credentials=anonymous(),
                _use_grpc=False,
                client_options={"api_endpoint": self.endpoint},
            )
        else:  # Application Default Credentials (google-github-actions/auth)
            client = client_cls(_use_grpc=False)
        session = getattr(client, "_http", None)
        if session is not None and hasattr(session, "hooks"):
            session.hooks.setdefault("response", []).append(self._count)
        return client

    def _page(self, parent: str, text: str, token: str | None) -> Mapping[str, Any]:
        """One ``entries.list`` page through the client's own connection (its HTTP
        session, credentials and errors), as JSON: the client's ``list_entries`` would
        parse each AuditLog payload into protobuf first, which costs more than the whole
        read. The filter always carries its own time range, so the client's 24-hour
        default (which ``list_entries`` would add) never applies either way."""
        body: dict[str, Any] = {
            "resourceNames": [parent],
            "filter": text,
            "orderBy": "timestamp asc",
            "pageSize": self.page_size,
        }
        if token:
            body["pageToken"] = token
        connection = self.client()._connection
        page = retrying(
            lambda: connection.api_request(
                method="POST",
                path="/entries:list",
                data=body,
                query_params={"fields": FIELDS},
            ),
            policy=self.backoff,
            retryable=_retryable,
        )
        return page if isinstance(page, Mapping) else {}

    def read(self, query: ScopeQuery) -> list[LogEvent]:
        members = {e.lower(): m for m in query.principals if (e := email_of(m))}
        if not members:
            return []
        text = build_filter(query)
        events: list[LogEvent] = []
        token: str | None = None
        try:
            while True:  # a page at a time, each retried on its own
                page = self._page(self.bucket or query.scope, text, token)
                entries = page.get("entries") or ()
                events += [seen for entry in entries if (seen := event_of(entry, query, members))]
                token = page.get("nextPageToken") or None
                if not token:
                    return events
        except Exception as exc:
            if self.bucket:
                raise LogReadError(
                    f"Cloud Logging {query.scope} (log view {self.bucket}): "
                    f"{_describe(exc, bucket=True)}"
                ) from None
            raise LogReadError(f"Cloud Logging {query.scope}: {_describe(exc)}") from None


def _retryable(exc: BaseException) -> bool:
    return getattr(exc, "code", None) in _RETRYABLE


def _describe(exc: BaseException, bucket: bool = False) -> str:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if code in (403, 404) and bucket:
        return (
            f"cannot read the log view ({message}); the reader needs logging.views.access "
            "on it (roles/logging.viewAccessor), and the view must exist "
            "(providers.gcp.activity_bucket)"
        )
    if code == 403:
        return (
            f"permission denied ({message}); the reader needs logging.logEntries.list "
            "(roles/logging.viewer) and roles/logging.privateLogViewer for Data Access logs"
        )
    return f"{code} {message}" if code else str(message)
