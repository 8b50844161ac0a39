"""The pull request gate as a use case: one pull request in, a Report out.

``accessctl pr-check`` (the command) parses flags, calls ``check_pull_request`` and renders.
Everything that matters comes from the API (author, head, base, changed files, reviews)
and from git objects (policies at the BASE commit, request files at the HEAD commit,
never the work tree), so the pull request cannot loosen the policy that judges it. Every
request is judged by the one judgment (``reconciler.core.judgment``) that apply uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reconciler.approvals import SigningRule
from reconciler.approvals_github import UNSIGNED, SignedCommits, unsigned_message
from reconciler.core import layout
from reconciler.core.asking import Asked, ReviewRecord
from reconciler.core.judgment import Approval, judge_request
from reconciler.core.models import AccessRequest, Approvals, Config
from reconciler.core.prcheck import (
    FileVerdict,
    PathChange,
    Report,
    approval_state,
    judge_request_verdict,
    judge_revocation,
    split_changes,
)
from reconciler.core.reviews import Review, approvers
from reconciler.core.validate import check_request_now
from reconciler.errors import ConfigError, Finding
from reconciler.git import Tree, commit_exists
from reconciler.github import GitHubClient
from reconciler.repo import POLICIES, load_config, load_requests

MIXED = (
    "this pull request changes requests/ together with other files ({others}); an access "
    "request must be reviewed on its own: move the other changes to a separate pull request"
)
GITHUB_MAX_FILES = 3000  # what GET /pulls/{n}/files lists at most
TOO_MANY_FILES = (
    "GitHub lists {n} changed files, its maximum: the rest cannot be checked; split this pull "
    "request (access requests go in a pull request of their own)"
)
NOT_DEFAULT_BRANCH = (
    "this pull request targets {base}, not {default}: access requests are only checked "
    "against the policies of {default}; open it against {default}"
)
NO_REQUESTS_NOTE = "no access request files changed; nothing for accessctl to check"
POLICY_NOTE = (
    "policy files changed: checked as they are at the head commit; the security team "
    "reviews them (CODEOWNERS)"
)


def check_pull_request(client: GitHubClient, repo: Path, number: int, now: datetime) -> Report:
    """Everything the gate decides about pull request ``number``."""
    pull = client.pull(number)
    ids = {"pr": number, "head": pull.head_sha, "base": pull.base_sha, "author": pull.author}
    files = client.pull_files(number)
    if len(files) >= GITHUB_MAX_FILES:
        # GitHub lists at most 3000 files: a request file past them would go unchecked.
        problem = TOO_MANY_FILES.format(n=len(files))
        return Report(**ids, problems=(problem,))  # type: ignore[arg-type]
    changes = split_changes((f.path, f.status, f.previous) for f in files)
    # Anything under requests/ in any letter case is the gate's business.
    in_requests = [c for c in changes if layout.under_requests(c.path)]
    others = tuple(sorted({c.path for c in changes if not layout.under_requests(c.path)}))
    if not in_requests:
        checked = _policy_verdicts(repo, pull.head_sha, others)
        note = POLICY_NOTE if checked else NO_REQUESTS_NOTE
        return Report(**ids, verdicts=checked, notes=(note,), other_paths=others)  # type: ignore[arg-type]
    if pull.base_default_branch and pull.base_ref != pull.base_default_branch:
        # Requests are judged by the base branch's policies: a branch the author controls
        # would judge them by policies nobody reviewed (and the status is per commit).
        problem = NOT_DEFAULT_BRANCH.format(base=pull.base_ref, default=pull.base_default_branch)
        return Report(**ids, problems=(problem,), other_paths=others)  # type: ignore[arg-type]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        problem = MIXED.format(others=shown)
        return Report(**ids, problems=(problem,), other_paths=others)  # type: ignore[arg-type]
    _require_commits(repo, pull.base_sha, pull.head_sha)
    with Tree(repo, pull.base_sha) as base_tree, Tree(repo, pull.head_sha) as head_tree:
        config, config_findings = load_config(base_tree)
        if any(f.severity == "error" for f in config_findings):
            raise ConfigError(
                f"the policies at the base commit {pull.base_sha[:12]} are invalid; fix them on "
                "the base branch first",
                tuple(config_findings),
            )
        rule = SigningRule.of(config)
        gate = _Gate(client, config, number, pull.author, pull.head_sha, now, repo, rule)
        verdicts = gate.entries(base_tree, head_tree, in_requests)
        verdicts += gate.requests(head_tree, in_requests)
        verdicts += gate.removals(base_tree, head_tree, in_requests)
    record = ReviewRecord(
        gate.reviewed(), Asked(_lower(pull.requested_reviewers), _lower(pull.requested_teams))
    )
    return Report(**ids, verdicts=tuple(verdicts), reviews=record)  # type: ignore[arg-type]


def _lower(names: Sequence[str]) -> frozenset[str]:
    return frozenset(n.lower() for n in names)


def _policy_verdicts(repo: Path, head_sha: str, paths: Sequence[str]) -> tuple[FileVerdict, ...]:
    """A PR that changes policies/ must leave them valid (they judge every request)."""
    changed = [p for p in paths if p.startswith(POLICIES + "/")]
    if not changed:
        return ()
    _require_commits(repo, head_sha)
    with Tree(repo, head_sha) as head_tree:
        _, findings = load_config(head_tree)
    files = sorted(set(changed) | {f.file for f in findings})
    return tuple(
        FileVerdict(
            path,
            "policy",
            "failure" if any(f.severity == "error" for f in own) else "success",
            findings=own,
        )
        for path in files
        if (own := tuple(f for f in findings if f.file == path)) or path in changed
    )


def _require_commits(repo: Path, *shas: str) -> None:
    for sha in shas:
        if not commit_exists(repo, sha):
            raise ConfigError(
                f"commit {sha} is not in the clone at {repo}: check out with `fetch-depth: 0` "
                "(or fetch the pull request's base and head) before running pr-check"
            )


@dataclass
class _Gate:
    """One pull request judged under the base commit's policies."""

    client: GitHubClient
    config: Config
    number: int
    author: str
    head_sha: str
    now: datetime
    repo: Path
    rule: SigningRule | None = None  # which requests need signed commits
    _reviews: list[Review] | None = None
    _signed: SignedCommits | None = None

    def reviews(self) -> list[Review]:
        if self._reviews is None:  # only fetched when a request needs them
            self._reviews = self.client.pull_reviews(self.number)
        return self._reviews

    def reviewed(self) -> frozenset[str]:
        """Who submitted a review, in any state (from the reviews already read, if any)."""
        return frozenset(
            r.login.lower() for r in self._reviews or () if r.state.upper() != "PENDING"
        )

    def entries(
        self, base_tree: Tree, head_tree: Tree, changes: Sequence[PathChange]
    ) -> list[FileVerdict]:
        """Every added or changed path under requests/, whatever its extension: it must be
        a regular request file or note (no gitlink, symlink, executable, odd name or case
        variant), and sit in the author's own directory. Request files are judged further
        by ``requests``; notes only here."""
        verdicts = []
        author = self.author.lower()
        for change in changes:
            if change.kind == "removed":
                continue
            mode = head_tree.mode(change.path)
            kind = layout.classify(change.path, mode)
            findings: list[Finding] = []
            if kind is layout.Kind.STRAY:
                problem = layout.stray_problem(change.path, mode)
                findings.append(Finding(change.path, 1, problem.code, problem.message))
            owner = layout.owner(change.path)
            if kind is not layout.Kind.REQUEST and owner is not None and owner.lower() != author:
                findings.append(
                    Finding(
                        change.path,
                        1,
                        "E-PR-OWNER",
                        f"requests/{owner}/ belongs to {owner}; {self.author} may only add or "
                        f"change files under requests/{self.author}/",
                    )
                )
            if findings:
                verdicts.append(
                    FileVerdict(change.path, "request", "failure", findings=tuple(findings))
                )
        return verdicts

    def requests(self, head_tree: Tree, changes: Sequence[PathChange]) -> list[FileVerdict]:
        """Added and modified request files, as they are at the head commit."""
        paths = [
            c.path
            for c in changes
            if c.kind != "removed"
            and layout.classify(c.path, head_tree.mode(c.path)) is layout.Kind.REQUEST
        ]
        requests, findings = load_requests(head_tree, self.config, paths)
        verdicts = [self.request(r, [f for f in findings if f.file == r.path]) for r in requests]
        parsed = {r.path for r in requests}
        for path in sorted({f.file for f in findings} - parsed):
            own = tuple(f for f in findings if f.file == path)
            verdicts.append(FileVerdict(path, "request", "failure", findings=own))
        return verdicts

    def request(self, request: AccessRequest, own: list[Finding]) -> FileVerdict:
        if request.requester.lower() != self.author.lower():
            own.append(
                Finding(
                    request.path,
                    request.line_of("requester"),
                    "E-PR-AUTHOR",
                    f"requester {request.requester} is not the pull request's author "
                    f"{self.author}: a request must be opened by the person who gets the access",
                )
            )
        static, found = check_request_now(request, self.config, self.now)
        own += [f for f in found if f not in own]
        reviewers = approvers(
            self.reviews(), self.head_sha, pr_author=self.author, requester=request.requester
        )
        # Merging now is the approval: the one judgment, with the reviews given so far.
        approval = Approval(
            self.now,
            Approvals(reviewers, pr_author=self.author, pr_number=self.number),
            self.number,
        )
        own += self.signatures(request, approval.approvals)
        errors = tuple(f for f in own if f.severity == "error")
        judged = judge_request(request, self.config, approval, self.now, findings=errors)
        own += [
            Finding(request.path, request.line_of("requester"), p.code, p.message)
            for p in judged.problems
            if p.kind == "suspended"
        ]
        policy = judged.decision.policy if judged.decision and judged.allowed else static.policy
        standing = (
            approval_state(request, self.config, policy, reviewers, self.author) if policy else None
        )
        return judge_request_verdict(request, own, static, judged, standing)

    def signatures(self, request: AccessRequest, approvals: Approvals | None) -> list[Finding]:
        """``require_signed_commits``, when the policy the request is judged under sets it:
        the PR's commits that change the file must prove the requester made them. A policy
        without the flag costs nothing (no call)."""
        if self.rule is None:
            return []
        policy = self.rule.policy(
            request, approved_at=self.now, approvals=approvals, before_merge=True
        )
        if policy is None:
            return []
        if self._signed is None:
            self._signed = SignedCommits(self.client, self.repo)
        problems = self._signed.problems(
            self.number, self.head_sha, request.path, request.requester
        )
        hint = (
            "re-create the branch so that each commit changing the file is signed with a key "
            "registered to your GitHub account (git commit -S) or made in GitHub's web "
            "interface, then force-push"
        )
        return [
            Finding(
                request.path,
                1,
                UNSIGNED,
                f"{unsigned_message(policy, request.requester, [problem])}; {hint}",
            )
            for problem in problems
        ]

    def removals(
        self, base_tree: Tree, head_tree: Tree, changes: Sequence[PathChange]
    ) -> list[FileVerdict]:
        """Deleted request files (early revocation), read from the base commit."""
        removed = [
            c.path
            for c in changes
            if c.kind == "removed"
            and base_tree.mode(c.path) is not None
            and head_tree.mode(c.path) is None
            and layout.classify(c.path, base_tree.mode(c.path)) is layout.Kind.REQUEST
        ]
        verdicts = []
        for path in removed:
            requests, _ = load_requests(base_tree, self.config, [path])
            request = requests[0] if requests else None
            verdicts.append(judge_revocation(path, request, self.config, self.author))
        return verdicts
