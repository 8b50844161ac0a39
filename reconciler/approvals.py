"""Where a request's approval comes from: git alone (--trust-git) or GitHub's pull requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from reconciler.core.judgment import Approval, Removal
from reconciler.core.models import AccessRequest, Approvals, Config, Policy
from reconciler.core.policy import evaluate


@dataclass(frozen=True)
class FileChange:
    """The first-parent commit on the current branch that last changed a request file."""

    path: str
    commit: str
    blob: str  # blob SHA of the file's current content
    committed_at: datetime  # committer time of `commit`, UTC
    author: str = ""  # commit author name <email>, for the audit


@dataclass(frozen=True)
class ApprovalRecord:
    """How a request's current content reached the branch, and who approved it."""

    path: str
    commit: str
    approved_at: datetime | None  # None when it cannot be established
    approvals: Approvals | None  # None: approvals not checked (--trust-git)
    pr: int | None = None
    error: str | None = None  # e.g. "reached main without a merged pull request"
    # The lookup itself failed (GitHub unreachable, 5xx after retries): the approval is
    # unknown, not refused; a planner may keep an existing grant rather than revoke it.
    transient: bool = False
    code: str = "E-APPROVAL"  # the finding code of ``error``
    # The pull request's commits were checked for require_signed_commits, and passed.
    signed: bool = False

    def approval(self) -> Approval:
        """The record as the judgment reads it."""
        if self.error and self.transient:
            return Approval(None, self.approvals, self.pr, unverified=self.error)
        if self.error or self.approved_at is None:
            why = self.error or "approval could not be established"
            return Approval(
                self.approved_at, self.approvals, self.pr, refusal=why, refusal_code=self.code
            )
        return Approval(self.approved_at, self.approvals, self.pr)


@dataclass(frozen=True)
class SigningRule:
    """Which requests need signed commits (``require_signed_commits``) under one Config.

    A request needs them when the one evaluator allows it under a policy that sets the
    flag and under no policy without it: the flag guards the access that only such a
    policy grants, and a request another policy allows anyway gains nothing from it. The
    same approvals the judgment counts decide it, so pr-check and apply agree.
    """

    plain: Config  # the policies without the flag
    strict: Config  # the policies with it

    @classmethod
    def of(cls, config: Config) -> SigningRule | None:
        """None when no policy sets the flag (then nothing is checked, nothing is asked)."""
        strict = tuple(p for p in config.policies if p.require_signed_commits)
        if not strict:
            return None
        plain = tuple(p for p in config.policies if not p.require_signed_commits)
        return cls(replace(config, policies=plain), replace(config, policies=strict))

    def policy(
        self,
        request: AccessRequest,
        *,
        approved_at: datetime,
        approvals: Approvals | None,
        before_merge: bool = False,
    ) -> Policy | None:
        """The flagged policy the request would be allowed under, or None (no check).
        ``before_merge`` (pr-check): a request still waiting for approvals is judged as it
        will be once they are given, so the author learns of unsigned commits early."""
        tries = [approvals, None] if before_merge and approvals is not None else [approvals]
        for given in tries:
            if evaluate(request, self.plain, approved_at=approved_at, approvals=given).allowed:
                return None
            decision = evaluate(request, self.strict, approved_at=approved_at, approvals=given)
            if decision.allowed:
                return next(p for p in self.strict.policies if p.name == decision.policy)
        return None


class ApprovalSource(Protocol):
    def lookup(self, changes: Sequence[FileChange]) -> dict[str, ApprovalRecord]:
        """One record per path; an unverifiable file gets ``error`` set, never raises."""
        ...

    def evidence(self) -> dict[str, bytes]:
        """Files the reconciler keeps on its ledger branch for the next run (verified
        approvals), when this run learnt something new; empty otherwise."""
        ...

    def remover(self, removal: Removal, path: str) -> Remover:
        """Who removed a request file from the branch (the pull request's author, or the
        commit's author for a direct push); never raises."""
        ...


@dataclass(frozen=True)
class Remover:
    login: str | None  # None: unknown (GitHub unreachable)
    pr: int | None = None  # None: a direct push (or unknown)
    error: str | None = None


class TrustGit:
    """``--trust-git``: approved at the committer time of the last first-parent change."""

    def lookup(self, changes: Sequence[FileChange]) -> dict[str, ApprovalRecord]:
        return {c.path: ApprovalRecord(c.path, c.commit, c.committed_at, None) for c in changes}

    def evidence(self) -> dict[str, bytes]:
        return {}

    def remover(self, removal: Removal, path: str) -> Remover:
        # Git alone knows the commit's author name, not a GitHub login: compared as is.
        name = removal.author.rsplit(" <", 1)[0].strip()
        return Remover(name or None)
