"""AWS IAM Identity Center: observe and change the account assignments accessctl owns.

Ownership: every permission set named in an ``aws`` policy's ``roles`` belongs to
accessctl; its USER assignments are managed, GROUP assignments and every other
permission set are never touched. A grant is one account assignment
``(account, permission set, user id)``: users are matched by their identity store user id,
the user name is only looked up (exactly) and shown. Creations and deletions are
asynchronous, so each is polled until AWS says SUCCEEDED or FAILED, and every scope is read
back afterwards.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from reconciler.core.models import Change, ChangeKind, ChangeResult, Config, Grant
from reconciler.core.providers import ProviderSpec, register
from reconciler.core.timeutil import format_rfc3339, parse_duration
from reconciler.errors import ConfigError, ProviderError
from reconciler.providers.base import Observation
from reconciler.retry import Backoff, retrying

if TYPE_CHECKING:
    from mypy_boto3_identitystore import IdentityStoreClient
    from mypy_boto3_sso_admin import SSOAdminClient
else:
    IdentityStoreClient = SSOAdminClient = Any

ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
# Errors worth another try on top of botocore's own retries: Identity Center answers
# ConflictException while another operation on the same assignment is in flight.
RETRYABLE = frozenset(
    {
        "ConflictException",
        "ThrottlingException",
        "TooManyRequestsException",
        "InternalServerException",
    }
)
MAX_OUTSTANDING_CREATIONS = 10  # AWS quota: concurrent async account assignment creations
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 64


@dataclass(frozen=True)
class AwsSettings:
    """``providers.aws`` from the policies."""

    instance_arn: str
    identity_store_id: str
    region: str | None = None
    concurrency: int | None = None  # changes and listings in flight (None: the default)

    @classmethod
    def from_config(cls, config: Config) -> AwsSettings:
        raw = config.providers.get("aws") or {}
        missing = [k for k in ("instance_arn", "identity_store_id") if not raw.get(k)]
        if missing:
            raise ConfigError(
                "providers.aws in policies/ needs "
                + " and ".join(missing)
                + " (the IAM Identity Center instance and its identity store)"
            )
        region = raw.get("region")
        return cls(
            str(raw["instance_arn"]),
            str(raw["identity_store_id"]),
            region and str(region),
            _concurrency_setting(raw.get("concurrency")),
        )


def _concurrency_setting(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise ConfigError(
            f"providers.aws.concurrency in policies/ must be an integer from 1 to "
            f"{MAX_CONCURRENCY}, not {value!r}"
        )
    return value


@dataclass(frozen=True)
class Tuning:
    """Concurrency and polling bounds; tests shrink the waits."""

    workers: int = DEFAULT_CONCURRENCY  # changes in flight per apply(), listings per observe()
    poll_first: float = 0.5  # seconds before the first status check
    poll_max: float = 10.0  # backoff cap between status checks
    poll_timeout: float = 300.0  # give up on one async operation after this long
    retry_attempts: int = 5  # our own retries of Conflict/Throttling, after botocore's
    retry_base: float = 1.0
    retry_cap: float = 8.0
    # How long a revoke's session deny waits for the other accounts' changes in flight, so
    # that one write and one provisioning per permission set carry all their denies.
    gather: float = 30.0

    @property
    def backoff(self) -> Backoff:
        return Backoff(attempts=self.retry_attempts, base=self.retry_base, cap=self.retry_cap)


def owned_permission_sets(config: Config) -> frozenset[str]:
    """Permission set names that belong to accessctl: those named in any aws policy."""
    return frozenset(r for p in config.policies if p.provider == "aws" for r in p.roles)


def policy_accounts(config: Config) -> frozenset[str]:
    """Accounts that aws policies name exactly (globs cannot be listed)."""
    return frozenset(
        s
        for p in config.policies
        if p.provider == "aws"
        for s in p.scopes
        if ACCOUNT_ID.fullmatch(s)
    )


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def _retryable(exc: BaseException) -> bool:
    return error_code(exc) in RETRYABLE


def session_duration(raw: object) -> timedelta | None:
    """A permission set's SessionDuration, or None when absent or unreadable. AWS answers
    ISO 8601 (``PT1H``); moto answers seconds (``3600``) when none was set."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return timedelta(seconds=raw) if raw > 0 else None
    if isinstance(raw, str):
        try:
            return parse_duration(raw)
        except ValueError:
            return None
    return None


def describe_error(exc: BaseException) -> str:
    """One line a person can act on, from a botocore ClientError or BotoCoreError."""
    code = error_code(exc)
    if code:
        message = exc.response.get("Error", {}).get("Message", "")  # type: ignore[attr-defined]
        return f"{code}: {message}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


class CloudFailure(ProviderError):
    """A call failed after its retries; the message is shown to a person."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class CallCounter:
    """API calls by operation name, counted from botocore's event hooks (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def attach(self, client: Any) -> None:
        # first, so a handler that answers the call itself (Stubber) cannot hide it
        client.meta.events.register_first("before-call.*.*", self._count)

    def _count(self, model: Any = None, **_: Any) -> None:
        with self._lock:
            self.counts[getattr(model, "name", "unknown")] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)


# -- session denies: end the sessions a deleted assignment leaves running -----------------

DENY_SID_PREFIX = "AccessctlRevoke"  # every statement accessctl owns; IAM allows [A-Za-z0-9]
_DENY_SID = re.compile(r"^AccessctlRevoke([0-9]{8}T[0-9]{6}Z)Until([0-9]{8}T[0-9]{6}Z)$")
_SID_TIME = "%Y%m%dT%H%M%SZ"
USER_ID_KEY = "identitystore:userId"
ISSUED_KEY = "aws:TokenIssueTime"
MAX_SESSION = timedelta(hours=12)  # AWS's longest SessionDuration: the horizon when unknown
# IAM Identity Center quotas ("Maximum size of inline policy per permission set"): 32,768
# bytes, of which at most 10,240 may be non-whitespace characters.
INLINE_POLICY_MAX_BYTES = 32_768
INLINE_POLICY_MAX_NONBLANK = 10_240
_BLANK = frozenset(" \t\n\r")


@dataclass(frozen=True)
class SessionDeny:
    """One statement accessctl owns in an owned permission set's inline policy: every action
    is denied to the sessions of ``users`` issued before ``before`` (the revocation). Kept
    until ``until`` (``before`` + the SessionDuration at the time) and ``before`` + the
    current SessionDuration have both passed: by then every such session has expired.

    ```json
    {"Sid": "AccessctlRevoke20261201T091000ZUntil20261201T101000Z",
     "Effect": "Deny", "Action": "*", "Resource": "*",
     "Condition": {"StringEquals": {"identitystore:userId": ["9067e4a1b2-0f1e..."]},
                   "DateLessThan": {"aws:TokenIssueTime": "2026-12-01T09:10:00Z"}}}
    ```
    """

    before: datetime
    until: datetime
    users: frozenset[str]

    @property
    def sid(self) -> str:
        return f"{DENY_SID_PREFIX}{self.before:{_SID_TIME}}Until{self.until:{_SID_TIME}}"

    def statement(self) -> dict[str, Any]:
        return {
            "Sid": self.sid,
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {
                "StringEquals": {USER_ID_KEY: sorted(self.users)},
                "DateLessThan": {ISSUED_KEY: format_rfc3339(self.before)},
            },
        }

    def expired(self, now: datetime, session: timedelta) -> bool:
        return now >= max(self.until, self.before + session)

    @classmethod
    def parse(cls, statement: object) -> SessionDeny | None:
        """The deny a statement holds when it is exactly what accessctl writes (user ids in
        any order), else None: a statement someone edited is kept, never rewritten."""
        if not isinstance(statement, dict):
            return None
        match = _DENY_SID.match(str(statement.get("Sid", "")))
        condition = statement.get("Condition")
        if not match or not isinstance(condition, dict):
            return None
        equals = condition.get("StringEquals")
        if not isinstance(equals, dict) or set(equals) != {USER_ID_KEY}:
            return None
        users = equals[USER_ID_KEY]
        users = [users] if isinstance(users, str) else users
        if not isinstance(users, list) or not users or not all(isinstance(u, str) for u in users):
            return None
        try:
            before, until = (_sid_time(t) for t in match.groups())
        except ValueError:
            return None
        deny = cls(before, until, frozenset(users))
        normal = {**statement, "Condition": {**condition, "StringEquals": {USER_ID_KEY: users}}}
        normal["Condition"]["StringEquals"][USER_ID_KEY] = sorted(users)
        return deny if normal == deny.statement() else None


def _sid_time(text: str) -> datetime:
    return datetime.strptime(text, _SID_TIME).replace(tzinfo=UTC)


def _skip(text: str, at: int) -> int:
    """The first index at or after ``at`` that is not JSON whitespace."""
    while at < len(text) and text[at] in _BLANK:
        at += 1
    return at


def _statement_spans(text: str) -> tuple[int, int, list[tuple[int, int]]]:
    """Where the top-level ``Statement`` value sits in a JSON policy document, and where each
    of its statements does, so that every statement accessctl does not own is written back
    as the very text it was read as. ``text`` must already parse as a JSON object."""
    decoder = json.JSONDecoder()
    spans: dict[str, tuple[int, int]] = {}
    at = _skip(text, _skip(text, 0) + 1)  # past "{"
    while text[at] != "}":
        key, at = json.decoder.scanstring(text, at + 1)  # type: ignore[attr-defined]
        start = _skip(text, _skip(text, at) + 1)  # past ":"
        _, end = decoder.raw_decode(text, start)
        spans[key] = (start, end)  # a repeated key: the last wins, as in json.loads
        at = _skip(text, end)
        at = _skip(text, at + 1) if text[at] == "," else at
    start, end = spans["Statement"]
    if text[start] == "{":
        return start, end, [(start, end)]
    items, at = [], _skip(text, start + 1)
    while text[at] != "]":
        _, stop = decoder.raw_decode(text, at)
        items.append((at, stop))
        at = _skip(text, stop)
        at = _skip(text, at + 1) if text[at] == "," else at
    return start, end, items


@dataclass(frozen=True)
class InlinePolicy:
    """An owned permission set's inline policy: the session denies accessctl owns, and the
    exact text of everything else (kept in order, byte for byte)."""

    text: str = ""  # as read; "" when the permission set has none
    head: str = ""  # the text before the Statement value
    tail: str = ""  # and after it
    kept: tuple[str, ...] = ()  # each statement accessctl does not rewrite, as read
    denies: tuple[SessionDeny, ...] = ()
    foreign: tuple[str, ...] = ()  # Sids with accessctl's prefix that it did not write
    lead: str = "\n    "  # the document's own layout: what precedes each statement
    close: str = "\n  "  # and the closing bracket

    @classmethod
    def parse(cls, text: str) -> InlinePolicy:
        """Raises ValueError, saying why, for a document accessctl cannot edit safely."""
        if not text.strip():
            return cls()
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"it is not JSON ({exc})") from None
        if not isinstance(document, dict) or not isinstance(document.get("Statement"), list | dict):
            raise ValueError("it is not a policy document with a Statement")
        start, end, spans = _statement_spans(text)
        kept, denies, foreign = [], [], []
        for a, b in spans:
            statement = json.loads(text[a:b])
            sid = statement.get("Sid") if isinstance(statement, dict) else None
            deny = SessionDeny.parse(statement)
            if deny is not None:
                denies.append(deny)
                continue
            kept.append(text[a:b])
            if isinstance(sid, str) and sid.startswith(DENY_SID_PREFIX):
                foreign.append(sid)
        layout = {}
        if text[start] == "[" and spans:
            layout = {"lead": text[start + 1 : spans[0][0]], "close": text[spans[-1][1] : end - 1]}
        head, tail = text[:start], text[end:]
        return cls(text, head, tail, tuple(kept), tuple(denies), tuple(foreign), **layout)

    def render(self, denies: Iterable[SessionDeny]) -> str | None:
        """The document with these denies (oldest first) in place of accessctl's own; None
        when no statement would be left (the inline policy is then deleted)."""
        statements = [d.statement() for d in sorted(denies, key=lambda d: d.before)]
        if "\n" in self.lead:
            pad = "\n" + self.lead.rsplit("\n", 1)[1]
            ours = [json.dumps(st, indent=2).replace("\n", pad) for st in statements]
        else:
            ours = [json.dumps(st) for st in statements]
        items = [*self.kept, *ours]
        if not items:
            return None
        body = "[" + self.lead + ("," + self.lead).join(items) + self.close + "]"
        if not self.text.strip():
            return '{\n  "Version": "2012-10-17",\n  "Statement": ' + body + "\n}"
        return self.head + body + self.tail


def policy_fits(text: str) -> bool:
    """Within Identity Center's inline policy quota (bytes, and non-whitespace characters)."""
    nonblank = sum(1 for c in text if c not in _BLANK)
    return len(text.encode()) <= INLINE_POLICY_MAX_BYTES and nonblank <= INLINE_POLICY_MAX_NONBLANK


@dataclass(frozen=True)
class DenyRevision:
    """What one write makes of an inline policy: the new text (None: delete it), whether it
    differs from what was read, and the live denies that had to go for lack of room."""

    text: str | None
    changed: bool
    denies: tuple[SessionDeny, ...]  # what the new text holds
    dropped: tuple[SessionDeny, ...] = ()
    expired: int = 0


def revise(
    policy: InlinePolicy, additions: Iterable[SessionDeny], now: datetime, session: timedelta
) -> DenyRevision:
    """The inline policy with ``additions`` merged in (one statement per revocation time)
    and the denies past their horizon removed; when it would outgrow the quota, the oldest
    denies go first, so the newest revocations are the ones kept."""
    live = [d for d in policy.denies if not d.expired(now, session)]
    merged: dict[datetime, SessionDeny] = {}
    for deny in (*live, *additions):
        known = merged.get(deny.before)
        merged[deny.before] = (
            deny
            if known is None
            else SessionDeny(deny.before, max(deny.until, known.until), known.users | deny.users)
        )
    wanted = sorted(merged.values(), key=lambda d: d.before)
    if set(wanted) == set(policy.denies):
        return DenyRevision(policy.text or None, False, policy.denies)
    dropped: list[SessionDeny] = []
    text = policy.render(wanted)
    while text is not None and not policy_fits(text) and wanted:
        dropped.append(wanted.pop(0))
        text = policy.render(wanted)
    expired = len(policy.denies) - len(live)
    return DenyRevision(text, True, tuple(wanted), tuple(dropped), expired)


def revocation_time(now: datetime) -> datetime:
    """``now`` in whole seconds, rounded up: a session issued within the second before the
    revocation is still denied (IAM compares times to the second)."""
    whole = now.replace(microsecond=0)
    return whole if whole == now else whole + timedelta(seconds=1)


@dataclass
class _DenyTicket:
    """Users one apply() call revoked in one permission set, waiting for the write that
    carries their deny (whichever call makes it: writes to a permission set are shared)."""

    users: frozenset[str]
    before: datetime
    outcome: tuple[bool, str] | None = None  # (denied, why not)


@dataclass(frozen=True)
class _Upkeep:
    """What observe() found a permission set's denies need from settle()."""

    name: str
    expired: int  # denies past their horizon, to remove
    unprovisioned: bool  # live denies AWS has not provisioned to every account


@dataclass(frozen=True)
class _Written:
    """The end of one write of a permission set's denies (and its provisioning)."""

    ok: bool
    message: str = ""
    denies: tuple[SessionDeny, ...] = ()
    dropped: tuple[SessionDeny, ...] = ()
    expired: int = 0  # denies removed because their sessions have all ended


class AwsProvider:
    """The Provider for IAM Identity Center (see reconciler.providers.base.Provider)."""

    name = "aws"

    def __init__(
        self,
        settings: AwsSettings,
        owned: Iterable[str],
        sso: SSOAdminClient,
        identitystore: IdentityStoreClient,
        *,
        accounts: Iterable[str] = (),
        sweep_users: bool = False,
        tuning: Tuning | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.owned = frozenset(owned)
        self.sso = sso
        self.ids = identitystore
        self.accounts = frozenset(accounts)  # always observed (exact policy scopes)
        self.sweep_users = sweep_users  # emulators only: see _sweep_users
        self.tuning = tuning or Tuning()
        self._sleep = sleep
        self._clock = clock
        self.calls = CallCounter()
        self.calls.attach(sso)
        self.calls.attach(identitystore)
        self._lock = threading.Lock()
        self._ps_listing: list[tuple[str, str, object]] | None = None  # once per run
        self._user_ids: dict[str, str | None] = {}  # user name -> id (None: unknown)
        self._user_names: dict[str, str] = {}  # id -> user name
        # (account, permission set ARN) -> USER ids assigned, as last read (observe, or the
        # read-back after a change): a grant already held is not created a second time.
        self._held: dict[tuple[str, str], frozenset[str]] = {}
        # Shared by every apply() call, whatever thread the planner runs it on.
        self._creations = threading.BoundedSemaphore(MAX_OUTSTANDING_CREATIONS)
        self._deletions = threading.BoundedSemaphore(MAX_OUTSTANDING_CREATIONS)
        # Session denies: one write at a time per permission set, shared by every revoke
        # waiting for it; one provisioning at a time in the instance (AWS updates one
        # permission set role per account at a time).
        self._ps_locks: dict[str, threading.Lock] = {}
        # apply() calls still changing assignments: a deny waits for them (a bounded
        # while), so that every revoke they make shares its write and provisioning.
        self._gather = threading.Condition()
        self._in_flight = 0
        self._queued: dict[str, list[_DenyTicket]] = {}
        self._provisioning = threading.Lock()
        self._upkeep: dict[str, _Upkeep] = {}  # permission set ARN -> for settle()
        self._written: set[str] = set()  # permission sets whose denies this run wrote

    # -- calls -------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        """One API call; Conflict/Throttling retried with jittered backoff (on top of
        botocore's own adaptive retries), then CloudFailure."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return retrying(
                lambda: method(**kwargs),
                policy=self.tuning.backoff,
                retryable=_retryable,
                sleep=self._sleep,
            )
        except ClientError as exc:
            raise CloudFailure(describe_error(exc), error_code(exc)) from exc
        except BotoCoreError as exc:
            raise CloudFailure(describe_error(exc)) from exc

    def _pages(self, client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
        """Every item of a paginated listing, each page through _call (so retried)."""
        items: list[Any] = []
        token: str | None = None
        method = getattr(client, operation)
        while True:
            page = self._call(method, **kwargs, **({"NextToken": token} if token else {}))
            items.extend(page.get(key, []))
            token = page.get("NextToken")
            if not token:
                return items

    # -- permission sets and users, resolved once per run --------------------------------

    def _listing(self) -> list[tuple[str, str, object]]:
        """(name, ARN, raw SessionDuration) of every permission set in the instance, read
        once per run. Names need DescribePermissionSet; the duration comes with it and is
        left unparsed: only ``accessctl doctor`` reads it."""
        with self._lock:
            if self._ps_listing is not None:
                return self._ps_listing
        arns = self._pages(
            self.sso,
            "list_permission_sets",
            "PermissionSets",
            InstanceArn=self.settings.instance_arn,
        )
        listing = []
        for arn in arns:
            ps = self._call(
                self.sso.describe_permission_set,
                InstanceArn=self.settings.instance_arn,
                PermissionSetArn=arn,
            )["PermissionSet"]
            listing.append((str(ps["Name"]), str(arn), ps.get("SessionDuration")))
        with self._lock:
            self._ps_listing = listing
        return listing

    def permission_sets(self) -> dict[str, str]:
        """Owned permission set name -> ARN (names missing from the instance are absent)."""
        return {name: arn for name, arn, _ in self._listing() if name in self.owned}

    def describe_permission_sets(self) -> list[tuple[str, str, timedelta | None]]:
        """(name, ARN, SessionDuration) of every permission set in the instance; the
        duration is None when unset or unreadable (see ``duration_warnings``)."""
        return [(name, arn, session_duration(raw)) for name, arn, raw in self._listing()]

    def duration_warnings(self) -> list[str]:
        """One line per owned permission set whose SessionDuration cannot be read."""
        return [
            f"permission set {name!r} has a SessionDuration accessctl cannot read ({raw!r}); "
            "its assignments are managed as usual, but its session length cannot be checked"
            for name, _, raw in self._listing()
            if name in self.owned and raw is not None and session_duration(raw) is None
        ]

    def instances(self) -> list[dict[str, Any]]:
        """The Identity Center instances these credentials see (for `accessctl doctor`)."""
        return list(self._pages(self.sso, "list_instances", "Instances"))

    def user_id(self, user_name: str) -> str | None:
        """The identity store user id of exactly this user name, or None when there is none.

        AWS documents UserName as "a unique string used to identify the user" (at most 128
        characters) and GetUserId's ``userName`` as a unique attribute, but does not say how
        case compares; moto and SCIM-provisioned stores can hold ``alice@example.com`` and
        ``Alice@example.com`` as two users. So the name goes to GetUserId exactly as the
        policies spell it, and whatever id AWS answers is the user: accessctl never folds
        case or compares names itself.
        """
        with self._lock:
            if user_name in self._user_ids:
                return self._user_ids[user_name]
        try:
            found: str | None = self._call(
                self.ids.get_user_id,
                IdentityStoreId=self.settings.identity_store_id,
                AlternateIdentifier={
                    "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": user_name}
                },
            )["UserId"]
        except CloudFailure as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            found = None
        with self._lock:
            self._user_ids[user_name] = found
            if found:
                self._user_names.setdefault(found, user_name)
        return found

    def user_name(self, user_id: str) -> str:
        """The user name of an id, for display; a deleted user keeps its id as its name."""
        with self._lock:
            if user_id in self._user_names:
                return self._user_names[user_id]
        try:
            name = str(
                self._call(
                    self.ids.describe_user,
                    IdentityStoreId=self.settings.identity_store_id,
                    UserId=user_id,
                )["UserName"]
            )
        except CloudFailure as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            with self._lock:
                self._user_names[user_id] = user_id
            return user_id
        with self._lock:
            self._user_names[user_id] = name
            self._user_ids.setdefault(name, user_id)
        return name

    def resolve(self, grants: Sequence[Grant]) -> list[Grant]:
        """Desired grants with ``principal_id`` = the user id of their exact user name
        (None for a user that does not exist or cannot be looked up right now)."""
        names = sorted({g.principal for g in grants if self._unresolved(g)})
        if not names:
            return list(grants)
        with ThreadPoolExecutor(max_workers=min(self.tuning.workers, len(names))) as pool:
            ids = dict(zip(names, pool.map(self._lookup, names), strict=True))
        return [
            replace(g, principal_id=ids[g.principal]) if self._unresolved(g) else g for g in grants
        ]

    def _unresolved(self, grant: Grant) -> bool:
        return grant.provider == self.name and grant.principal_id is None

    def _lookup(self, user_name: str) -> str | None:
        try:
            return self.user_id(user_name)
        except CloudFailure:
            return None  # apply() looks the name up again and reports why it fails

    # -- observe -----------------------------------------------------------------------

    def observe(self, scopes: Sequence[str], now: datetime) -> Observation:
        before = self.calls.snapshot()
        obs = Observation()
        try:
            ps_arns = self.permission_sets()
        except CloudFailure as exc:
            for scope in scopes:
                obs.failures[scope] = f"cannot list permission sets: {exc}"
            obs.calls = dict(self.calls.snapshot() - before)
            return obs
        obs.warnings.extend(self.duration_warnings())
        self._check_denies(ps_arns, now, obs)
        accounts = self._discover(scopes, ps_arns, obs)
        pairs = [(a, name) for a in sorted(accounts) for name in sorted(ps_arns)]
        with ThreadPoolExecutor(max_workers=self.tuning.workers) as pool:
            listed = list(pool.map(lambda pair: self._observe_pair(pair, ps_arns), pairs))
        by_account: dict[str, set[Grant]] = {a: set() for a in accounts}
        notes: dict[str, None] = {}
        for (account, _), result in zip(pairs, listed, strict=True):
            if isinstance(result, str):
                obs.failures.setdefault(account, result)
            else:
                by_account[account] |= result[0]
                notes.update(dict.fromkeys(result[1]))
        for account, grants in by_account.items():
            if account not in obs.failures:
                obs.grants[account] = frozenset(grants)
        obs.warnings.extend(notes)
        obs.calls = dict(self.calls.snapshot() - before)
        return obs

    def _discover(
        self, scopes: Sequence[str], ps_arns: Mapping[str, str], obs: Observation
    ) -> set[str]:
        """The requested accounts, the policies' exact accounts, and every account where an
        owned permission set is provisioned or held by a known user: an assignment nobody
        asked about is still found (and revoked)."""
        accounts = {s for s in scopes if ACCOUNT_ID.fullmatch(s)}
        for scope in scopes:
            if not ACCOUNT_ID.fullmatch(scope):
                obs.failures[scope] = f"{scope!r} is not a 12-digit AWS account id"
        accounts |= self.accounts
        for name, arn in sorted(ps_arns.items()):
            try:
                accounts |= set(
                    self._pages(
                        self.sso,
                        "list_accounts_for_provisioned_permission_set",
                        "AccountIds",
                        InstanceArn=self.settings.instance_arn,
                        PermissionSetArn=arn,
                    )
                )
            except CloudFailure as exc:
                obs.failures[f"permission-set:{name}"] = f"cannot list its accounts: {exc}"
        accounts |= self._sweep_users(set(ps_arns.values()), obs)
        return accounts

    def _sweep_users(self, owned_arns: set[str], obs: Observation) -> set[str]:
        """Accounts where any identity store user holds an owned permission set.

        Only against emulators (see ``_wants_sweep``): AWS provisions a permission set into
        every account where it is assigned, so the provisioned-accounts listing already
        finds them there; moto does not track provisioning, and without this sweep an
        assignment in an account nobody mentions would go unseen.
        """
        if not self.sweep_users:
            return set()
        try:
            users = self._pages(
                self.ids, "list_users", "Users", IdentityStoreId=self.settings.identity_store_id
            )
        except CloudFailure as exc:
            obs.failures["identity-store"] = f"cannot list users: {exc}"
            return set()
        with self._lock:
            for u in users:
                self._user_names.setdefault(u["UserId"], u["UserName"])
                self._user_ids.setdefault(u["UserName"], u["UserId"])

        def held(user: Mapping[str, Any]) -> set[str] | str:
            try:
                rows = self._pages(
                    self.sso,
                    "list_account_assignments_for_principal",
                    "AccountAssignments",
                    InstanceArn=self.settings.instance_arn,
                    PrincipalId=user["UserId"],
                    PrincipalType="USER",
                )
            except CloudFailure as exc:
                return f"cannot list the assignments of {user['UserName']!r}: {exc}"
            return {r["AccountId"] for r in rows if r.get("PermissionSetArn") in owned_arns}

        accounts: set[str] = set()
        with ThreadPoolExecutor(max_workers=self.tuning.workers) as pool:
            for user, found in zip(users, pool.map(held, users), strict=True):
                if isinstance(found, str):
                    obs.failures[f"user:{user['UserName']}"] = found
                else:
                    accounts |= found
        return accounts

    def _observe_pair(
        self, pair: tuple[str, str], ps_arns: Mapping[str, str]
    ) -> tuple[set[Grant], list[str]] | str:
        """The USER assignments of one (account, permission set), keyed by user id, and
        warnings; or why the pair cannot be read."""
        account, name = pair
        try:
            user_ids = self._assigned_users(account, ps_arns[name])
        except CloudFailure as exc:
            return f"cannot list assignments of {name} in {account}: {exc}"
        with self._lock:
            self._held[account, ps_arns[name]] = frozenset(user_ids)
        grants, notes = set(), []
        for uid in sorted(user_ids):
            shown, note = self._display_name(uid)
            grants.add(Grant("aws", account, name, principal=shown, principal_id=uid))
            notes += [note] if note else []
        return grants, notes

    def _display_name(self, user_id: str) -> tuple[str, str | None]:
        """A user's name for people; the decision needs only the id, so a failed lookup
        shows the id and warns instead of making the account unreadable."""
        try:
            return self.user_name(user_id), None
        except CloudFailure as exc:
            return user_id, f"cannot read the user name of {user_id} (shown by id): {exc}"

    def _assigned_users(self, account: str, ps_arn: str) -> set[str]:
        """USER principal ids assigned ``ps_arn`` in ``account`` (groups are not ours)."""
        rows = self._pages(
            self.sso,
            "list_account_assignments",
            "AccountAssignments",
            InstanceArn=self.settings.instance_arn,
            AccountId=account,
            PermissionSetArn=ps_arn,
        )
        return {r["PrincipalId"] for r in rows if r.get("PrincipalType") == "USER"}

    # -- apply -------------------------------------------------------------------------

    def apply(self, scope: str, changes: Sequence[Change], now: datetime) -> list[ChangeResult]:
        with self._gather:
            self._in_flight += 1
        try:
            results, revoked = self._change_assignments(scope, changes)
        finally:
            with self._gather:
                self._in_flight -= 1
                self._gather.notify_all()
        results.update(self._end_sessions(revoked, results, now))
        return [results[i] for i in range(len(changes))]

    def _change_assignments(
        self, scope: str, changes: Sequence[Change]
    ) -> tuple[dict[int, ChangeResult], list[tuple[int, str, str]]]:
        """Each change's result by position, and the revokes that took an assignment away
        (position, permission set ARN, user id)."""
        try:
            ps_arns = self.permission_sets()
        except CloudFailure as exc:
            failed = {
                i: ChangeResult(c, False, f"cannot list permission sets: {exc}")
                for i, c in enumerate(changes)
            }
            return failed, []
        planned: list[tuple[Change, str, str]] = []  # (change, ps arn, user id)
        positions: list[int] = []  # where each planned change sits in ``changes``
        results: dict[int, ChangeResult] = {}
        for i, change in enumerate(changes):
            target = self._target(scope, change, ps_arns)
            if isinstance(target, ChangeResult):
                results[i] = target
            else:
                planned.append((change, *target))
                positions.append(i)
        if not planned:
            return results, []
        both = _granted_and_revoked(planned)

        def carry_out(item: tuple[Change, str, str]) -> tuple[ChangeResult, bool]:
            change, ps_arn, uid = item
            return self._carry_out(scope, change, ps_arn, uid, both.get((ps_arn, uid)))

        with ThreadPoolExecutor(max_workers=self.tuning.workers) as pool:
            done = list(pool.map(carry_out, planned))
        verified = self._verify(scope, planned, done)
        results.update(zip(positions, verified, strict=True))
        revoked = [
            (i, ps_arn, uid)
            for i, (change, ps_arn, uid) in zip(positions, planned, strict=True)
            if change.kind is ChangeKind.REVOKE and results[i].ok
        ]
        return results, revoked

    def _target(
        self, scope: str, change: Change, ps_arns: Mapping[str, str]
    ) -> tuple[str, str] | ChangeResult:
        """(permission set ARN, user id) of a change, or why it cannot be carried out."""
        grant = change.grant
        if change.kind is ChangeKind.KEEP:
            return ChangeResult(change, True, "unchanged", verified=False)
        if not ACCOUNT_ID.fullmatch(scope) or grant.scope != scope:
            return ChangeResult(
                change, False, f"{grant.scope!r} is not the 12-digit AWS account {scope!r}"
            )
        if grant.role not in self.owned:
            # Never touch a permission set no policy names: it is not accessctl's.
            return ChangeResult(
                change,
                False,
                f"permission set {grant.role!r} is not named in any aws policy; refusing to change it",
            )
        if grant.role not in ps_arns:
            return ChangeResult(
                change,
                False,
                f"permission set {grant.role!r} does not exist in {self.settings.instance_arn}",
            )
        uid = self._principal(change)
        if isinstance(uid, ChangeResult):
            return uid
        return ps_arns[grant.role], uid

    def _principal(self, change: Change) -> str | ChangeResult:
        """The user id a change is about. A revoke names the id its assignment carries
        (observed), never a name looked up again; a grant uses the id resolve() found, or
        looks its exact user name up now."""
        grant = change.grant
        if grant.principal_id:
            return grant.principal_id
        if change.kind is ChangeKind.REVOKE:
            return ChangeResult(
                change,
                False,
                f"refusing to revoke {grant.principal!r} by user name: a revoke must carry "
                "the user id of the observed assignment",
            )
        try:
            uid = self.user_id(grant.principal)
        except CloudFailure as exc:
            return ChangeResult(
                change, False, f"cannot look up Identity Center user {grant.principal!r}: {exc}"
            )
        if uid is None:
            return ChangeResult(
                change,
                False,
                f"Identity Center user {grant.principal!r} not found in identity store "
                f"{self.settings.identity_store_id} (check identities in policies/)",
            )
        return uid

    def _carry_out(
        self, scope: str, change: Change, ps_arn: str, uid: str, granted: Change | None = None
    ) -> tuple[ChangeResult, bool]:
        """Create or delete one assignment and wait for AWS's verdict. The flag says whether
        the outcome is conclusive: only AWS's own SUCCEEDED/FAILED is; a call that failed
        or an operation still running leaves the read-back to decide.

        ``granted``: a grant of this same call wants the very assignment (its user name
        resolved only now to an observed id). Then nothing is sent: a deletion racing a
        creation of one assignment could end either way. The grant is left to the
        read-back; the revoke fails, and the next run decides it afresh."""
        if granted is not None and change.kind is ChangeKind.GRANT:
            return ChangeResult(change, True, "already assigned"), False
        with self._lock:
            already = uid in self._held.get((scope, ps_arn), frozenset())
        if already and change.kind is ChangeKind.GRANT:
            # Held when last read (a rerun after a lost answer): never a second creation;
            # the read-back confirms it.
            return ChangeResult(change, True, "already assigned"), False
        if granted is not None:
            who = granted.grant.request or granted.grant.principal
            message = f"not revoked: {who} is granted the same assignment in this run"
            return ChangeResult(change, False, message), True
        assignment = {
            "InstanceArn": self.settings.instance_arn,
            "TargetId": scope,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": ps_arn,
            "PrincipalType": "USER",
            "PrincipalId": uid,
        }
        grant = change.kind is ChangeKind.GRANT
        slots = self._creations if grant else self._deletions
        with slots:  # an async operation is outstanding until polled to its end
            try:
                if grant:
                    status = self._call(self.sso.create_account_assignment, **assignment)[
                        "AccountAssignmentCreationStatus"
                    ]
                else:
                    status = self._call(self.sso.delete_account_assignment, **assignment)[
                        "AccountAssignmentDeletionStatus"
                    ]
                return self._await(change, status)
            except CloudFailure as exc:
                if not grant and exc.code == "ResourceNotFoundException":
                    return ChangeResult(change, True, "assignment was already absent"), False
                verb = "create" if grant else "delete"
                message = f"cannot {verb} the account assignment: {exc}"
                return ChangeResult(change, False, message), False

    def _await(self, change: Change, status: Mapping[str, Any]) -> tuple[ChangeResult, bool]:
        """Poll an async creation/deletion until SUCCEEDED or FAILED, with bounded backoff;
        conclusive unless it timed out."""
        grant = change.kind is ChangeKind.GRANT
        request_id = status.get("RequestId")
        describe = (
            self.sso.describe_account_assignment_creation_status
            if grant
            else self.sso.describe_account_assignment_deletion_status
        )
        id_key = (
            "AccountAssignmentCreationRequestId" if grant else "AccountAssignmentDeletionRequestId"
        )
        out_key = "AccountAssignmentCreationStatus" if grant else "AccountAssignmentDeletionStatus"
        status = self._wait(
            status,
            lambda: self._call(
                describe, InstanceArn=self.settings.instance_arn, **{id_key: request_id}
            )[out_key],
        )
        if status.get("Status") not in ("SUCCEEDED", "FAILED"):
            message = self._still(status)
            return ChangeResult(change, False, message, cloud_request_id=request_id), False
        if status["Status"] == "FAILED":
            reason = status.get("FailureReason") or "no reason given"
            message = f"AWS reported FAILED: {reason}"
            return ChangeResult(change, False, message, cloud_request_id=request_id), True
        return ChangeResult(change, True, "SUCCEEDED", cloud_request_id=request_id), True

    def _wait(
        self, status: Mapping[str, Any], fetch: Callable[[], Mapping[str, Any]]
    ) -> Mapping[str, Any]:
        """Poll an async operation until SUCCEEDED or FAILED, with bounded backoff; the last
        status seen (still IN_PROGRESS when the timeout came first)."""
        deadline = self._clock() + self.tuning.poll_timeout
        delay = self.tuning.poll_first
        while status.get("Status") not in ("SUCCEEDED", "FAILED"):
            if self._clock() + delay > deadline:
                return status
            self._sleep(delay)
            delay = min(delay * 2, self.tuning.poll_max)
            status = fetch()
        return status

    def _still(self, status: Mapping[str, Any]) -> str:
        return (
            f"still {status.get('Status', 'IN_PROGRESS')} after "
            f"{self.tuning.poll_timeout:.0f}s; the next run re-checks it"
        )

    def _verify(
        self,
        scope: str,
        planned: Sequence[tuple[Change, str, str]],
        done: Sequence[tuple[ChangeResult, bool]],
    ) -> list[ChangeResult]:
        """Read each touched (account, permission set) back once; trust only what is there.

        A reported success must be confirmed by the read-back; an inconclusive failure (a
        call that failed, an operation still running) that the read-back shows done is a
        success; AWS's own FAILED stays a failure whatever the listing shows."""
        held: dict[str, set[str] | str] = {}
        for ps_arn in {p[1] for p in planned}:
            try:
                held[ps_arn] = self._assigned_users(scope, ps_arn)
                with self._lock:
                    self._held[scope, ps_arn] = frozenset(held[ps_arn])
            except CloudFailure as exc:
                held[ps_arn] = f"cannot read the assignments back: {exc}"
        out = []
        for (change, ps_arn, uid), (result, conclusive) in zip(planned, done, strict=True):
            users = held[ps_arn]
            if isinstance(users, str):
                out.append(_replace(result, ok=False, message=f"{result.message}; {users}"))
                continue
            present = uid in users
            wanted = change.kind is ChangeKind.GRANT
            if present == wanted and (result.ok or not conclusive):
                note = "" if result.ok else "; the read-back shows it done"
                out.append(_replace(result, ok=True, verified=True, message=result.message + note))
            elif present == wanted:
                out.append(_replace(result, verified=True))
            elif result.ok:
                what = "still present" if present else "absent"
                out.append(
                    _replace(
                        result,
                        ok=False,
                        message=f"{result.message}, but the assignment is {what} on read-back",
                    )
                )
            else:
                out.append(result)
        return out

    # -- session denies ----------------------------------------------------------------

    def _session(self, ps_arn: str) -> timedelta:
        """How long a session of this permission set can last: its SessionDuration, or
        AWS's maximum when it is unset or unreadable."""
        raw = next((d for _, arn, d in self._listing() if arn == ps_arn), None)
        return session_duration(raw) or MAX_SESSION

    def _ps_name(self, ps_arn: str) -> str:
        return next((name for name, arn, _ in self._listing() if arn == ps_arn), ps_arn)

    def _read_policy(self, ps_arn: str) -> InlinePolicy:
        """The inline policy as AWS holds it now; CloudFailure, or ValueError when it is no
        document accessctl can edit without risking someone else's statements."""
        text = self._call(
            self.sso.get_inline_policy_for_permission_set,
            InstanceArn=self.settings.instance_arn,
            PermissionSetArn=ps_arn,
        ).get("InlinePolicy")
        return InlinePolicy.parse(text or "")

    def _check_denies(self, ps_arns: Mapping[str, str], now: datetime, obs: Observation) -> None:
        """One read of each owned permission set's inline policy per run: which denies are
        past their horizon, and whether live ones still wait for provisioning (a run whose
        provisioning failed); settle() acts on both. Nothing is written here."""
        names = sorted(ps_arns)
        workers = max(1, min(self.tuning.workers, len(names)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            found = list(pool.map(lambda n: self._deny_upkeep(n, ps_arns[n], now), names))
        upkeep: dict[str, _Upkeep] = {}
        for name, (need, notes) in zip(names, found, strict=True):
            obs.warnings.extend(notes)
            if need is not None:
                upkeep[ps_arns[name]] = need
        with self._lock:
            self._upkeep = upkeep
            self._written = set()

    def _deny_upkeep(
        self, name: str, ps_arn: str, now: datetime
    ) -> tuple[_Upkeep | None, list[str]]:
        try:
            policy = self._read_policy(ps_arn)
        except CloudFailure as exc:
            why = f"cannot read the inline policy of permission set {name!r}: {exc}"
            return None, [f"{why}; its session denies are not checked in this run"]
        except ValueError as exc:
            why = f"the inline policy of permission set {name!r} cannot be edited safely: {exc}"
            return None, [f"{why}; sessions of its revoked assignments cannot be ended"]
        notes = [
            f"permission set {name!r}: statement {sid!r} carries accessctl's prefix but is "
            "not one accessctl wrote; it is kept as is"
            for sid in policy.foreign
        ]
        session = self._session(ps_arn)
        expired = sum(1 for d in policy.denies if d.expired(now, session))
        unprovisioned = False
        if expired < len(policy.denies):
            try:
                unprovisioned = bool(
                    self._pages(
                        self.sso,
                        "list_accounts_for_provisioned_permission_set",
                        "AccountIds",
                        InstanceArn=self.settings.instance_arn,
                        PermissionSetArn=ps_arn,
                        ProvisioningStatus="LATEST_PERMISSION_SET_NOT_PROVISIONED",
                    )
                )
            except CloudFailure as exc:
                notes.append(f"cannot check how permission set {name!r} is provisioned: {exc}")
        if unprovisioned:
            notes.append(
                f"permission set {name!r} holds session denies that are not provisioned to "
                "every account yet; apply provisions it"
            )
        if not (expired or unprovisioned):
            return None, notes
        return _Upkeep(name, expired, unprovisioned), notes

    def _end_sessions(
        self,
        revoked: Sequence[tuple[int, str, str]],
        results: Mapping[int, ChangeResult],
        now: datetime,
    ) -> dict[int, ChangeResult]:
        """Each assignment this call took away: deny the sessions it issued before the
        revocation, in its permission set's inline policy (one write and provisioning per
        permission set, shared with the revokes other accounts have in flight)."""
        before = revocation_time(now)
        by_ps: dict[str, list[tuple[int, str]]] = {}
        for i, ps_arn, uid in revoked:
            by_ps.setdefault(ps_arn, []).append((i, uid))
        out: dict[int, ChangeResult] = {}
        for ps_arn, items in sorted(by_ps.items()):
            denied, why = self._deny(ps_arn, frozenset(u for _, u in items), before, now)
            name = self._ps_name(ps_arn)
            for i, _ in items:
                out[i] = _sessions_ended(results[i], before, name, None if denied else why)
        return out

    def _deny(
        self, ps_arn: str, users: frozenset[str], before: datetime, now: datetime
    ) -> tuple[bool, str]:
        """Queue these users' deny, let the apply() calls still changing assignments catch
        up (bounded by ``Tuning.gather``), then wait for the write that carries it: the
        first caller to get the permission set's lock writes every deny queued by then."""
        ticket = _DenyTicket(users, before)
        with self._lock:
            self._queued.setdefault(ps_arn, []).append(ticket)
            lock = self._ps_locks.setdefault(ps_arn, threading.Lock())
        with self._gather:
            self._gather.wait_for(lambda: self._in_flight == 0, timeout=self.tuning.gather)
        with lock:
            if ticket.outcome is None:
                self._flush(ps_arn, now)
        return ticket.outcome or (False, "the deny was never written")

    def _flush(self, ps_arn: str, now: datetime, provision: bool = False) -> _Written:
        """Write the queued denies and drop those past their horizon, in one read, one
        write and one provisioning. The caller holds the permission set's lock."""
        with self._lock:
            tickets = self._queued.pop(ps_arn, [])
            self._written.add(ps_arn)
        session = self._session(ps_arn)
        additions = [SessionDeny(t.before, t.before + session, t.users) for t in tickets]
        written = self._write_denies(ps_arn, additions, now, session, provision)
        name = self._ps_name(ps_arn)
        for t in tickets:
            held = any(d.before == t.before and t.users <= d.users for d in written.denies)
            if not written.ok:
                t.outcome = (False, written.message)
            elif not held:
                t.outcome = (False, f"no room left in the inline policy of {name!r} ({_QUOTA})")
            elif written.dropped:
                t.outcome = (False, _dropped_message(name, written.dropped))
            else:
                t.outcome = (True, "")
        return written

    def _write_denies(
        self,
        ps_arn: str,
        additions: Sequence[SessionDeny],
        now: datetime,
        session: timedelta,
        provision: bool,
    ) -> _Written:
        name = self._ps_name(ps_arn)
        try:
            policy = self._read_policy(ps_arn)
        except CloudFailure as exc:
            return _Written(False, f"cannot read the inline policy of {name!r}: {exc}")
        except ValueError as exc:
            return _Written(False, f"the inline policy of {name!r} cannot be edited safely: {exc}")
        revision = revise(policy, additions, now, session)
        if revision.changed:
            try:
                self._put_policy(ps_arn, revision.text)
            except CloudFailure as exc:
                return _Written(False, f"cannot write the inline policy of {name!r}: {exc}")
        if not (revision.changed or provision):
            return _Written(True, denies=revision.denies)
        failure = self._provision(ps_arn)
        if failure:
            message = f"provisioning permission set {name!r}: {failure}"
            return _Written(False, message, revision.denies, revision.dropped, revision.expired)
        return _Written(True, "", revision.denies, revision.dropped, revision.expired)

    def _put_policy(self, ps_arn: str, text: str | None) -> None:
        where = {"InstanceArn": self.settings.instance_arn, "PermissionSetArn": ps_arn}
        if text is None:
            self._call(self.sso.delete_inline_policy_from_permission_set, **where)
        else:
            self._call(self.sso.put_inline_policy_to_permission_set, InlinePolicy=text, **where)

    def _provision(self, ps_arn: str) -> str | None:
        """Provision the permission set to every account where it is provisioned and wait
        for AWS's verdict; None when it SUCCEEDED, else why not. One at a time."""
        instance = self.settings.instance_arn

        def fetch(request_id: str) -> Mapping[str, Any]:
            return self._call(  # type: ignore[no-any-return]
                self.sso.describe_permission_set_provisioning_status,
                InstanceArn=instance,
                ProvisionPermissionSetRequestId=request_id,
            )["PermissionSetProvisioningStatus"]

        with self._provisioning:
            try:
                status = self._call(
                    self.sso.provision_permission_set,
                    InstanceArn=instance,
                    PermissionSetArn=ps_arn,
                    TargetType="ALL_PROVISIONED_ACCOUNTS",
                )["PermissionSetProvisioningStatus"]
                request_id = str(status.get("RequestId", ""))
                status = self._wait(status, lambda: fetch(request_id))
            except CloudFailure as exc:
                return str(exc)
        if status.get("Status") == "SUCCEEDED":
            return None
        if status.get("Status") == "FAILED":
            return f"AWS reported FAILED: {status.get('FailureReason') or 'no reason given'}"
        return self._still(status)

    def settle(self, now: datetime) -> Observation:
        """After the run's changes: remove the denies past their horizon and provision the
        permission sets whose live denies AWS has not provisioned everywhere (both found by
        observe()); a permission set this run already wrote is done. ``failures`` (keyed
        ``permission-set:<name>``) are denies that may not hold; ``warnings`` are expired
        denies left for the next run. Never raises for cloud failures."""
        before = self.calls.snapshot()
        obs = Observation()
        with self._lock:
            todo = sorted((a, u) for a, u in self._upkeep.items() if a not in self._written)
        for ps_arn, need in todo:
            with self._lock:
                lock = self._ps_locks.setdefault(ps_arn, threading.Lock())
            with lock:
                written = self._flush(ps_arn, now, provision=need.unprovisioned)
            problem = written.message if not written.ok else ""
            if written.ok and written.dropped:
                problem = _dropped_message(need.name, written.dropped)
            if problem and (need.unprovisioned or written.dropped):
                obs.failures[f"permission-set:{need.name}"] = problem
            elif problem:
                obs.warnings.append(f"expired session denies of {need.name!r} stay: {problem}")
            elif written.expired:
                obs.notes.append(
                    f"removed {written.expired} session deny statement(s) from {need.name!r}: "
                    "every session they ended has expired"
                )
        obs.calls = dict(self.calls.snapshot() - before)
        return obs


def _replace(result: ChangeResult, **changes: Any) -> ChangeResult:
    return replace(result, **changes)


_QUOTA = (
    f"Identity Center allows {INLINE_POLICY_MAX_BYTES} bytes, "
    f"{INLINE_POLICY_MAX_NONBLANK} of them not whitespace"
)


def _dropped_message(name: str, dropped: Sequence[SessionDeny]) -> str:
    users = sorted({u for d in dropped for u in d.users})
    return (
        f"the inline policy of {name!r} is full ({_QUOTA}): to keep the newest revocations, "
        f"the session denies of {len(dropped)} earlier one(s) (users {', '.join(users)}, "
        f"issued before {format_rfc3339(dropped[-1].before)}) were removed, so those sessions "
        "may run until they expire"
    )


def _sessions_ended(
    result: ChangeResult, before: datetime, permission_set: str, failure: str | None
) -> ChangeResult:
    """A revoke's result with the fate of the sessions its assignment issued."""
    at = format_rfc3339(before)
    if failure is not None:
        message = (
            f"{result.message}; the assignment is gone, but its sessions issued before {at} "
            f"were not ended: {failure}"
        )
        return _replace(result, ok=False, message=message)
    message = f"{result.message}; sessions issued before {at} denied ({permission_set!r})"
    # ChangeResult.sessions_ended_at, where the core has it (the ledger records it)
    extra = {"sessions_ended_at": before} if "sessions_ended_at" in _RESULT_FIELDS else {}
    return _replace(result, message=message, **extra)


_RESULT_FIELDS = frozenset(f.name for f in fields(ChangeResult))


def _granted_and_revoked(
    planned: Sequence[tuple[Change, str, str]],
) -> dict[tuple[str, str], Change]:
    """(permission set ARN, user id) that one call both grants and revokes -> the grant."""
    grants = {(a, u): c for c, a, u in planned if c.kind is ChangeKind.GRANT}
    revokes = {(a, u) for c, a, u in planned if c.kind is ChangeKind.REVOKE}
    return {key: grants[key] for key in revokes & grants.keys()}


def build_clients(
    settings: AwsSettings, max_attempts: int = 8, workers: int = DEFAULT_CONCURRENCY
) -> tuple[Any, Any]:
    """sso-admin and identitystore clients from boto3's usual credential chain.

    ``AWS_ENDPOINT_URL`` (tests, sandbox) is honoured by botocore itself (>= 1.31).
    Adaptive retries back off and rate-limit on throttling (Identity Center allows ~20 TPS).
    """
    import boto3
    from botocore.config import Config as BotoConfig

    session = boto3.session.Session(region_name=settings.region)
    if session.region_name is None:
        raise ConfigError("no AWS region: set providers.aws.region in policies/ or AWS_REGION")
    if session.get_credentials() is None and _endpoint_override():
        # An emulator accepts any signature; a real endpoint refuses these loudly.
        session = boto3.session.Session(
            region_name=session.region_name,
            aws_access_key_id="accessctl-sandbox",
            aws_secret_access_key="accessctl-sandbox",  # noqa: S106 - not a secret
        )
    if session.get_credentials() is None:
        raise ConfigError(
            "no AWS credentials: configure them the usual way (OIDC role in Actions, "
            "AWS_PROFILE, AWS_ACCESS_KEY_ID...)"
        )
    # AWS_RETRY_MODE / AWS_MAX_ATTEMPTS, when set, win over our defaults (botocore merges).
    retries: dict[str, Any] = {}
    if not os.environ.get("AWS_RETRY_MODE"):
        retries["mode"] = "adaptive"
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        retries["max_attempts"] = max_attempts
    config = BotoConfig(
        retries=retries,  # type: ignore[arg-type]
        max_pool_connections=max(32, workers),
        connect_timeout=10,
        read_timeout=30,
    )
    return session.client("sso-admin", config=config), session.client(
        "identitystore", config=config
    )


def _wants_sweep(options: Mapping[str, Any]) -> bool:
    """Whether observe() also lists the assignments of every identity store user.

    Against AWS, ListAccountsForProvisionedPermissionSet already finds every account where
    an owned permission set is assigned (assigning provisions it), so the sweep would cost
    one call per user for nothing. An endpoint override means an emulator (SPEC §5), and
    moto does not track provisioning: there the sweep is what finds an assignment in an
    account nobody mentions. ``sweep_users`` in options forces either way.
    """
    forced = options.get("sweep_users")
    if forced is not None:
        return bool(forced)
    return _endpoint_override()


def _endpoint_override() -> bool:
    """AWS_ENDPOINT_URL (or the sso-admin one) is set: an emulator, per SPEC §5."""
    return any(os.environ.get(v) for v in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSO_ADMIN"))


def build_provider(config: Config, options: Mapping[str, Any]) -> AwsProvider:
    """Options (all optional): ``sso_admin`` / ``identitystore`` clients (tests),
    ``tuning`` (a Tuning), ``concurrency`` (only when the caller was asked for it, e.g. a
    command-line flag: it wins over ``providers.aws.concurrency``), ``sweep_users``
    (default: only against an endpoint override, see _wants_sweep)."""
    settings = AwsSettings.from_config(config)
    tuning = options.get("tuning") or Tuning()
    tuning = replace(tuning, workers=_workers(options, settings, tuning.workers))
    sso, ids = options.get("sso_admin"), options.get("identitystore")
    if sso is None or ids is None:
        sso, ids = build_clients(settings, workers=tuning.workers)
    return AwsProvider(
        settings,
        owned_permission_sets(config),
        sso,
        ids,
        accounts=policy_accounts(config),
        sweep_users=_wants_sweep(options),
        tuning=tuning,
    )


def _workers(options: Mapping[str, Any], settings: AwsSettings, default: int) -> int:
    """The caller's ``concurrency`` when given, else the policies', else ``default``."""
    asked = options.get("concurrency")
    if asked is not None:
        return min(MAX_CONCURRENCY, max(1, int(asked)))
    return settings.concurrency or default


make_provider = build_provider


@register
class Aws(ProviderSpec):
    """AWS IAM Identity Center: account assignments of owned permission sets to users."""

    name = "aws"
    title = "AWS IAM Identity Center"
    scope_pattern = r"^[0-9]{12}$"
    scope_help = "a 12-digit account id"
    principal_pattern = r"^[A-Za-z0-9_+=,.@-]{1,128}$"
    principal_help = "an IAM Identity Center user name (letters, digits and _+=,.@-)"
    role_pattern = r"^[A-Za-z0-9_+=,.@-]{1,32}$"
    role_help = "a permission set name (at most 32 of letters, digits and _+=,.@-)"
    future_start = False  # an assignment holds from the moment it exists
    settings_required = True
    settings_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["instance_arn", "identity_store_id", "region"],
        "properties": {
            "instance_arn": {
                "type": "string",
                "pattern": "^arn:aws[a-z-]*:sso:::instance/[A-Za-z0-9-]{1,64}$",
                "x-message": "must be an IAM Identity Center instance ARN (arn:aws:sso:::instance/ssoins-...)",
            },
            "identity_store_id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9-]{1,64}$",
                "x-message": "must be an identity store id (d-...)",
            },
            "region": {
                "type": "string",
                "pattern": "^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$",
                "x-message": "must be an AWS region like us-east-1",
            },
            "concurrency": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_CONCURRENCY,
                "x-message": f"must be an integer from 1 to {MAX_CONCURRENCY}",
            },
            # `accessctl activity` (docs/activity.md): where CloudTrail is read, and how.
            "activity_regions": {
                "type": "array",
                "items": {"type": "string", "pattern": "^[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}$"},
                "uniqueItems": True,
                "x-message": "must be a list of AWS regions like eu-west-1",
            },
            "activity_role": {
                "type": "string",
                "pattern": "^arn:aws[a-z-]*:iam::(?:[0-9]{12}|\\{account\\}):role/[A-Za-z0-9_+=,.@/-]{1,512}$",
                "x-message": "must be a role ARN template like arn:aws:iam::{account}:role/accessctl-activity",
            },
            "activity_source": {
                "enum": ["lookup-events", "cloudtrail-lake"],
                "x-message": "must be lookup-events or cloudtrail-lake",
            },
            "activity_event_data_store": {
                "type": "string",
                "pattern": "^[A-Za-z0-9:/_.-]{1,256}$",
                "x-message": "must be a CloudTrail Lake event data store ARN or id",
            },
            "activity_allowance": {
                "type": "string",
                "pattern": "^[0-9]{1,4}[smh]$",
                "x-message": "must be a duration like 5m",
            },
            "activity_concurrency": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_CONCURRENCY,
                "x-message": f"must be an integer from 1 to {MAX_CONCURRENCY}",
            },
        },
    }

    def identity(self, grant: Grant, now: datetime) -> tuple[object, ...]:
        # One assignment per (account, permission set, user): matched by the identity
        # store user id, never by a case-folded user name (a case twin is another user).
        who = grant.principal_id or f"name:{grant.principal}"
        return ("aws", grant.scope, grant.role, who)

    def adapter(self, config: Config, options: Mapping[str, Any]) -> AwsProvider:
        return build_provider(config, options)
