"""The one judgment: a request version, how it was approved, the policies, now -> its state.

plan/apply (which grants should exist), status, audit and pr-check all call ``judge``;
nothing else decides whether a request is allowed, in which window, or what state it is
in. Pure: the version is already parsed (``reconciler.history``), the approval already
looked up (``reconciler.approvals``).

```python
j = judge(version, Approval(approved_at=merged_at, approvals=reviews), now)
j.state        # "active"
j.grant()      # the Grant it should hold, or None
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, get_args

from reconciler.core import providers
from reconciler.core.models import AccessRequest, Approvals, Config, Decision, Grant, Reason, Window
from reconciler.core.policy import compute_window, evaluate
from reconciler.core.reviews import Review, follow_up
from reconciler.errors import Finding

State = Literal[
    "pending",
    "scheduled",
    "active",
    "expired",
    "revoked",
    "rejected",
    "unverified",
    "suspended",
    "break-glass-unreviewed",
    "break-glass-review-overdue",
]
STATES: tuple[State, ...] = get_args(State)


@dataclass(frozen=True)
class Removal:
    """What ended a version on the branch: a later edit of the file, or its deletion."""

    commit: str
    at: datetime  # committer time of the first-parent commit
    deleted: bool
    author: str = ""  # who made that commit ("Name <email>"; a merge: the branch's author)


@dataclass(frozen=True)
class Version:
    """One content of one request file, as it landed on the branch."""

    path: str
    commit: str
    author: str
    committed_at: datetime
    blob: str
    request: AccessRequest | None  # None when the file does not parse
    config: Config  # the policies as of ``commit``
    findings: tuple[Finding, ...] = ()  # error findings of the file
    subject: str = ""
    merge: bool = False
    config_broken: bool = False
    removal: Removal | None = None
    # what an invalid file says it asks for (best effort, shown but never trusted)
    fields: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)
    # The policies at the tip of the branch, for versions still on it (removal is None):
    # what plan/apply judge them by today. None for superseded or deleted versions.
    tip_config: Config | None = field(default=None, compare=False, hash=False)
    tip_config_broken: bool = field(default=False, compare=False, hash=False)

    def ended_by(self, removal: Removal) -> Version:
        return replace(self, removal=removal)


@dataclass(frozen=True)
class Approval:
    """How a version's content reached the branch, and who approved it.

    ``approvals=None``: reviews are not checked (``--trust-git``). ``refusal``: the content
    is known not to be approved (a direct push, content that differs from the reviewed
    head, a pull request opened by someone else). ``unverified``: the approval could not
    be checked right now (GitHub unreachable): unknown, not refused.
    """

    approved_at: datetime | None
    approvals: Approvals | None = None
    pr: int | None = None
    refusal: str | None = None
    refusal_code: str = "E-APPROVAL"
    unverified: str | None = None
    # A break-glass version's pull request reviews as GitHub lists them now (read afresh,
    # never from the approvals recorded at grant time), for its follow-up review. None:
    # not read (pr-check, apply, --trust-git); ``reviews_unverified``: GitHub failed.
    reviews: tuple[Review, ...] | None = None
    reviews_unverified: str | None = None


@dataclass(frozen=True)
class Problem:
    """Why a version is not (or not yet) allowed, for a person: code, message, request key."""

    code: str
    message: str
    key: str | None = None
    policy: str | None = None
    kind: Literal["file", "config", "approval", "policy", "suspended"] = "policy"
    line: int | None = None  # for a problem of the file itself


FollowUpStatus = Literal["reviewed", "unreviewed", "overdue", "unchecked", "unverified"]


@dataclass(frozen=True)
class FollowUp:
    """The review a break-glass version owes after its merge: an eligible approver of the
    policy that allowed it (not the requester, not the PR author) approves the merged pull
    request by ``due``. ``unchecked``: the reviews were not read (git alone, or a command
    that does not need them); ``unverified``: GitHub could not be asked."""

    status: FollowUpStatus
    due: datetime
    within: timedelta
    policy: str
    eligible: tuple[str, ...]  # lowercased logins who may do it
    by: str | None = None  # who did it (status reviewed)
    at: datetime | None = None
    reason: str = ""  # unverified: why

    @property
    def late(self) -> bool:
        """Reviewed, but after it was due."""
        return self.at is not None and self.at > self.due

    @property
    def owed(self) -> bool:
        """Known not to be done yet."""
        return self.status in ("unreviewed", "overdue")


@dataclass(frozen=True)
class Judgment:
    """The verdict on one version at one time."""

    path: str
    request: AccessRequest | None
    state: State
    allowed: bool
    decision: Decision | None = None
    window: Window | None = None
    approved_at: datetime | None = None
    policy: str | None = None
    principal: str | None = None
    approvers: tuple[str, ...] | None = None
    pr: int | None = None
    problems: tuple[Problem, ...] = ()
    # Only approvals are missing: the request may merge once they are given (pr-check).
    waiting: bool = False
    # While the approval is unverifiable: the window as git dates it, when a policy
    # allows that window; an existing grant may stay in place until its end, never beyond.
    held: Window | None = None
    # A break-glass version allowed and merged: its follow-up review.
    follow_up: FollowUp | None = None

    def grant(self, pr: int | None = None) -> Grant | None:
        """The grant this version holds when allowed (clouds keep whole seconds: a
        fractional window is shortened, never stretched)."""
        window = self.held if self.state == "unverified" else self.window
        if self.request is None or window is None or self.principal is None:
            return None
        if not self.allowed and self.state != "unverified":
            return None
        return grant_for(self.request, self.principal, window, pr if pr is not None else self.pr)

    def wanted(self, now: datetime) -> bool:
        """Whether its grant should exist in the cloud at ``now`` (a cloud that enforces
        the begin itself may be written before it)."""
        g = self.grant()
        return (
            self.allowed
            and self.state != "revoked"
            and g is not None
            and providers.spec(g.provider).writable_now(g, now)
        )


def grant_for(request: AccessRequest, principal: str, window: Window, pr: int | None) -> Grant:
    return Grant(
        provider=request.provider,
        scope=request.scope,
        role=request.role,
        principal=principal,
        request=request.path,
        begin=_second_ceil(window.begin),
        end=_second_floor(window.end),
        pr=pr,
    )


def _second_floor(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def _second_ceil(t: datetime) -> datetime:
    return t.replace(microsecond=0) + timedelta(seconds=1) if t.microsecond else t


def judge_request(
    request: AccessRequest | None,
    config: Config,
    approval: Approval,
    now: datetime,
    *,
    path: str = "",
    findings: tuple[Finding, ...] = (),
    config_broken: bool = False,
    committed_at: datetime | None = None,
    removal: Removal | None = None,
    revoked_at: datetime | None = None,
) -> Judgment:
    """The one decision. ``committed_at`` (git's date of the version) dates a held window
    while the approval is unverifiable; ``revoked_at`` is a revocation the reconciler
    recorded before the window ended (the audit's ledger)."""
    path = request.path if request is not None else path
    problems = [
        Problem(f.code, f.message, kind="file", line=f.line)
        for f in findings
        if f.severity == "error"
    ]
    if config_broken:
        problems.append(
            Problem("E-CONFIG", "the policies were invalid: nothing is allowed", kind="config")
        )
    base = Judgment(path, request, "rejected", False, pr=approval.pr)
    approvers = _approvers(approval)
    stop = config.suspension(request.requester) if request is not None else None
    if stop is not None and request is not None:
        # The emergency stop wins over everything: nothing held, nothing granted.
        problems.append(
            Problem(
                "E-SUSPENDED",
                f"{request.requester} is suspended ({stop.reason}; {stop.file}:{stop.line}): "
                "no access is granted until the entry is removed",
                key="requester",
                kind="suspended",
            )
        )
        window = compute_window(request, approval.approved_at) if approval.approved_at else None
        return replace(
            base,
            state="suspended",
            window=window,
            approved_at=approval.approved_at,
            principal=_principal(request, config),
            approvers=approvers,
            problems=tuple(problems),
        )
    if approval.unverified is not None:
        held = _held(request, config, committed_at, findings, config_broken)
        problems.append(Problem("E-APPROVAL-UNVERIFIED", approval.unverified, kind="approval"))
        return replace(
            base,
            state="unverified",
            held=held,
            principal=_principal(request, config),
            window=held,
            approvers=approvers,
            problems=tuple(problems),
        )
    if approval.refusal is not None:
        problems.append(Problem(approval.refusal_code, approval.refusal, kind="approval"))
    author = _foreign_author(request, approval)
    if author is not None and request is not None:
        problems.append(
            Problem(
                "E-APPROVAL-AUTHOR",
                f"pull request #{approval.pr} was opened by {author}, not by the requester "
                f"{request.requester}: access is only granted to the person who asked",
                key="requester",
                kind="approval",
            )
        )
    if request is None or approval.approved_at is None:
        return replace(base, approvers=approvers, problems=tuple(problems))
    decision = evaluate(
        request, config, approved_at=approval.approved_at, approvals=approval.approvals
    )
    window = decision.window or compute_window(request, approval.approved_at)
    allowed = decision.allowed and not problems
    if decision.allowed and approval.approvals is not None:
        approvers = decision.approvers_counted or approvers
    problems += [
        Problem(f"E-REFUSED-{r.reason.value.upper()}", r.message, r.key, r.policy)
        for r in decision.refusals
    ]
    # Waiting: some policy allows it but for its approvals (pr-check's "pending").
    waiting = (
        not decision.allowed
        and approval.approvals is not None
        and len(problems) == len(decision.refusals)
        and any(r.reason is Reason.APPROVALS_MISSING for r in decision.refusals)
        and evaluate(request, config, approved_at=approval.approved_at, approvals=None).allowed
    )
    judged = replace(
        base,
        allowed=allowed,
        decision=decision,
        window=window,
        approved_at=approval.approved_at,
        policy=decision.policy if allowed else None,
        principal=decision.principal or config.principal(request.requester, request.provider),
        approvers=approvers,
        problems=tuple(problems),
        waiting=waiting,
    )
    judged = replace(judged, follow_up=_follow_up(judged, config, approval, now))
    return replace(judged, state=state_at(judged, now, removal, revoked_at))


def _follow_up(j: Judgment, config: Config, approval: Approval, now: datetime) -> FollowUp | None:
    """Where the follow-up review of an allowed, merged break-glass version stands at ``now``."""
    request, merged = j.request, j.approved_at
    policy = next((p for p in config.policies if p.name == j.policy), None)
    if request is None or not request.break_glass or not j.allowed or merged is None:
        return None
    if policy is None or policy.break_glass is None:
        return None
    author = approval.approvals.pr_author if approval.approvals else None
    excluded = {request.requester.lower(), *([author.lower()] if author else [])}
    eligible = config.expand(policy.approvers) - excluded
    within = policy.break_glass.review_within
    owed = FollowUp("unchecked", merged + within, within, policy.name, tuple(sorted(eligible)))
    if approval.reviews_unverified is not None:
        return replace(owed, status="unverified", reason=approval.reviews_unverified)
    if approval.reviews is None or approval.approvals is None:
        return owed
    # What GitHub held at ``now`` (--at in the past does not see later reviews).
    seen = [r for r in approval.reviews if r.submitted_at is not None and r.submitted_at <= now]
    review = follow_up(seen, merged, eligible=eligible, excluded=excluded)
    if review is not None and review.submitted_at is not None:
        return replace(owed, status="reviewed", by=review.login.lower(), at=review.submitted_at)
    return replace(owed, status="unreviewed" if now < owed.due else "overdue")


def shown_state(state: State, follow_up: FollowUp | None) -> State:
    """The state ``status`` shows: a merged break-glass version whose follow-up review is
    known to be missing says so, before and after it fell due, until it is reviewed."""
    if follow_up is None or not follow_up.owed:
        return state
    if state not in ("scheduled", "active", "expired", "revoked"):
        return state
    return (
        "break-glass-unreviewed"
        if follow_up.status == "unreviewed"
        else "break-glass-review-overdue"
    )


def judge(
    version: Version,
    approval: Approval,
    now: datetime,
    *,
    at_tip: bool = False,
    revoked_at: datetime | None = None,
) -> Judgment:
    """A version from the branch's history, by the policies of its own commit or (``at_tip``,
    for a version still on the branch) by the policies at the tip, as plan/apply do."""
    config, broken = version.config, version.config_broken
    if at_tip and version.tip_config is not None:
        config, broken = version.tip_config, version.tip_config_broken
    return judge_request(
        version.request,
        config,
        approval,
        now,
        path=version.path,
        findings=version.findings,
        config_broken=broken,
        committed_at=version.committed_at,
        removal=version.removal,
        revoked_at=revoked_at,
    )


def state_at(
    j: Judgment, at: datetime, removal: Removal | None, revoked_at: datetime | None
) -> State:
    """The state of an allowed version at ``at``; an edit or deletion before its end, or a
    revocation recorded before its end, revokes it."""
    if not j.allowed or j.window is None or j.approved_at is None:
        return "rejected"
    if at < j.approved_at:
        return "pending"
    window = j.window
    if removal is not None and removal.at <= at and removal.at < window.end:
        return "revoked"
    if revoked_at is not None and revoked_at <= at and revoked_at < window.end:
        return "revoked"
    if at < window.begin:
        return "scheduled"
    if at < window.end:
        return "active"
    return "expired"


def _approvers(approval: Approval) -> tuple[str, ...] | None:
    if approval.approvals is None:
        return None
    return tuple(sorted(r.lower() for r in approval.approvals.reviewers))


def _principal(request: AccessRequest | None, config: Config) -> str | None:
    return config.principal(request.requester, request.provider) if request else None


def _foreign_author(request: AccessRequest | None, approval: Approval) -> str | None:
    """The PR author when it is not the requester (logins compare case-insensitively)."""
    author = approval.approvals.pr_author if approval.approvals else None
    if request is None or not author:
        return None
    return author if author.lower() != request.requester.lower() else None


def _held(
    request: AccessRequest | None,
    config: Config,
    committed_at: datetime | None,
    findings: tuple[Finding, ...],
    config_broken: bool,
) -> Window | None:
    """The window an unverifiable version may keep: as git dates it (the merge commit's
    time stands in for the merge), and only when a policy allows that window (so never
    longer than its max_duration). Nothing is held for an invalid file or when no policy
    allows it."""
    if request is None or committed_at is None or findings or config_broken:
        return None
    decision = evaluate(request, config, approved_at=committed_at, approvals=None)
    return decision.window if decision.allowed else None
