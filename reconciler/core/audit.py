"""The audit join: request versions from git + ledger entries + pull requests -> audit entries.

Pure: the inputs are already read (``reconciler.history``, ``reconciler.ledger``, GitHub);
this module only decides, for each version of a request file that reached the branch,
who asked, who approved and when, the window, what the reconciler did, the state at
``at`` and every anomaly a reviewer of the trail should look at.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from reconciler.core import judgment
from reconciler.core.judgment import STATES, Approval, Removal, State, Version
from reconciler.core.models import Approvals, Window
from reconciler.core.timeutil import format_rfc3339

__all__ = ["STATES", "Removal", "State", "Version"]  # re-exported for the commands


@dataclass(frozen=True)
class PullInfo:
    """What GitHub says about the commit that brought a version to the branch."""

    number: int | None  # None: no merged pull request (direct push or bypass)
    merged_at: datetime | None = None
    approvals: Approvals | None = None
    error: str | None = None
    transient: bool = False  # the lookup itself failed (GitHub unreachable)


@dataclass(frozen=True)
class LedgerEntry:
    """One line of the ledger: a change ``apply`` carried out (or failed to)."""

    time: datetime
    action: str  # grant | revoke
    ok: bool
    provider: str
    scope: str
    role: str
    principal: str
    request: str | None = None
    begin: datetime | None = None
    end: datetime | None = None
    message: str = ""
    cloud_request_id: str | None = None
    verified: bool = False
    run: str = ""
    commit: str = ""
    id: str = ""

    def key(self) -> tuple[str, str, str, str]:
        return (self.provider, self.scope, self.role, self.principal.lower())


@dataclass(frozen=True)
class AuditEntry:
    """One row of ``accessctl audit`` (SPEC §4), plus context for the text timeline."""

    file: str
    commit: str
    requester: str | None
    provider: str | None
    scope: str | None
    role: str | None
    reason: str | None
    pr: int | None
    approvers: tuple[str, ...] | None
    approved_at: datetime | None
    begin: datetime | None
    end: datetime | None
    granted_at: datetime | None
    revoked_at: datetime | None
    state: State
    anomalies: tuple[str, ...] = ()
    author: str = ""
    committed_at: datetime | None = None
    subject: str = ""
    policy: str | None = None
    ticket: str | None = None
    principal: str | None = None
    removal: Removal | None = None
    events: tuple[tuple[datetime, str], ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "commit": self.commit,
            "requester": self.requester,
            "provider": self.provider,
            "scope": self.scope,
            "role": self.role,
            "reason": self.reason,
            "pr": self.pr,
            "approvers": list(self.approvers) if self.approvers is not None else None,
            "approved_at": _ts(self.approved_at),
            "begin": _ts(self.begin),
            "end": _ts(self.end),
            "granted_at": _ts(self.granted_at),
            "revoked_at": _ts(self.revoked_at),
            "state": self.state,
            "anomalies": list(self.anomalies),
        }


def _ts(value: datetime | None) -> str | None:
    return format_rfc3339(value) if value is not None else None


def short(sha: str) -> str:
    return sha[:12]


@dataclass(frozen=True)
class _Judged:
    """A version after the judgment, before the ledger is consulted."""

    version: Version
    approved_at: datetime | None
    window: Window | None
    allowed: bool
    policy: str | None
    principal: str | None
    approvers: tuple[str, ...] | None
    pr: int | None
    anomalies: tuple[str, ...]
    unverified: bool = False


DIRECT_PUSH = "direct push: reached the branch without a merged pull request"


def approval_of(version: Version, pull: PullInfo | None, *, trust_git: bool) -> Approval:
    """What GitHub (or git alone) says about how a version was approved."""
    if trust_git or pull is None:
        return Approval(version.committed_at)
    if pull.error and pull.transient:
        return Approval(None, pr=pull.number, unverified=pull.error)
    if pull.number is None and not pull.error:
        return Approval(None, refusal=DIRECT_PUSH, refusal_code="E-APPROVAL-DIRECT-PUSH")
    approved_at = pull.merged_at or version.committed_at
    approvals = pull.approvals or Approvals(frozenset())
    return Approval(approved_at, approvals, pull.number, refusal=pull.error)


def judge(
    version: Version,
    pull: PullInfo | None,
    *,
    trust_git: bool,
    at_tip: bool = False,
    at: datetime | None = None,
) -> _Judged:
    """The one judgment (reconciler.core.judgment) of a version, by the policies of its
    commit or (``at_tip``, for a version still on the branch) by the policies at the tip,
    as plan/apply judge it; its problems worded as audit anomalies."""
    approval = approval_of(version, pull, trust_git=trust_git)
    j = judgment.judge(version, approval, at or version.committed_at, at_tip=at_tip)
    tip = at_tip and version.tip_config is not None and version.tip_config is not version.config
    refused = "refused under current policies" if tip else "refused"
    anomalies: list[str] = []
    refusals = 0
    for p in j.problems:
        if p.kind == "file":
            anomalies.append(f"invalid: {version.path}:{p.line}: {p.code}: {p.message}")
        elif p.kind == "config":
            anomalies.append(
                "policies at the tip of the branch are invalid"
                if at_tip and version.tip_config is not None
                else "policies on the branch were invalid at this commit"
            )
        elif p.code == "E-APPROVAL-UNVERIFIED" or (p.kind == "approval" and pull and pull.error):
            anomalies.append(f"approval not verified: {p.message}")
        elif p.kind == "approval":
            anomalies.append(p.message)
        elif refusals < 3:
            refusals += 1
            anomalies.append(f"{refused}: {p.message}")
    return _Judged(
        version,
        j.approved_at,
        j.window,
        j.allowed,
        j.policy if j.allowed else (j.decision.policy if j.decision else None),
        j.principal,
        j.approvers,
        j.pr,
        tuple(anomalies),
        unverified=j.state == "unverified",
    )


def _tip_anomalies(
    judged: _Judged, pull: PullInfo | None, at: datetime, *, trust_git: bool
) -> list[str]:
    """For audit, which judges by each commit's policies: a version still on the branch whose
    verdict under the policies at the tip differs, while its window is still open (what
    plan/apply will do about it now). Free when the policies never changed since."""
    version, window = judged.version, judged.window
    if version.tip_config is None or version.tip_config is version.config:
        return []
    if window is None or window.end <= at or version.findings:
        return []
    now = judge(version, pull, trust_git=trust_git, at_tip=True, at=at)
    if now.allowed == judged.allowed:
        return []
    if now.allowed:
        return [f"allowed under current policies (policy {now.policy}): plan would grant it"]
    refusals = [a for a in now.anomalies if a.startswith("refused under current policies")]
    return refusals[:1] or ["refused under current policies"]


def state_at(judged: _Judged, at: datetime, revoked_by_ledger: datetime | None) -> State:
    """The state of a version at ``at`` (reconciler.core.judgment.state_at)."""
    if judged.unverified:
        return "unverified"
    facts = judgment.Judgment(
        judged.version.path,
        judged.version.request,
        "rejected",
        judged.allowed,
        window=judged.window,
        approved_at=judged.approved_at,
    )
    return judgment.state_at(facts, at, judged.version.removal, revoked_by_ledger)


def _removal_anomalies(judged: _Judged) -> list[str]:
    removal = judged.version.removal
    window = judged.window
    if removal is None or window is None or not judged.allowed or removal.at >= window.end:
        return []
    if removal.deleted:
        return [f"deleted early: revoked by {short(removal.commit)}"]
    return [f"edited: superseded by {short(removal.commit)}"]


class _LedgerIndex:
    """Ledger entries matched to versions: by request path and window end, else by key."""

    def __init__(self, entries: Sequence[LedgerEntry]) -> None:
        self.entries = sorted(entries, key=lambda e: e.time)
        self.by_request: dict[str, list[LedgerEntry]] = {}
        self.by_key: dict[tuple[str, str, str, str], list[LedgerEntry]] = {}
        for e in self.entries:
            if e.request:
                self.by_request.setdefault(e.request, []).append(e)
            self.by_key.setdefault(e.key(), []).append(e)

    def for_version(self, judged: _Judged, next_at: datetime | None) -> list[LedgerEntry]:
        """Entries about this version: its path's entries after approval whose end matches
        the window, or (end unknown, e.g. AWS) that fall before the next version took over;
        plus path-less revokes of the same (provider, scope, role, principal) afterwards."""
        v, window = judged.version, judged.window
        if window is None or judged.approved_at is None:
            return []
        out = []
        for e in self.by_request.get(v.path, []):
            if e.time < judged.approved_at:
                continue
            if e.end is not None:
                if e.end == window.end:
                    out.append(e)
            elif next_at is None or e.time < next_at or e.action == "revoke":
                out.append(e)
        out += self._pathless_revokes(judged, out)
        return sorted(set(out), key=lambda e: e.time)

    def _pathless_revokes(self, judged: _Judged, own: list[LedgerEntry]) -> list[LedgerEntry]:
        """Revokes that name no request (AWS holds none) of this version's cloud key, after
        its grant, up to and including the first that succeeded."""
        request = judged.version.request
        grants = [e.time for e in own if e.action == "grant" and e.ok]
        if request is None or not judged.principal or not grants:
            return []
        key = (request.provider, request.scope, request.role, judged.principal.lower())
        out = []
        for e in self.by_key.get(key, []):
            if e.request is None and e.action == "revoke" and e.time >= min(grants):
                out.append(e)
                if e.ok:
                    break
        return out

    def shared_grant_live(self, judged: _Judged) -> bool:
        """Whether an earlier grant of the same cloud key (an AWS assignment another request
        holds) was in place at this version's begin, so no grant of its own was needed."""
        request, window = judged.version.request, judged.window
        if request is None or window is None or not judged.principal:
            return False
        key = (request.provider, request.scope, request.role, judged.principal.lower())
        live = False
        for e in self.by_key.get(key, []):
            if e.time > window.begin:
                break
            if e.ok:
                live = e.action == "grant"
        return live


def _ledger_facts(
    judged: _Judged, entries: list[LedgerEntry], at: datetime
) -> tuple[datetime | None, datetime | None, list[str], list[tuple[datetime, str]]]:
    granted_at = revoked_at = None
    anomalies: list[str] = []
    events: list[tuple[datetime, str]] = []
    for e in entries:
        if e.time > at:
            continue
        what = f"{e.action} {'ok' if e.ok else 'FAILED'}"
        detail = f": {e.message}" if e.message and not e.ok else ""
        events.append((e.time, f"{what} ({e.principal}){detail}"))
        if e.action == "grant":
            if e.ok and granted_at is None:
                granted_at = e.time
            elif not e.ok:
                anomalies.append(f"grant failed: {e.message or 'no reason given'}")
        elif e.action == "revoke":
            if e.ok and revoked_at is None and granted_at is not None:
                revoked_at = e.time
            elif not e.ok:
                anomalies.append(f"revoke failed: {e.message or 'no reason given'}")
    if granted_at is not None and not judged.allowed:
        anomalies.append("granted although the request was not approved by policy")
    return granted_at, revoked_at, anomalies, events


def build_audit(
    versions: Sequence[Version],
    *,
    at: datetime,
    trust_git: bool = True,
    ledger: Sequence[LedgerEntry] | None = None,
    pulls: Mapping[tuple[str, str], PullInfo] | None = None,
    at_tip: bool = False,
) -> list[AuditEntry]:
    """One entry per version, in the order the versions reached the branch.

    ``ledger=None`` means no ledger exists: granted_at/revoked_at stay null and no
    ledger-based anomaly is raised. ``pulls`` maps (commit, path) -> PullInfo (GitHub mode).
    ``at_tip`` (status): versions still on the branch are judged by the policies at its
    tip, as plan/apply judge them; otherwise (audit) each by the policies of its commit,
    with an anomaly when the tip's verdict on a still-open version differs.
    """
    index = _LedgerIndex(ledger) if ledger is not None else None
    ledger_start = min((e.time for e in ledger), default=None) if ledger else None
    out = []
    for version in versions:
        pull = pulls.get((version.commit, version.path)) if pulls is not None else None
        git_only = trust_git or pulls is None
        judged = judge(version, pull, trust_git=git_only, at_tip=at_tip, at=at)
        anomalies = list(judged.anomalies) + _removal_anomalies(judged)
        if not at_tip:
            anomalies += _tip_anomalies(judged, pull, at, trust_git=git_only)
        granted_at = revoked_at = None
        events: list[tuple[datetime, str]] = []
        if index is not None:
            next_at = version.removal.at if version.removal else None
            matched = index.for_version(judged, next_at)
            granted_at, revoked_at, more, events = _ledger_facts(judged, matched, at)
            anomalies += more
            anomalies += _missing_grant(judged, granted_at, ledger_start, at, index)
        # A revoke recorded before the window ended (policy tightened, identity removed)
        # ends the access even though the file is still on the branch.
        state = state_at(judged, at, revoked_at)
        out.append(
            _entry(
                judged,
                state,
                anomalies=anomalies,
                granted_at=granted_at,
                revoked_at=revoked_at,
                events=events,
            )
        )
    return out


def _missing_grant(
    judged: _Judged,
    granted_at: datetime | None,
    ledger_start: datetime | None,
    at: datetime,
    index: _LedgerIndex,
) -> list[str]:
    """An allowed window that began while the ledger was kept, yet no grant was recorded."""
    window = judged.window
    if not judged.allowed or window is None or granted_at is not None or ledger_start is None:
        return []
    live_until = window.end
    removal = judged.version.removal
    if removal is not None:
        live_until = min(live_until, removal.at)
    if window.begin >= min(live_until, at) or live_until <= ledger_start:
        return []
    if index.shared_grant_live(judged):
        return []
    return ["no ledger entry: the reconciler never recorded granting this request"]


def _entry(
    judged: _Judged,
    state: State,
    *,
    anomalies: list[str],
    granted_at: datetime | None,
    revoked_at: datetime | None,
    events: list[tuple[datetime, str]],
) -> AuditEntry:
    v, request, window = judged.version, judged.version.request, judged.window
    raw = v.fields
    return AuditEntry(
        file=v.path,
        commit=v.commit,
        requester=request.requester
        if request
        else raw.get("requester") or _login_from_path(v.path),
        provider=request.provider if request else raw.get("provider"),
        scope=request.scope if request else raw.get("scope"),
        role=request.role if request else raw.get("role"),
        reason=request.reason if request else raw.get("reason"),
        pr=judged.pr,
        approvers=judged.approvers,
        approved_at=judged.approved_at,
        begin=window.begin if window else None,
        end=window.end if window else None,
        granted_at=granted_at,
        revoked_at=revoked_at,
        state=state,
        anomalies=tuple(dict.fromkeys(anomalies)),
        author=v.author,
        committed_at=v.committed_at,
        subject=v.subject,
        policy=judged.policy,
        ticket=request.ticket if request else raw.get("ticket"),
        principal=judged.principal,
        removal=v.removal,
        events=tuple(events),
    )


def _login_from_path(path: str) -> str | None:
    parts = path.split("/")
    return parts[1] if len(parts) == 3 else None


@dataclass(frozen=True)
class AuditFilter:
    requester: str | None = None
    scope: str | None = None  # exact or fnmatch glob
    since: datetime | None = None
    until: datetime | None = None

    def admits(self, entry: AuditEntry) -> bool:
        if self.requester and (entry.requester or "").lower() != self.requester.lower():
            return False
        if self.scope and not (
            entry.scope == self.scope or fnmatch.fnmatchcase(entry.scope or "", self.scope)
        ):
            return False
        start, stop = _lifetime(entry)
        if self.since is not None and stop < self.since:
            return False
        return not (self.until is not None and start >= self.until)


def _lifetime(entry: AuditEntry) -> tuple[datetime, datetime]:
    """From the commit to the last thing that happened to the version."""
    assert entry.committed_at is not None
    start = entry.committed_at
    candidates = [start]
    for t in (entry.end, entry.revoked_at, entry.granted_at):
        if t is not None:
            candidates.append(t)
    if entry.removal is not None:
        candidates.append(entry.removal.at)
    return start, max(candidates)
