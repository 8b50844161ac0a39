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

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from reconciler.core.models import Change, ChangeKind, ChangeResult, Config, Grant
from reconciler.core.providers import ProviderSpec, register
from reconciler.core.timeutil import parse_duration
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

    @property
    def backoff(self) -> Backoff:
        return Backoff(attempts=self.retry_attempts, base=self.retry_base, cap=self.retry_cap)


def owned_permission_sets(config: Config) -> frozenset[str]:
    """Permission set names that belong to accessctl: those named in any aws policy."""
    return frozenset(r for p in config.policies if p.provider == "aws" for r in p.roles)


def policy_accounts(config: Config) -> frozenset[str]:
    """Accounts that aws policies name exactly (globs cannot be listed)."""
    return frozenset(
        s for p in config.policies if p.provider == "aws" for s in p.scopes if ACCOUNT_ID.match(s)
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
        # Shared by every apply() call, whatever thread the planner runs it on.
        self._creations = threading.BoundedSemaphore(MAX_OUTSTANDING_CREATIONS)
        self._deletions = threading.BoundedSemaphore(MAX_OUTSTANDING_CREATIONS)

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
        accounts = {s for s in scopes if ACCOUNT_ID.match(s)}
        for scope in scopes:
            if not ACCOUNT_ID.match(scope):
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
        try:
            ps_arns = self.permission_sets()
        except CloudFailure as exc:
            return [ChangeResult(c, False, f"cannot list permission sets: {exc}") for c in changes]
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
        both = _granted_and_revoked(planned)

        def carry_out(item: tuple[Change, str, str]) -> tuple[ChangeResult, bool]:
            change, ps_arn, uid = item
            return self._carry_out(scope, change, ps_arn, uid, both.get((ps_arn, uid)))

        if planned:
            with ThreadPoolExecutor(max_workers=self.tuning.workers) as pool:
                done = list(pool.map(carry_out, planned))
            verified = self._verify(scope, planned, done)
            results.update(zip(positions, verified, strict=True))
        return [results[i] for i in range(len(changes))]

    def _target(
        self, scope: str, change: Change, ps_arns: Mapping[str, str]
    ) -> tuple[str, str] | ChangeResult:
        """(permission set ARN, user id) of a change, or why it cannot be carried out."""
        grant = change.grant
        if change.kind is ChangeKind.KEEP:
            return ChangeResult(change, True, "unchanged", verified=False)
        if not ACCOUNT_ID.match(scope) or grant.scope != scope:
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
        deadline = self._clock() + self.tuning.poll_timeout
        delay = self.tuning.poll_first
        while status.get("Status") not in ("SUCCEEDED", "FAILED"):
            if self._clock() + delay > deadline:
                message = (
                    f"still {status.get('Status', 'IN_PROGRESS')} after "
                    f"{self.tuning.poll_timeout:.0f}s; the next run re-checks it"
                )
                return ChangeResult(change, False, message, cloud_request_id=request_id), False
            self._sleep(delay)
            delay = min(delay * 2, self.tuning.poll_max)
            status = self._call(
                describe, InstanceArn=self.settings.instance_arn, **{id_key: request_id}
            )[out_key]
        if status["Status"] == "FAILED":
            reason = status.get("FailureReason") or "no reason given"
            message = f"AWS reported FAILED: {reason}"
            return ChangeResult(change, False, message, cloud_request_id=request_id), True
        return ChangeResult(change, True, "SUCCEEDED", cloud_request_id=request_id), True

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


def _replace(result: ChangeResult, **changes: Any) -> ChangeResult:
    return replace(result, **changes)


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
        },
    }

    def identity(self, grant: Grant, now: datetime) -> tuple[object, ...]:
        # One assignment per (account, permission set, user): matched by the identity
        # store user id, never by a case-folded user name (a case twin is another user).
        who = grant.principal_id or f"name:{grant.principal}"
        return ("aws", grant.scope, grant.role, who)

    def adapter(self, config: Config, options: Mapping[str, Any]) -> AwsProvider:
        return build_provider(config, options)
