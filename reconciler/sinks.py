"""Where an ``apply`` run's results go: sinks behind one small protocol.

The ledger (the audit trail on the ``accessctl-ledger`` branch) is the first sink;
notifications plug in the same way. A sink receives the full decisions behind each change
(requester, reason, ticket, policy, pull request), not only request paths.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from reconciler.core.judgment import Judgment
from reconciler.core.models import ChangeKind, ChangeResult

if TYPE_CHECKING:
    from reconciler.core.models import Config
    from reconciler.github import GitHubClient
    from reconciler.notify import Notifier


@dataclass(frozen=True)
class Decided:
    """One carried-out change with the decision behind it (None fields: no request, e.g.
    a standing assignment nobody asked for)."""

    result: ChangeResult
    requester: str | None = None
    reason: str | None = None
    ticket: str | None = None
    policy: str | None = None
    pr: int | None = None
    # Emergency access granted without approval, and when its follow-up review falls due.
    break_glass: bool = False
    review_due: datetime | None = None


@dataclass(frozen=True)
class RunReport:
    """What one apply run did, for the sinks."""

    now: datetime
    head: str | None  # the access repository commit the plan was made from
    results: tuple[ChangeResult, ...]
    judgments: Mapping[str, Judgment] = field(default_factory=dict)
    # Evidence the reconciler keeps for itself beside the ledger (verified approvals).
    files: Mapping[str, bytes] = field(default_factory=dict)
    succeeded: bool = False  # the run converged (apply would exit 0)
    run: str = ""  # the run's id, for people
    # (provider, scope) -> why it could not be read: no changes were planned there.
    failed_scopes: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def decided(self) -> list[Decided]:
        """Every grant and revoke (not keeps), with its request's decision."""
        out = []
        for r in self.results:
            if r.change.kind is ChangeKind.KEEP:
                continue
            j = self.judgments.get(r.change.grant.request or "")
            request = j.request if j is not None else None
            out.append(
                Decided(
                    r,
                    requester=request.requester if request else None,
                    reason=request.reason if request else None,
                    ticket=request.ticket if request else None,
                    policy=j.policy if j is not None else None,
                    pr=r.change.grant.pr or (j.pr if j is not None else None),
                    break_glass=bool(request and request.break_glass),
                    review_due=j.follow_up.due if j is not None and j.follow_up else None,
                )
            )
        return out


class Sink(Protocol):
    name: str  # short, stable: "ledger", "slack"...
    describe: str  # for a person: "the ledger (accessctl-ledger)"

    def publish(self, report: RunReport) -> str | None:
        """Deliver the run; return an identifier of what was written (a commit...), or
        None when there was nothing to deliver. Raise on failure: the caller reports it
        and goes on with the other sinks."""
        ...


class LedgerSink:
    """The audit ledger: one commit per run that changed something (or learnt a new
    verified approval), never on the checked-out branch.

    With GitHub credentials (``github``, else ``GITHUB_TOKEN`` and ``GITHUB_REPOSITORY`` in
    the environment, as in Actions) and an ``origin``, GitHub writes and signs the commit
    and its head is anchored, so ``ledger.inspect`` can tell the reconciler's lines from
    anybody else's. ``use_github=False`` (``--trust-git``, air-gapped) keeps git plumbing."""

    name = "ledger"

    def __init__(
        self,
        repo: Path,
        branch: str | None = None,
        *,
        github: GitHubClient | None = None,
        use_github: bool = True,
        env: Mapping[str, str] | None = None,
    ) -> None:
        from reconciler import ledger

        self.repo = repo
        self.branch = branch or ledger.DEFAULT_BRANCH
        self.describe = f"could not record this apply in the ledger ({self.branch})"
        self.github = github
        self.use_github = use_github
        self.env = env

    def publish(self, report: RunReport) -> str | None:
        from reconciler import ledger

        decided = report.decided()
        if not decided and not report.files:
            return None
        run: dict[str, object] = dict(ledger.default_run(self.repo))
        run["commit"] = report.head or run.get("commit") or ""
        if os.environ.get("GITHUB_ACTOR"):
            run["actor"] = os.environ["GITHUB_ACTOR"]
        return ledger.record(
            self.repo,
            decided,
            now=report.now,
            run=run,
            branch=self.branch,
            files=report.files,
            github=self._client(),
        )

    def _client(self) -> GitHubClient | None:
        if self.github is not None or not self.use_github:
            return self.github
        env = os.environ if self.env is None else self.env
        if not (env.get("GITHUB_TOKEN") and env.get("GITHUB_REPOSITORY")):
            return None
        from reconciler.github import GitHubClient

        self.github = GitHubClient.from_env(env)
        return self.github


class HeartbeatSink:
    """Proof that a successful apply ran (reconciler.heartbeat): one commit on its own
    branch, replaced each time, so an idle run still leaves a fresh heartbeat."""

    name = "heartbeat"
    describe = "could not write the heartbeat (accessctl-heartbeat)"

    def __init__(self, repo: Path) -> None:
        self.repo = repo

    def publish(self, report: RunReport) -> str | None:
        from reconciler import heartbeat

        if not report.succeeded:
            return None  # a failed run must not look alive
        return heartbeat.beat(self.repo, report.now, report.run or "run")


class NotificationSink:
    """The notifications configured in the policies (``reconciler.notify``): granted,
    revoked, failed and late-revoke events to Slack, webhooks and the GitHub issue.
    Raises ``notify.DeliveryFailed`` (a warning: the run's outcome stands) when a sink
    could not be reached after its short retries."""

    name = "notify"
    describe = "notifications"

    def __init__(
        self,
        config: Config,
        notifiers: list[Notifier],
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.notifiers = notifiers
        self.env = os.environ if env is None else env

    def publish(self, report: RunReport) -> str | None:
        from reconciler import notify

        context = notify.context_of(self.env)
        tolerance = self.config.settings.late_tolerance
        events = notify.events_of_run(report, tolerance, context, report.failed_scopes)
        warnings = notify.deliver(self.notifiers, events, succeeded=report.succeeded)
        if warnings:
            raise notify.DeliveryFailed("; ".join(warnings))
        return None
