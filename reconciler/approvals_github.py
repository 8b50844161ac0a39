"""Approvals verified on GitHub: a request's last commit on main -> its merged PR -> reviews.

``approved_at`` is the PR's ``merged_at``; the reviewers are those whose approval counted
at merge time on the PR's final head (SPEC §3, ``core.reviews``). A file that reached the
default branch without a merged pull request is reported, never approved. Verified
results are cached by blob SHA (with commit and path), so an idle run makes no calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.approvals import ApprovalRecord, FileChange
from reconciler.core.models import Approvals
from reconciler.core.reviews import Review, approvers
from reconciler.core.timeutil import format_rfc3339, parse_rfc3339
from reconciler.errors import GitHubError
from reconciler.github import GitHubClient, PullRequestInfo

NO_PULL_REQUEST = "reached main without a merged pull request (direct push or bypass)"
CONTENT_DIFFERS = "content on main differs from the reviewed head of pull request"
NOT_IN_PULL = "the file is not among the changes reviewed in pull request"
CACHE_VERSION = 1


def default_cache_path(
    repo_dir: Path, repository: str, env: Mapping[str, str] | None = None
) -> Path:
    """``$XDG_CACHE_HOME/accessctl/<owner>/<name>/approvals.json`` when set, else
    ``<repo>/.accessctl-cache/approvals.json``."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "accessctl" / repository / "approvals.json"
    return repo_dir / ".accessctl-cache" / "approvals.json"


class ApprovalCache:
    """A JSON file of verified approvals; unreadable or foreign files count as empty."""

    def __init__(self, path: Path | None, api_url: str, repository: str) -> None:
        self.path = path
        self.identity = {"api": api_url, "repository": repository}
        self.records: dict[str, dict[str, Any]] = self._read()
        self.dirty = False

    @staticmethod
    def key(change: FileChange) -> str:
        # The blob is the content that was approved; the commit pins which merge approved
        # it (re-adding the same content later is a new request with a new approval).
        return f"{change.blob}:{change.commit}:{change.path}"

    def _read(self) -> dict[str, dict[str, Any]]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
            return {}
        if any(data.get(k) != v for k, v in self.identity.items()):
            return {}
        records = data.get("records")
        return records if isinstance(records, dict) else {}

    def get(self, change: FileChange) -> ApprovalRecord | None:
        entry = self.records.get(self.key(change))
        if not isinstance(entry, dict):
            return None
        try:
            return ApprovalRecord(
                path=change.path,
                commit=change.commit,
                approved_at=parse_rfc3339(entry["approved_at"]),
                approvals=Approvals(
                    reviewers=frozenset(entry["reviewers"]),
                    pr_author=entry["pr_author"],
                    pr_number=int(entry["pr"]),
                ),
                pr=int(entry["pr"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, change: FileChange, record: ApprovalRecord) -> None:
        if record.error or record.approved_at is None or record.approvals is None:
            return  # only verified approvals are cached; failures are looked up again
        self.records[self.key(change)] = {
            "approved_at": format_rfc3339(record.approved_at),
            "pr": record.pr,
            "pr_author": record.approvals.pr_author,
            "reviewers": sorted(record.approvals.reviewers),
        }
        self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        payload = {"version": CACHE_VERSION, **self.identity, "records": self.records}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".approvals-")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            return  # a cache that cannot be written only costs API calls next time
        self.dirty = False


class GitHubApprovals:
    """The ApprovalSource used by ``plan``/``apply`` when GitHub credentials are present."""

    def __init__(self, client: GitHubClient, cache_path: Path | None = None) -> None:
        self.client = client
        self.cache = ApprovalCache(cache_path, client.api_url, client.repository)
        self._default_branch: str | None = None
        self._pulls_of: dict[str, PullRequestInfo | None] = {}
        self._reviews_of: dict[int, list[Review]] = {}
        self._files_of: dict[int, dict[str, str | None]] = {}

    @classmethod
    def from_env(cls, repo_dir: Path, env: Mapping[str, str] | None = None) -> GitHubApprovals:
        """From GITHUB_API_URL/GITHUB_TOKEN/GITHUB_REPOSITORY; ConfigError when missing."""
        client = GitHubClient.from_env(env)
        cache = default_cache_path(repo_dir, client.repository, env)
        return cls(client, None if _tracked(repo_dir, cache) else cache)

    @property
    def calls(self) -> int:
        return self.client.calls

    def lookup(self, changes: Sequence[FileChange]) -> dict[str, ApprovalRecord]:
        out: dict[str, ApprovalRecord] = {}
        for change in changes:
            cached = self.cache.get(change)
            out[change.path] = cached or self._verify(change)
            if cached is None:
                self.cache.put(change, out[change.path])
        self.cache.save()
        return out

    def _verify(self, change: FileChange) -> ApprovalRecord:
        try:
            pull = self._merged_pull(change.commit)
            if pull is None:
                return ApprovalRecord(
                    change.path,
                    change.commit,
                    None,
                    Approvals(frozenset()),
                    error=NO_PULL_REQUEST,
                )
            mismatch = self._head_blob_mismatch(pull, change)
            if mismatch:
                return ApprovalRecord(
                    change.path,
                    change.commit,
                    None,
                    Approvals(frozenset()),
                    pr=pull.number,
                    error=f"{mismatch} #{pull.number}",
                )
            reviewers = self._approvers(pull)
        except GitHubError as exc:
            return ApprovalRecord(
                change.path,
                change.commit,
                None,
                Approvals(frozenset()),
                error=f"approval could not be verified: {exc}",
                transient=True,
            )
        return ApprovalRecord(
            change.path,
            change.commit,
            pull.merged_at,
            Approvals(reviewers, pr_author=pull.author, pr_number=pull.number),
            pr=pull.number,
        )

    def _head_blob_mismatch(self, pull: PullRequestInfo, change: FileChange) -> str | None:
        """Was this exact content what the PR's head had? (A commit pushed from an older
        state of the PR, or a conflict resolution, can differ from what was approved.) A
        file the PR's diff does not list was never reviewed there: a rebase-merged PR whose
        commits edit an old request and put it back would otherwise re-approve it."""
        if pull.number not in self._files_of:
            files = self.client.pull_files(pull.number)
            self._files_of[pull.number] = {f.path: f.blob for f in files}
        listed = self._files_of[pull.number]
        if change.path not in listed:
            return NOT_IN_PULL
        blob = listed[change.path]
        if blob and change.blob and blob != change.blob:
            return CONTENT_DIFFERS
        return None

    def _branch(self) -> str:
        if self._default_branch is None:
            self._default_branch = self.client.default_branch()
        return self._default_branch

    def _merged_pull(self, sha: str) -> PullRequestInfo | None:
        """The pull request whose merge put ``sha`` on the default branch."""
        if sha not in self._pulls_of:
            branch = self._branch()
            merged = [
                p
                for p in self.client.commit_pulls(sha)
                if p.merged_at is not None and p.base_ref == branch
            ]
            self._pulls_of[sha] = _pick(merged, sha) or self._search_closed(sha, branch)
        return self._pulls_of[sha]

    def _search_closed(self, sha: str, branch: str) -> PullRequestInfo | None:
        # GitHub's commit -> PR association can lag just after a merge; a merge/squash
        # commit is also findable as some recent PR's merge_commit_sha.
        return next(
            (
                p
                for p in self.client.closed_pulls(branch)
                if p.merged_at is not None and p.merge_commit_sha == sha
            ),
            None,
        )

    def _approvers(self, pull: PullRequestInfo) -> frozenset[str]:
        if pull.number not in self._reviews_of:
            self._reviews_of[pull.number] = self.client.pull_reviews(pull.number)
        # Reviews as GitHub reports them now; not filtered by merged_at, since review and
        # merge clocks are GitHub's and a dismissal after the merge only removes approvals.
        return approvers(self._reviews_of[pull.number], pull.head_sha, pr_author=pull.author)


def _tracked(repo_dir: Path, path: Path) -> bool:
    """Is ``path`` committed in the repository? A cache that arrived through git could
    carry forged approvals, so it is never read."""
    try:
        rel = path.resolve().relative_to(repo_dir.resolve())
    except (ValueError, OSError):
        return False  # outside the repository: $XDG_CACHE_HOME
    proc = subprocess.run(
        ["git", "-C", str(repo_dir), "ls-files", "--", rel.as_posix()],
        capture_output=True,
        check=False,
    )
    return proc.returncode != 0 or bool(proc.stdout.strip())


def _pick(merged: list[PullRequestInfo], sha: str) -> PullRequestInfo | None:
    """A squash or merge commit is the PR's ``merge_commit_sha``; a rebased commit is one
    of several the PR put on the branch, which GitHub associates with it."""
    exact = [p for p in merged if p.merge_commit_sha == sha]
    if exact:
        return exact[0]
    return max(merged, key=lambda p: p.merged_at or datetime.min, default=None)
