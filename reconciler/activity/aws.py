"""CloudTrail ``LookupEvents`` of one account, in the Identity Center region and the
``activity_regions``, for the activity use case.

An Identity Center session signs its calls as
``arn:aws:sts::<account>:assumed-role/AWSReservedSSO_<permission set>_<suffix>/<user>``:
the event's principal is the user name, its role the permission set. CloudTrail allows 2
``LookupEvents`` per second per account and region, so calls are paced per (account,
region) and a ``ThrottlingException`` is backed off (``reconciler.retry``). Credentials:
the reconciler's own, or ``activity_role`` (an ARN template with ``{account}``) assumed
with STS per account. ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_CLOUDTRAIL`` reach an
emulator (botocore reads them itself).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from reconciler.activity.sources import LogReadError
from reconciler.core.activity import LogEvent, ScopeQuery
from reconciler.retry import Backoff, retrying

SSO_SESSION = re.compile(
    r"^arn:aws[a-z-]*:sts::(?P<account>[0-9]{12}):assumed-role/"
    r"AWSReservedSSO_(?P<permission_set>.+)_(?P<suffix>[0-9a-fA-F]+)/(?P<user>[^/]+)$"
)
DENIED_CODES = frozenset({"AccessDenied", "UnauthorizedOperation", "Client.UnauthorizedOperation"})
THROTTLED = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException"})
RATE = 2.0  # LookupEvents per second per account and region (CloudTrail's quota)
PAGE = 50  # LookupEvents' maximum MaxResults
THROTTLE_BACKOFF = Backoff(attempts=6, base=0.5, cap=8.0)


def is_denied(code: str | None) -> bool:
    """CloudTrail's error codes for a refused call: AccessDenied, *AccessDenied*,
    UnauthorizedOperation, Client.UnauthorizedOperation."""
    return bool(code) and (code in DENIED_CODES or "AccessDenied" in str(code))


def session_of(arn: str) -> tuple[str, str, str] | None:
    """(account, permission set, user name) of an Identity Center session ARN."""
    m = SSO_SESSION.match(arn or "")
    return (m["account"], m["permission_set"], m["user"]) if m else None


def event_of(raw: Mapping[str, Any], scope: str) -> LogEvent | None:
    """One ``LookupEvents`` item as an event; None unless an Identity Center session."""
    try:
        detail = json.loads(raw.get("CloudTrailEvent") or "{}")
    except ValueError:
        return None
    identity = detail.get("userIdentity") or {}
    session = session_of(str(identity.get("arn") or ""))
    if session is None or session[0] != scope:
        return None
    when = raw.get("EventTime")
    if not isinstance(when, datetime):
        return None
    source = str(detail.get("eventSource") or raw.get("EventSource") or "")
    resources = raw.get("Resources") or []
    resource = str(resources[0].get("ResourceName") or "") if resources else ""
    return LogEvent(
        time=when.astimezone(UTC),
        principal=session[2],
        provider="aws",
        scope=scope,
        service=source.removesuffix(".amazonaws.com"),
        action=str(detail.get("eventName") or raw.get("EventName") or ""),
        resource=resource,
        denied=is_denied(detail.get("errorCode")),
        role=session[1],
    )


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class Pacer:
    """At most ``rate`` calls per second per key (account, region); thread-safe."""

    def __init__(
        self,
        rate: float = RATE,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def wait(self, key: tuple[str, str]) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(key, now))
            self._next[key] = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


class CloudTrail:
    """The ``LogSource`` over CloudTrail ``LookupEvents``."""

    def __init__(
        self,
        regions: Sequence[str],
        *,
        role_template: str | None = None,
        client_factory: Callable[[str, str], Any] | None = None,
        pacer: Pacer | None = None,
        backoff: Backoff = THROTTLE_BACKOFF,
        page_size: int = PAGE,
    ) -> None:
        self.regions = tuple(dict.fromkeys(regions))
        self.role_template = role_template
        self.pacer = pacer or Pacer()
        self.backoff = backoff
        self.page_size = page_size
        self.calls = 0
        self.retries = 0
        self._factory = client_factory or self._client
        self._lock = threading.Lock()
        self._sessions: dict[str, dict[str, str]] = {}  # account -> assumed credentials
        # One client per (account, region), made once: a boto3 session and client cost
        # ~50 ms of CPU to build, more than the calls they make for one scope.
        self._clients: dict[tuple[str, str], Any] = {}
        # The one boto3 session (sessions are not thread-safe: clients are made from it
        # under the lock, then shared; clients are).
        self._base: Any = None
        self._sts: dict[str, Any] = {}  # region -> STS client

    def read(self, query: ScopeQuery) -> list[LogEvent]:
        events: list[LogEvent] = []
        for region in self.regions:
            try:
                client = self._factory(query.scope, region)
                events += self._region(client, query, region)
            except LogReadError:
                raise
            except Exception as exc:
                raise LogReadError(f"CloudTrail {query.scope} {region}: {_describe(exc)}") from None
        wanted = set(query.principals)
        return [e for e in events if e.principal in wanted]

    def _region(self, client: Any, query: ScopeQuery, region: str) -> list[LogEvent]:
        out: list[LogEvent] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "StartTime": query.start,
                "EndTime": query.stop,
                "MaxResults": self.page_size,
            }
            if token:
                kwargs["NextToken"] = token
            page = retrying(
                lambda kw=kwargs: self._call(client, query.scope, region, kw),  # type: ignore[misc]
                policy=self.backoff,
                retryable=lambda exc: error_code(exc) in THROTTLED,
                on_retry=self._retried,
            )
            out += [e for raw in page.get("Events", []) if (e := event_of(raw, query.scope))]
            token = page.get("NextToken")
            if not token:
                return out

    def _call(self, client: Any, account: str, region: str, kwargs: dict[str, Any]) -> Any:
        self.pacer.wait((account, region))
        with self._lock:
            self.calls += 1
        return client.lookup_events(**kwargs)

    def _retried(self, attempt: int, exc: BaseException, wait: float) -> None:
        with self._lock:
            self.retries += 1

    def _client(self, account: str, region: str) -> Any:
        """The CloudTrail client for an account and region, made once from one boto3
        session: with the reconciler's own credentials (one client per region), or with
        ``activity_role`` assumed in the account (its credentials asked of STS once)."""
        from botocore.config import Config as BotoConfig

        key = (account if self.role_template else "", region)
        with self._lock:
            if key in self._clients:
                return self._clients[key]
        keys = self._assumed(account, region) if self.role_template else {}
        config = BotoConfig(retries={"mode": "standard", "max_attempts": 2})
        base = self._own()
        with self._lock:
            if key not in self._clients:
                self._clients[key] = base.client(
                    "cloudtrail", region_name=region, config=config, **keys
                )
            return self._clients[key]

    def _own(self) -> Any:
        import boto3

        with self._lock:
            if self._base is None:
                self._base = boto3.session.Session()
            return self._base

    def _assumed(self, account: str, region: str) -> dict[str, str]:
        """Credentials of ``activity_role`` in ``account`` (STS AssumeRole, once)."""
        with self._lock:
            if account in self._sessions:
                return dict(self._sessions[account])
        assert self.role_template is not None
        role = self.role_template.format(account=account)
        base = self._own()
        with self._lock:
            sts = self._sts.get(region) or self._sts.setdefault(
                region, base.client("sts", region_name=region)
            )
        creds = sts.assume_role(RoleArn=role, RoleSessionName="accessctl-activity")["Credentials"]
        keys = {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }
        with self._lock:
            return dict(self._sessions.setdefault(account, keys))


def _describe(exc: BaseException) -> str:
    code = error_code(exc)
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        return f"{code}: the reader needs cloudtrail:LookupEvents in this account"
    return f"{code}: {exc}" if code else str(exc) or type(exc).__name__
