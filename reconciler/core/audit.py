"""The audit join: request versions from git + ledger entries + pull requests -> audit entries.

Pure: the inputs are already read (``reconciler.history``, ``reconciler.ledger``, GitHub);
this module only decides, for each version of a request file that reached the branch,
who asked, who approved and when, the window, what the reconciler did and how late, the
state at ``at``, every anomaly (a stable code a reviewer of the trail must look at) and
every ordinary lifecycle event (an early deletion, an edit).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from reconciler.core import judgment, providers
from reconciler.core.judgment import (
    STATES,
    Approval,
    FollowUp,
    Problem,
    Removal,
    State,
    Version,
)
from reconciler.core.models import DEFAULT_LATE_TOLERANCE, Approvals, Window
from reconciler.core.policy import compute_window
from reconciler.core.prcheck import may_revoke
from reconciler.core.reviews import Review
from reconciler.core.timeutil import format_duration, format_rfc3339

__all__ = ["STATES", "Removal", "State", "Version"]  # re-exported for the commands

AnomalyCode = Literal[
    "invalid",
    "policies-invalid",
    "refused",
    "direct-push",
    "policy-changed",
    "granted-unapproved",
    "unverified",
    "grant-failed",
    "revoke-failed",
    "no-ledger-entry",
    "late-grant",
    "late-revoke",
    "revoked-by-other",
    "ledger-forged",
    "used-after-end",  # audit --activity: calls after the grant's end (reconciler.core.activity)
    "denied-attempts",  # audit --activity: denied calls during the window
    "break-glass-unreviewed",  # granted without approval; its follow-up review not yet given
    "break-glass-review-overdue",  # ... and not given within review_within of the merge
]
ANOMALY_CODES: tuple[AnomalyCode, ...] = get_args(AnomalyCode)
EventCode = Literal["deleted-early", "superseded"]
EVENT_CODES: tuple[EventCode, ...] = get_args(EventCode)


@dataclass(frozen=True)
class Anomaly:
    """Something in the trail a reviewer must look at: a stable code and a sentence."""

    code: AnomalyCode
    message: str

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Event:
    """An ordinary fact of a version's life (deleted early, superseded): never an anomaly."""

    code: EventCode
    commit: str
    message: str

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "commit": self.commit, "message": self.message}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class PullInfo:
    """What GitHub says about the commit that brought a version to the branch."""

    number: int | None  # None: no merged pull request (direct push or bypass)
    merged_at: datetime | None = None
    approvals: Approvals | None = None
    error: str | None = None
    transient: bool = False  # the lookup itself failed (GitHub unreachable)
    # A break-glass version's: the pull request's reviews as GitHub lists them now (never
    # the approvals recorded at grant time), for the follow-up review; or why not read.
    reviews: tuple[Review, ...] | None = None
    reviews_error: str | None = None


@dataclass(frozen=True)
class RemovedBy:
    """Who deleted a request file: a pull request's author, or a direct push's commit
    author; ``unknown`` when GitHub could not be asked."""

    login: str | None
    pr: int | None = None
    unknown: bool = False


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
    # A revoke: sessions issued before this time are denied (AWS), once that took effect.
    sessions_ended_at: datetime | None = None

    def key(self) -> tuple[str, str, str, str]:
        return (self.provider, self.scope, self.role, self.principal.lower())


@dataclass(frozen=True)
class AuditEntry:
    """One row of ``accessctl audit``, plus context for the text timeline."""

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
    anomalies: tuple[Anomaly, ...] = ()
    events: tuple[Event, ...] = ()
    removed_at: datetime | None = None  # a grant that ended in the cloud: its clean-up
    grant_lateness: int | None = None  # seconds: granted_at - begin
    revoke_lateness: int | None = None  # seconds: revoked_at - when access had to end
    author: str = ""
    committed_at: datetime | None = None
    subject: str = ""
    policy: str | None = None
    ticket: str | None = None
    principal: str | None = None
    removal: Removal | None = None
    timeline: tuple[tuple[datetime, str], ...] = field(default=(), compare=False)
    # What ``settle`` needs to judge the revoke again across every version of the branch.
    due: datetime | None = field(default=None, compare=False)  # when access had to end
    cloud_ends: bool = field(default=False, compare=False)  # the cloud ended it at `end`
    cloud_key: Hashable | None = field(default=None, compare=False)
    # AWS: sessions issued before this time were denied by the revoke (the ledger's line).
    sessions_ended_at: datetime | None = None
    break_glass: bool = False
    follow_up: FollowUp | None = field(default=None, compare=False)

    @property
    def reviewed_after_by(self) -> str | None:
        """Who gave a break-glass version its follow-up review (never an approval)."""
        return self.follow_up.by if self.follow_up is not None else None

    @property
    def reviewed_after_at(self) -> datetime | None:
        return self.follow_up.at if self.follow_up is not None else None

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
            "sessions_ended_at": _ts(self.sessions_ended_at),
            "removed_at": _ts(self.removed_at),
            "grant_lateness": self.grant_lateness,
            "revoke_lateness": self.revoke_lateness,
            "state": self.state,
            "break_glass": self.break_glass,
            "reviewed_after_by": self.reviewed_after_by,
            "reviewed_after_at": _ts(self.reviewed_after_at),
            "anomalies": [a.to_json() for a in self.anomalies],
            "events": [e.to_json() for e in self.events],
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
    anomalies: tuple[Anomaly, ...]
    unverified: bool = False
    suspended: bool = False  # the requester is under an emergency stop (an intended refusal)
    follow_up: FollowUp | None = None  # a break-glass version's review after the merge

    @property
    def ledger_window(self) -> Window | None:
        """The window ledger lines are matched by: the judged one or, for a version that
        was never approved (a direct push) or cannot be verified, the one git dates."""
        request = self.version.request
        if self.window is not None or request is None:
            return self.window
        return compute_window(request, self.version.committed_at)

    @property
    def ledger_from(self) -> datetime:
        return self.approved_at or self.version.committed_at


DIRECT_PUSH = "reached the branch without a merged pull request"
UNVERIFIED = (
    "the approval could not be checked: GitHub did not answer (the cause is reported once "
    "for the run); neither approved nor refused"
)


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
    return Approval(
        approved_at,
        approvals,
        pull.number,
        refusal=pull.error,
        reviews=pull.reviews,
        reviews_unverified=pull.reviews_error,
    )


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
    anomalies: list[Anomaly] = []
    refusals = 0
    for p in j.problems:
        if p.kind == "suspended":
            continue  # an emergency stop is the admins' decision, not an anomaly
        if p.kind == "policy" and refusals >= 3:
            continue
        refusals += p.kind == "policy"
        anomalies.append(_problem_anomaly(p, version, tip=tip, at_tip=at_tip))
    anomalies += follow_up_anomalies(j.follow_up, j.pr)
    principal = j.principal
    if principal is None and version.request is not None:
        config = version.tip_config if at_tip and version.tip_config else version.config
        principal = config.principal(version.request.requester, version.request.provider)
    return _Judged(
        version,
        j.approved_at,
        j.window,
        j.allowed,
        j.policy if j.allowed else (j.decision.policy if j.decision else None),
        principal,
        j.approvers,
        j.pr,
        tuple(anomalies),
        unverified=j.state == "unverified",
        suspended=j.state == "suspended",
        follow_up=j.follow_up,
    )


def follow_up_anomalies(f: FollowUp | None, pr: int | None) -> list[Anomaly]:
    """A break-glass version's follow-up review: still owed, overdue, given late, or not
    checkable right now (GitHub down: unknown, not an accusation)."""
    if f is None or f.status == "unchecked":
        return []
    if f.status == "unverified":
        return [
            Anomaly(
                "unverified",
                "the follow-up review of this break-glass request could not be checked: "
                "GitHub did not answer (the cause is reported once for the run)",
            )
        ]
    due = format_rfc3339(f.due)
    who = ", ".join(f.eligible) or "nobody"
    asked = f"an eligible approver of policy {f.policy} ({who}) must approve pull request"
    asked += f" #{pr}" if pr is not None else ""
    if f.status == "unreviewed":
        return [
            Anomaly(
                "break-glass-unreviewed",
                f"granted without approval (break-glass): {asked} by {due}",
            )
        ]
    if f.status == "overdue":
        return [
            Anomaly(
                "break-glass-review-overdue",
                f"granted without approval (break-glass) and not reviewed within "
                f"{format_duration(f.within)} of the merge: {asked} (it was due {due})",
            )
        ]
    if f.late and f.at is not None:
        return [
            Anomaly(
                "break-glass-review-overdue",
                f"the follow-up review of this break-glass request came "
                f"{format_duration(f.at - f.due)} after it was due at {due} ({f.by} at "
                f"{format_rfc3339(f.at)})",
            )
        ]
    return []


def _problem_anomaly(p: Problem, version: Version, *, tip: bool, at_tip: bool) -> Anomaly:
    if p.kind == "file":
        return Anomaly("invalid", f"{version.path}:{p.line}: {p.code}: {p.message}")
    if p.kind == "config":
        where = at_tip and version.tip_config is not None
        return Anomaly(
            "policies-invalid",
            "the policies at the tip of the branch are invalid"
            if where
            else "the policies on the branch were invalid at this commit",
        )
    if p.code == "E-APPROVAL-UNVERIFIED":
        return Anomaly("unverified", UNVERIFIED)  # the cause is said once, not per entry
    if p.code == "E-APPROVAL-DIRECT-PUSH":
        return Anomaly("direct-push", DIRECT_PUSH)
    if p.kind == "approval":
        return Anomaly("refused", p.message)
    return Anomaly("refused", f"under the current policies: {p.message}" if tip else p.message)


def _tip_anomalies(
    judged: _Judged, pull: PullInfo | None, at: datetime, *, trust_git: bool
) -> list[Anomaly]:
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
        why = f"allowed under the current policies (policy {now.policy}): plan would grant it"
        return [Anomaly("policy-changed", why)]
    refusals = [a.message for a in now.anomalies if a.code == "refused"]
    return [Anomaly("policy-changed", f"refused {refusals[0]}" if refusals else "refused now")]


def state_at(judged: _Judged, at: datetime, revoked_by_ledger: datetime | None) -> State:
    """The state of a version at ``at`` (reconciler.core.judgment.state_at)."""
    if judged.unverified:
        return "unverified"
    if judged.suspended:
        return "suspended"
    facts = judgment.Judgment(
        judged.version.path,
        judged.version.request,
        "rejected",
        judged.allowed,
        window=judged.window,
        approved_at=judged.approved_at,
    )
    return judgment.state_at(facts, at, judged.version.removal, revoked_by_ledger)


def _removal_events(judged: _Judged, at: datetime) -> list[Event]:
    """An early deletion or an edit while the window was open: the life of a request."""
    removal, window = judged.version.removal, judged.window
    if removal is None or window is None or removal.at >= window.end or removal.at > at:
        return []
    if not (judged.allowed or judged.unverified):
        return []
    when = format_rfc3339(removal.at)
    if removal.deleted:
        return [Event("deleted-early", removal.commit, f"deleted at {when}: access revoked early")]
    return [Event("superseded", removal.commit, f"replaced by a new version at {when}")]


def _removed_by_other(
    judged: _Judged, at: datetime, removers: Mapping[tuple[str, str], RemovedBy] | None
) -> list[Anomaly]:
    """A deletion before the end by someone who may not revoke the request (neither its
    requester nor an eligible approver of a policy that allows it): the gate refuses it, so
    one on the branch went past it."""
    v, window = judged.version, judged.window
    removal = v.removal
    if removal is None or not removal.deleted or removal.at > at or v.request is None:
        return []
    if not judged.allowed or window is None or removal.at >= window.end:
        return []
    if removers is None:  # git alone: the commit's author, as git records it
        who: RemovedBy | None = RemovedBy(removal.author.rsplit(" <", 1)[0].strip() or None)
    else:
        who = removers.get((removal.commit, v.path))
    if who is None or (who.login is None and not who.unknown):
        return []
    if who.unknown or who.login is None:
        return [Anomaly("unverified", "who deleted the file could not be checked on GitHub")]
    if may_revoke(who.login, v.request, v.path, v.config):
        return []
    via = f"pull request #{who.pr}" if who.pr else "a direct push"
    return [
        Anomaly(
            "revoked-by-other",
            f"deleted by {who.login} through {via} in {short(removal.commit)}, who is neither "
            f"the requester {v.request.requester} nor an eligible approver of a policy that "
            "allows it",
        )
    ]


def _second(t: datetime) -> datetime:
    return t.replace(microsecond=0)


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
        the window (as judged, or as git dates it), or (end unknown) that fall before the
        next version took over; plus path-less revokes of the same cloud key afterwards."""
        v, window = judged.version, judged.ledger_window
        if window is None:
            return []
        ends = {_second(window.end)}
        if v.request is not None:
            ends.add(_second(compute_window(v.request, v.committed_at).end))
        since = min(judged.ledger_from, v.committed_at)
        out = []
        for e in self.by_request.get(v.path, []):
            if e.time < since:
                continue
            if e.end is not None:
                if _second(e.end) in ends:
                    out.append(e)
            elif next_at is None or e.time < next_at or e.action == "revoke":
                out.append(e)
        out += self._pathless_revokes(judged, out)
        return sorted(set(out), key=lambda e: e.time)

    def _pathless_revokes(self, judged: _Judged, own: list[LedgerEntry]) -> list[LedgerEntry]:
        """Revokes that name no request (AWS holds none) of this version's cloud key, after
        its grant, up to and including the first that succeeded."""
        grants = [e.time for e in own if e.action == "grant" and e.ok]
        key = _key(judged)
        if key is None or not grants:
            return []
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
        key, window = _key(judged), judged.window
        if key is None or window is None:
            return False
        live = False
        for e in self.by_key.get(key, []):
            if e.time > window.begin:
                break
            if e.ok:
                live = e.action == "grant"
        return live


def _key(judged: _Judged) -> tuple[str, str, str, str] | None:
    request = judged.version.request
    if request is None or not judged.principal:
        return None
    return (request.provider, request.scope, request.role, judged.principal.lower())


@dataclass
class _Facts:
    """What the ledger says about one version."""

    granted_at: datetime | None = None
    revoked_at: datetime | None = None
    sessions_ended_at: datetime | None = None
    grant_line: LedgerEntry | None = None
    anomalies: list[Anomaly] = field(default_factory=list)
    timeline: list[tuple[datetime, str]] = field(default_factory=list)


def _ledger_facts(judged: _Judged, entries: list[LedgerEntry], at: datetime) -> _Facts:
    facts = _Facts()
    for e in entries:
        if e.time > at:
            continue
        what = f"{e.action} {'ok' if e.ok else 'FAILED'}"
        detail = f": {e.message}" if e.message and not e.ok else ""
        if e.sessions_ended_at is not None:
            detail += f"; sessions issued before {format_rfc3339(e.sessions_ended_at)} denied"
        facts.timeline.append((e.time, f"{what} ({e.principal}){detail}"))
        when = format_rfc3339(e.time)
        if e.action == "grant":
            if e.ok and facts.granted_at is None:
                facts.granted_at, facts.grant_line = e.time, e
            elif not e.ok:
                why = e.message or "no reason given"
                facts.anomalies.append(Anomaly("grant-failed", f"at {when}: {why}"))
        elif e.action == "revoke":
            if e.ok and facts.revoked_at is None and facts.granted_at is not None:
                facts.revoked_at, facts.sessions_ended_at = e.time, e.sessions_ended_at
            elif not e.ok:
                why = e.message or "no reason given"
                facts.anomalies.append(Anomaly("revoke-failed", f"at {when}: {why}"))
    # An approval that could not be checked is unknown, not refused: no accusation.
    if facts.granted_at is not None and not judged.allowed and not judged.unverified:
        why = next((a.code for a in judged.anomalies), "refused")
        facts.anomalies.append(
            Anomaly(
                "granted-unapproved",
                f"the ledger shows a grant at {format_rfc3339(facts.granted_at)} of a version "
                f"the judgment refuses ({why})",
            )
        )
    return facts


def _forged_anomalies(
    judged: _Judged, forged: _LedgerIndex | None, next_at: datetime | None, at: datetime
) -> tuple[list[Anomaly], list[tuple[datetime, str]]]:
    """Ledger lines the reconciler did not write that claim something about this version:
    never believed, each shown."""
    if forged is None:
        return [], []
    anomalies, timeline = [], []
    for e in forged.for_version(judged, next_at):
        if e.time > at:
            continue
        claim = f"{e.action} {'ok' if e.ok else 'failed'} at {format_rfc3339(e.time)}"
        anomalies.append(
            Anomaly("ledger-forged", f"a ledger line the reconciler did not write claims {claim}")
        )
        timeline.append((e.time, f"NOT BELIEVED (not written by the reconciler): {claim}"))
    return anomalies, timeline


def build_audit(
    versions: Sequence[Version],
    *,
    at: datetime,
    trust_git: bool = True,
    ledger: Sequence[LedgerEntry] | None = None,
    pulls: Mapping[tuple[str, str], PullInfo] | None = None,
    at_tip: bool = False,
    forged: Sequence[LedgerEntry] = (),
    removers: Mapping[tuple[str, str], RemovedBy] | None = None,
    tolerance: timedelta = DEFAULT_LATE_TOLERANCE,
) -> list[AuditEntry]:
    """One entry per version, in the order the versions reached the branch.

    ``ledger=None`` means no ledger exists: granted_at/revoked_at stay null and no
    ledger-based anomaly is raised; ``ledger`` holds only the lines believed (written by
    the reconciler), ``forged`` the others. ``pulls`` maps (commit, path) -> PullInfo
    (GitHub mode); ``removers`` (removal commit, path) -> who deleted the file (None: git's
    commit author). ``at_tip`` (status): versions still on the branch are judged by the
    policies at its tip, as plan/apply judge them; otherwise (audit) each by the policies
    of its commit, with an anomaly when the tip's verdict on a still-open version differs.
    ``tolerance``: how late a grant or revoke may be recorded (settings.late_tolerance).
    """
    index = _LedgerIndex(ledger) if ledger is not None else None
    forged_index = _LedgerIndex(forged) if forged else None
    ledger_start = min((e.time for e in ledger), default=None) if ledger else None
    out = []
    for version in versions:
        pull = pulls.get((version.commit, version.path)) if pulls is not None else None
        git_only = trust_git or pulls is None
        judged = judge(version, pull, trust_git=git_only, at_tip=at_tip, at=at)
        anomalies = list(judged.anomalies)
        if not at_tip:
            anomalies += _tip_anomalies(judged, pull, at, trust_git=git_only)
        anomalies += _removed_by_other(judged, at, removers if not git_only else None)
        next_at = version.removal.at if version.removal else None
        facts = _Facts()
        if index is not None:
            facts = _ledger_facts(judged, index.for_version(judged, next_at), at)
            anomalies += facts.anomalies
            anomalies += _missing_grant(judged, facts.granted_at, ledger_start, at, index)
        more, seen = _forged_anomalies(judged, forged_index, next_at, at)
        anomalies += more
        # A revoke recorded before the window ended (policy tightened, identity removed)
        # ends the access even though the file is still on the branch.
        state = state_at(judged, at, facts.revoked_at)
        entry = _entry(
            judged,
            state,
            anomalies=anomalies,
            facts=facts,
            timeline=[*facts.timeline, *seen],
            at=at,
        )
        out.append(_timing(entry, judged, facts, tolerance) if index is not None else entry)
    return settle(out, at=at, tolerance=tolerance)


def _missing_grant(
    judged: _Judged,
    granted_at: datetime | None,
    ledger_start: datetime | None,
    at: datetime,
    index: _LedgerIndex,
) -> list[Anomaly]:
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
    return [
        Anomaly(
            "no-ledger-entry",
            "an approved window was open while the ledger was kept, yet the reconciler never "
            "recorded granting it",
        )
    ]


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())


def _timing(entry: AuditEntry, judged: _Judged, facts: _Facts, tolerance: timedelta) -> AuditEntry:
    """How late the grant was recorded, and what ``settle`` needs for the revoke: when
    access had to end, whether the cloud ended it by itself (a GCP condition that carries
    the window's end), and what the grant is in the cloud. Only with a ledger: without
    one nothing was recorded to be late."""
    window, request = judged.window, judged.version.request
    if not judged.allowed or window is None or request is None:
        return entry
    removal = judged.version.removal
    due = removal.at if removal is not None and removal.at < window.end else window.end
    key = _cloud_key(request.provider, judged, window)
    if facts.granted_at is None:
        return replace(entry, due=due, cloud_key=key)
    enforces = providers.known(request.provider) and providers.spec(request.provider).future_start
    lateness = _seconds(facts.granted_at - window.begin)
    if enforces:
        lateness = max(0, lateness)  # written ahead, in force from begin: the cloud waits
    line = facts.grant_line
    cloud_ends = bool(
        enforces
        and due == window.end
        and line is not None
        and line.end is not None
        and _second(line.end) == _second(window.end)
    )
    anomalies = entry.anomalies
    if lateness > tolerance.total_seconds():
        late = Anomaly(
            "late-grant",
            f"granted {format_duration(timedelta(seconds=lateness))} after its window began "
            f"(tolerance {format_duration(tolerance)})",
        )
        anomalies = (*anomalies, late)
    return replace(
        entry,
        anomalies=anomalies,
        grant_lateness=lateness,
        due=due,
        cloud_ends=cloud_ends,
        cloud_key=key,
        removed_at=facts.revoked_at if cloud_ends else None,
    )


def _cloud_key(provider: str, judged: _Judged, window: Window) -> Hashable | None:
    """What the grant is in the cloud: two versions with the same key share one grant (an
    AWS assignment), so the one that ends first is not revoked while the other holds it."""
    request, principal = judged.version.request, judged.principal
    if request is None or principal is None or not providers.known(provider):
        return None
    grant = judgment.grant_for(request, principal, window, None)
    return providers.identity(grant, window.end)


def settle(
    entries: Sequence[AuditEntry], *, at: datetime, tolerance: timedelta
) -> list[AuditEntry]:
    """The revoke of every granted entry, judged across ``entries`` (a whole branch, or a
    chunk of it; settling again over more entries refines it): its lateness, and a
    late-revoke when it was recorded (or still is not) more than ``tolerance`` after access
    had to end. A grant the cloud ended by itself is never late. A grant another version
    still holds in the cloud (the same AWS assignment) had to end only when that one did."""
    holders: dict[Hashable, list[AuditEntry]] = {}
    for e in entries:
        if e.cloud_key is not None and e.due is not None and e.begin is not None:
            holders.setdefault(e.cloud_key, []).append(e)
    return [_settled(e, holders, at, tolerance) for e in entries]


def _settled(
    e: AuditEntry, holders: Mapping[Hashable, list[AuditEntry]], at: datetime, tolerance: timedelta
) -> AuditEntry:
    if e.due is None or e.granted_at is None:
        return e
    kept = tuple(a for a in e.anomalies if a.code != "late-revoke")
    if e.cloud_ends:
        return replace(e, anomalies=kept, revoke_lateness=0 if at >= e.due else None)
    due = _held_until(e, holders.get(e.cloud_key, ()) if e.cloud_key is not None else ())
    lateness = _seconds(e.revoked_at - due) if e.revoked_at is not None else None
    late = None
    if lateness is not None and lateness > tolerance.total_seconds():
        late = (
            f"revoked {format_duration(timedelta(seconds=lateness))} after access had to end "
            f"at {format_rfc3339(due)} (tolerance {format_duration(tolerance)})"
        )
    elif e.revoked_at is None and at > due + tolerance:
        late = (
            f"no revoke recorded {format_duration(at - due)} after access had to end at "
            f"{format_rfc3339(due)} (tolerance {format_duration(tolerance)})"
        )
    if late is not None:
        kept = (*kept, Anomaly("late-revoke", late))
    return replace(e, anomalies=kept, revoke_lateness=lateness)


def _held_until(e: AuditEntry, sharing: Iterable[AuditEntry]) -> datetime:
    """When the grant of ``e`` had to end: its own due time, pushed back while another
    allowed version of the same cloud key was holding it at that moment."""
    assert e.due is not None
    due, others = e.due, [o for o in sharing if o is not e]
    moved = True
    while moved:
        moved = False
        for o in others:
            assert o.begin is not None and o.due is not None
            if o.begin <= due < o.due:
                due, moved = o.due, True
    return due


def _entry(
    judged: _Judged,
    state: State,
    *,
    anomalies: list[Anomaly],
    facts: _Facts,
    timeline: list[tuple[datetime, str]],
    at: datetime,
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
        granted_at=facts.granted_at,
        revoked_at=facts.revoked_at,
        sessions_ended_at=facts.sessions_ended_at,
        state=state,
        anomalies=tuple(dict.fromkeys(anomalies)),
        events=tuple(_removal_events(judged, at)),
        author=v.author,
        committed_at=v.committed_at,
        subject=v.subject,
        policy=judged.policy,
        ticket=request.ticket if request else raw.get("ticket"),
        principal=judged.principal,
        removal=v.removal,
        timeline=tuple(sorted(timeline, key=lambda t: t[0])),
        break_glass=bool(request and request.break_glass),
        follow_up=judged.follow_up,
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
    for t in (entry.end, entry.revoked_at, entry.granted_at, entry.removed_at):
        if t is not None:
            candidates.append(t)
    if entry.removal is not None:
        candidates.append(entry.removal.at)
    return start, max(candidates)
