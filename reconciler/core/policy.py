"""Policy evaluation: does a policy allow this request, in which window, and why not."""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import translate

import re2

from reconciler.core import providers
from reconciler.core.models import (
    AccessRequest,
    Approvals,
    Config,
    Decision,
    Policy,
    Reason,
    Refusal,
    Window,
)
from reconciler.core.timeutil import format_duration, format_rfc3339

_GLOB = re.compile(r"[*?\[]")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is a finding, not a line on stderr


@dataclass(frozen=True)
class TicketPattern:
    """A policy's ``ticket`` regular expression, matched by RE2 in time linear in the ticket.

    Python's ``re`` backtracks: ``^(a+)+$`` takes minutes on 60 characters, and a policy is
    text anyone may propose in a pull request. RE2 has no backreferences or lookarounds;
    ``compile`` refuses them (ValueError) so the policy is reported, never half-checked.
    """

    pattern: str
    regexp: re2._Regexp[str] = field(compare=False, repr=False)

    @classmethod
    def compile(cls, pattern: str) -> TicketPattern:
        try:
            return cls(pattern, re2.compile(pattern, _RE2_OPTIONS))
        except re2.error as exc:
            raise ValueError(_re2_message(exc)) from None

    def fullmatch(self, ticket: str) -> bool:
        """Whether the whole ticket matches (``$`` never matches before a final newline)."""
        try:
            return self.regexp.fullmatch(ticket) is not None
        except UnicodeError:  # a lone surrogate cannot be UTF-8 for RE2: no match
            return False


def _re2_message(exc: BaseException) -> str:
    detail = exc.args[0] if exc.args else ""
    text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
    return (
        f"{text or 'not a regular expression'} (ticket patterns are RE2 regular "
        "expressions: no backreferences or lookarounds)"
    )


def compute_window(request: AccessRequest, approved_at: datetime) -> Window:
    """``begin = max(start, approved_at)``, ``end = min(begin + duration, expires)``.

    The window may be empty (end <= begin); evaluate() refuses such requests.
    """
    begin = max(request.start, approved_at) if request.start is not None else approved_at
    ends = []
    if request.duration is not None:
        ends.append(begin + request.duration)
    if request.expires is not None:
        ends.append(request.expires)
    return Window(begin, min(ends) if ends else begin)


@dataclass(frozen=True)
class _Compiled:
    """A policy with its teams expanded once."""

    order: int
    policy: Policy
    requesters: frozenset[str]
    approvers: frozenset[str]


@dataclass
class _Scopes:
    """Policies by scope for one (provider, role): exact names, and globs by literal prefix,
    so finding the candidates for a scope costs one lookup per prefix length, not per policy."""

    exact: dict[str, list[_Compiled]] = field(default_factory=dict)
    globs: dict[str, list[tuple[re.Pattern[str], _Compiled]]] = field(default_factory=dict)

    def add(self, scope: str, compiled: _Compiled) -> None:
        glob = _GLOB.search(scope)
        if glob is None:
            self.exact.setdefault(scope, []).append(compiled)
        else:
            entry = (re.compile(translate(scope)), compiled)
            self.globs.setdefault(scope[: glob.start()], []).append(entry)

    def covering(self, scope: str) -> list[_Compiled]:
        found = {c.order: c for c in self.exact.get(scope, ())}
        if self.globs:
            for end in range(len(scope) + 1):
                for pattern, c in self.globs.get(scope[:end], ()):
                    if c.order not in found and pattern.match(scope):
                        found[c.order] = c
        return [found[k] for k in sorted(found)]


@dataclass(frozen=True)
class _Index:
    by_role: dict[tuple[str, str], _Scopes]  # (provider, role) -> policies by scope
    by_provider: dict[str, _Scopes]  # provider -> policies by scope, whatever the role


# Built once per Config (evaluating 10,000 requests must not re-expand teams 10,000 times).
_INDEXES: dict[int, tuple[weakref.ref[Config], _Index]] = {}


def _index(config: Config) -> _Index:
    cached = _INDEXES.get(id(config))
    if cached is not None and cached[0]() is config:
        return cached[1]
    index = _Index({}, {})
    for order, policy in enumerate(config.policies):
        compiled = _Compiled(
            order, policy, config.expand(policy.requesters), config.expand(policy.approvers)
        )
        for scope in dict.fromkeys(policy.scopes):
            index.by_provider.setdefault(policy.provider, _Scopes()).add(scope, compiled)
            for role in dict.fromkeys(policy.roles):
                index.by_role.setdefault((policy.provider, role), _Scopes()).add(scope, compiled)
    key = id(config)
    _INDEXES[key] = (weakref.ref(config, lambda _: _INDEXES.pop(key, None)), index)
    return index


def evaluate(
    request: AccessRequest,
    config: Config,
    *,
    approved_at: datetime,
    approvals: Approvals | None,
) -> Decision:
    """Judge one request against every policy.

    ``approvals=None`` means approvals are not checked (``--trust-git``, or the
    schema/policy part of the PR gate before reviews are looked at). Allowed when at least
    one policy covers provider+scope+role, lists the requester, admits the window, ticket,
    identity and (when given) has enough distinct eligible approvals. The Decision names
    the allowing policy, or carries every refusal of every candidate policy.
    """
    window = compute_window(request, approved_at)
    principal = config.principal(request.requester, request.provider)
    upfront = _request_refusals(request)
    index = _index(config)
    scopes = index.by_role.get((request.provider, request.role))
    candidates = scopes.covering(request.scope) if scopes is not None else []
    if not candidates:
        refusal = _no_policy(request, index)
        return Decision(
            request, False, window=window, principal=principal, refusals=(*upfront, refusal)
        )
    judged = [
        (c, _judge(c, request, window=window, principal=principal, approvals=approvals))
        for c in candidates
    ]
    for c, (refusals, counted) in judged:
        if not refusals and not upfront:
            return _decision(
                request,
                c,
                window=window,
                principal=principal,
                approvals=approvals,
                refusals=(),
                counted=counted,
                allowed=True,
            )
    # Refused: carry every refusal; report the approval numbers of the closest policy.
    best, (_, best_counted) = min(judged, key=lambda cj: (len(cj[1][0]), cj[0].order))
    every = tuple(upfront) + tuple(r for _, (rs, _) in judged for r in rs)
    return _decision(
        request,
        best,
        window=window,
        principal=principal,
        approvals=approvals,
        refusals=every,
        counted=best_counted,
        allowed=False,
    )


def _decision(
    request: AccessRequest,
    compiled: _Compiled,
    *,
    window: Window,
    principal: str | None,
    approvals: Approvals | None,
    refusals: tuple[Refusal, ...],
    counted: tuple[str, ...],
    allowed: bool,
) -> Decision:
    excluded = _excluded(request, approvals)
    return Decision(
        request,
        allowed,
        policy=compiled.policy.name if allowed else None,
        window=window,
        principal=principal,
        refusals=refusals,
        approvals_needed=approvals_needed(compiled.policy, request),
        approvers_counted=counted,
        approvers_eligible=tuple(sorted(compiled.approvers - excluded)),
    )


def _excluded(request: AccessRequest, approvals: Approvals | None) -> frozenset[str]:
    """Who never counts as an approver: the requester and the pull request's author."""
    out = {request.requester.lower()}
    if approvals is not None and approvals.pr_author:
        out.add(approvals.pr_author.lower())
    return frozenset(out)


def _request_refusals(request: AccessRequest) -> list[Refusal]:
    """What no policy can allow: a file in someone else's directory, a GCP basic role."""
    out = []
    parts = request.path.split("/")
    directory = parts[-2] if len(parts) >= 2 else ""
    if directory.lower() != request.requester.lower():
        out.append(
            Refusal(
                Reason.WRONG_DIRECTORY,
                f"requester {request.requester!r} must match the directory: the file belongs "
                f"at requests/{request.requester}/{parts[-1]}",
                key="requester",
            )
        )
    problem = providers.spec(request.provider).role_refusal(request.role)
    if problem is not None:
        out.append(Refusal(Reason.BASIC_ROLE, problem, key="role"))
    return out


def _no_policy(request: AccessRequest, index: _Index) -> Refusal:
    scopes = index.by_provider.get(request.provider)
    on_scope = scopes.covering(request.scope) if scopes is not None else []
    if not on_scope:
        return Refusal(
            Reason.NO_POLICY,
            f"no policy covers {request.provider} scope {request.scope}",
            key="scope",
        )
    roles = sorted({r for c in on_scope for r in c.policy.roles})
    shown = ", ".join(roles[:10]) + (", ..." if len(roles) > 10 else "")
    return Refusal(
        Reason.NO_POLICY,
        f"no policy allows role {request.role} on {request.scope}; policies there allow: {shown}",
        key="role",
    )


def _judge(
    c: _Compiled,
    request: AccessRequest,
    *,
    window: Window,
    principal: str | None,
    approvals: Approvals | None,
) -> tuple[list[Refusal], tuple[str, ...]]:
    """Every reason policy ``c`` refuses the request, and the approvals that counted."""
    p = c.policy
    out: list[Refusal] = []
    if request.break_glass and p.break_glass is None:
        out.append(
            Refusal(
                Reason.NO_BREAK_GLASS,
                f"policy {p.name!r} does not allow break-glass requests (it sets no "
                "break_glass): remove break_glass and ask for approval",
                p.name,
                "break_glass",
            )
        )
    if request.break_glass and request.start is not None:
        out.append(
            Refusal(
                Reason.BREAK_GLASS_START,
                "a break-glass request begins when it is merged: remove start (access that "
                "begins later is planned, not an emergency, and needs approval)",
                p.name,
                "start",
            )
        )
    if request.requester.lower() not in c.requesters:
        out.append(
            Refusal(
                Reason.NOT_REQUESTER,
                f"policy {p.name!r} does not list {request.requester} among its requesters",
                p.name,
                "requester",
            )
        )
    out.extend(_window_refusals(p, request, window))
    out.extend(_ticket_refusals(p, request))
    if principal is None:
        out.append(
            Refusal(
                Reason.NO_IDENTITY,
                f"{request.requester} has no {request.provider} identity in policies/ "
                f"(identities: {{{request.requester}: {{{request.provider}: ...}}}})",
                p.name,
                "requester",
            )
        )
    counted: tuple[str, ...] = ()
    if approvals is not None:
        excluded = _excluded(request, approvals)
        reviewers = frozenset(r.lower() for r in approvals.reviewers) - excluded
        counted = tuple(sorted(reviewers & c.approvers))
        # Break-glass needs none before the merge: its review comes after (judgment).
        if len(counted) < approvals_needed(p, request):
            out.append(_approvals_missing(c, counted, excluded))
    return out, counted


def approvals_needed(policy: Policy, request: AccessRequest) -> int:
    """How many approvals ``policy`` needs for ``request`` before it merges: none for a
    break-glass request (it is reviewed after the merge), else the policy's number."""
    return 0 if request.break_glass else policy.approvals


def max_duration(policy: Policy, request: AccessRequest) -> timedelta:
    """The longest window ``policy`` admits for ``request``: its break-glass max_duration
    for a break-glass request."""
    if request.break_glass and policy.break_glass is not None:
        return policy.break_glass.max_duration
    return policy.max_duration


def _window_refusals(p: Policy, request: AccessRequest, window: Window) -> list[Refusal]:
    end_key = (
        "expires"
        if request.expires is not None
        and (request.duration is None or window.end == request.expires)
        else "duration"
    )
    if window.end <= window.begin:
        return [
            Refusal(
                Reason.EMPTY_WINDOW,
                f"the access window is empty: it would begin {format_rfc3339(window.begin)} "
                f"and end {format_rfc3339(window.end)}",
                p.name,
                end_key,
            )
        ]
    longest = max_duration(p, request)
    if window.length > longest:
        what = "break-glass access" if request.break_glass else "access"
        return [
            Refusal(
                Reason.TOO_LONG,
                f"policy {p.name!r} allows {what} for at most {format_duration(longest)}; "
                f"this request lasts {format_duration(window.length)}",
                p.name,
                end_key,
            )
        ]
    return []


def _ticket_refusals(p: Policy, request: AccessRequest) -> list[Refusal]:
    if request.break_glass and request.ticket is None:
        pattern = f" matching {p.ticket.pattern}" if p.ticket is not None else ""
        return [
            Refusal(
                Reason.TICKET_MISSING,
                f"a break-glass request needs a ticket{pattern} (policy {p.name!r}): name "
                "the incident it is for",
                p.name,
                "break_glass",
            )
        ]
    if p.ticket is None:
        return []
    if request.ticket is None:
        return [
            Refusal(
                Reason.TICKET_MISSING,
                f"policy {p.name!r} requires a ticket matching {p.ticket.pattern}",
                p.name,
                "ticket",
            )
        ]
    if not p.ticket.fullmatch(request.ticket):
        return [
            Refusal(
                Reason.TICKET_MISMATCH,
                f"ticket {request.ticket!r} does not match {p.ticket.pattern} (policy {p.name!r})",
                p.name,
                "ticket",
            )
        ]
    return []


def _approvals_missing(c: _Compiled, counted: Sequence[str], excluded: frozenset[str]) -> Refusal:
    p = c.policy
    who = ", ".join(sorted(c.approvers - excluded)) or "nobody"
    got = f" (counted: {', '.join(counted)})" if counted else ""
    return Refusal(
        Reason.APPROVALS_MISSING,
        f"policy {p.name!r} needs {p.approvals} approval(s) from {who}; has {len(counted)}{got}",
        p.name,
        None,
    )
