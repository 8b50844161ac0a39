"""Policy evaluation: does a policy allow this request, in which window, and why not."""

from __future__ import annotations

from datetime import datetime

from reconciler.core.models import AccessRequest, Approvals, Config, Decision, Window


def compute_window(request: AccessRequest, approved_at: datetime) -> Window:
    """``begin = max(start, approved_at)``, ``end = min(begin + duration, expires)``.

    The window may be empty (end <= begin); evaluate() refuses such requests.
    """
    raise NotImplementedError  # filled by the foundation issue


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
    raise NotImplementedError  # filled by the foundation issue
