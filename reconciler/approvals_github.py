"""Approvals verified on GitHub: a request's last commit on main -> its merged PR -> reviews.

``approved_at`` is the PR's ``merged_at``; the reviewers are those whose approval counted
at merge time on the PR's final head (``core.reviews``). A file that reached the
default branch without a merged pull request is reported, never approved. When the policy
the request is allowed under sets ``require_signed_commits``, the PR's commits that change
the file must prove the requester made them (``SignedCommits``). Verified results are
cached by blob SHA (with commit and path), so an idle run makes no calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler import git
from reconciler.approvals import ApprovalRecord, FileChange, Remover, SigningRule
from reconciler.core.judgment import Removal
from reconciler.core.models import AccessRequest, Approvals, Policy
from reconciler.core.reviews import Review, approvers
from reconciler.core.timeutil import format_rfc3339, parse_rfc3339
from reconciler.errors import ConfigError, GitHubError
from reconciler.github import MAX_PULL_COMMITS, CommitInfo, GitHubClient, PullRequestInfo

NO_PULL_REQUEST = "reached main without a merged pull request (direct push or bypass)"
CONTENT_DIFFERS = "content on main differs from the reviewed head of pull request"
NOT_IN_PULL = "the file is not among the changes reviewed in pull request"
CACHE_VERSION = 1
UNSIGNED = "E-PR-UNSIGNED"
WEB_FLOW = "web-flow"  # the account GitHub commits as from its web interface, and signs for
MAX_FILE_LOOKUPS = 10  # commits not in the clone whose files are asked of GitHub, per file
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


CACHE_FILE = "approvals.json"


class ApprovalCache:
    """Verified approvals the reconciler recorded on its own ledger branch.

    Only a place that only the reconciler's job can write is believed: the protected
    ``accessctl-ledger`` branch. A cache file in the work tree or an Actions cache could be
    planted by any workflow that runs on main, so none is ever read. Unreadable or
    foreign content counts as empty (everything is verified again)."""

    def __init__(self, raw: bytes | None, api_url: str, repository: str) -> None:
        self.identity = {"api": api_url, "repository": repository}
        self.records: dict[str, dict[str, Any]] = self._parse(raw)
        self.dirty = False

    @classmethod
    def from_ledger(
        cls,
        repo_dir: Path,
        api_url: str,
        repository: str,
        github: GitHubClient | None = None,
        identity: str | None = None,
    ) -> ApprovalCache:
        """The approvals the reconciler recorded: with ``github``, only a version written by
        a commit GitHub verified as the reconciler's own (a planted file is ignored)."""
        from reconciler import ledger

        try:
            raw = ledger.read_file(repo_dir, CACHE_FILE, github=github, identity=identity)
        except Exception:  # no ledger yet, not a repository...: verify everything
            raw = None
        return cls(raw, api_url, repository)

    @staticmethod
    def key(change: FileChange) -> str:
        # The blob is the content that was approved; the commit pins which merge approved
        # it (re-adding the same content later is a new request with a new approval).
        return f"{change.blob}:{change.commit}:{change.path}"

    def _parse(self, raw: bytes | None) -> dict[str, dict[str, Any]]:
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except ValueError:
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
                signed=entry.get("signed_commits") is True,
            )
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, change: FileChange, record: ApprovalRecord) -> None:
        if record.error or record.approved_at is None or record.approvals is None:
            return  # only verified approvals are kept; failures are looked up again
        self.records[self.key(change)] = {
            "approved_at": format_rfc3339(record.approved_at),
            "pr": record.pr,
            "pr_author": record.approvals.pr_author,
            "reviewers": sorted(record.approvals.reviewers),
            **({"signed_commits": True} if record.signed else {}),
        }
        self.dirty = True

    def payload(self, keep: set[str] | None = None) -> bytes:
        """The cache as the ledger stores it; ``keep``: only these keys (the versions still
        on the branch), so the file does not grow forever."""
        records = (
            self.records if keep is None else {k: v for k, v in self.records.items() if k in keep}
        )
        body = {"version": CACHE_VERSION, **self.identity, "records": records}
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def unsigned_message(policy: Policy, requester: str, problems: Sequence[str]) -> str:
    """The refusal of a request whose commits do not prove the requester made them."""
    return (
        f"policy {policy.name!r} requires every commit of the pull request that changes the "
        f"file to carry a signature GitHub verified, made by the requester {requester}: "
        + "; ".join(problems)
    )


class SignedCommits:
    """``require_signed_commits``: do the commits of a pull request that change a request
    file prove that the requester made them?

    Each must carry a signature GitHub verified (``commit.verification``) and be GitHub's
    attribution to the requester's account: its author, and its committer too (the
    signature GitHub checks is the committer's), except a commit made in GitHub's web
    interface, which GitHub itself signs as ``web-flow`` for the author. Calls: the PR's
    commit list (one per hundred commits, once per PR); then only for a commit that fails,
    whether it changes the file: from the clone when it holds the commit (pr-check has the
    head), else ``GET commits/{sha}`` (at most ``MAX_FILE_LOOKUPS`` per file)."""

    def __init__(self, client: GitHubClient, repo: Path | None) -> None:
        self.client = client
        self.repo = repo
        self._commits: dict[int, list[CommitInfo]] = {}

    def problems(self, number: int, head_sha: str, path: str, requester: str) -> list[str]:
        """Why the PR's commits that change ``path`` do not prove ``requester`` made them;
        empty when they all do. Raises GitHubError when GitHub cannot be asked."""
        if number not in self._commits:
            self._commits[number] = self.client.pull_commits(number)
        commits = self._commits[number]
        if len(commits) >= MAX_PULL_COMMITS:
            return [
                f"pull request #{number} has {len(commits)} commits, as many as GitHub lists, "
                "so not all of them can be checked"
            ]
        if head_sha not in {c.sha for c in commits}:
            return [f"GitHub does not list the head {head_sha[:12]} among the PR's commits"]
        suspects = {c.sha: why for c in commits if (why := _unproven(c, requester))}
        if not suspects:
            return []
        local, changing = self._local_changes(list(suspects), path)
        out: list[str] = []
        asked = 0
        for sha, why in suspects.items():
            if sha in local:
                changes: bool | None = sha in changing
            elif asked < MAX_FILE_LOOKUPS:
                asked += 1
                paths = self.client.commit_paths(sha)
                changes = None if paths is None else path in paths
            else:
                changes = None
            if changes is None:  # unknown: counted as a change (fail closed)
                out.append(f"commit {sha[:12]} {why} (and may change the file)")
            elif changes:
                out.append(f"commit {sha[:12]} changes the file but {why}")
        return out

    def _local_changes(self, shas: list[str], path: str) -> tuple[set[str], set[str]]:
        """(the commits the clone holds, those of them that change ``path``), from git: a
        merge changes it when its content differs from every parent's."""
        if self.repo is None:
            return set(), set()
        try:
            listed = git.run(self.repo, "cat-file", "--batch-check", input_bytes=_lines(shas))
            local = {
                fields[0]
                for fields in map(str.split, listed.decode().splitlines())
                if fields[1:2] == ["commit"]
            }
            if not local:
                return set(), set()
            args = ("diff-tree", "--stdin", "-r", "-c", "--root", "--name-only")
            out = git.run(
                self.repo, *args, "--", f":(literal){path}", input_bytes=_lines(sorted(local))
            )
        except ConfigError:  # git failed: ask GitHub instead
            return set(), set()
        return local, {line for line in out.decode().splitlines() if line in local}


def _lines(shas: Sequence[str]) -> bytes:
    return "".join(f"{sha}\n" for sha in shas if _SHA.fullmatch(sha)).encode()


def _unproven(commit: CommitInfo, requester: str) -> str | None:
    """Why ``commit`` does not prove ``requester`` made it (None: it does)."""
    who = requester.lower()
    if not commit.verified:
        return f"is not verified by GitHub (reason: {commit.reason or 'unsigned'})"
    if commit.author is None:
        return "has an author GitHub links to no account"
    if commit.author.lower() != who:
        return f"is authored by {commit.author}, not by the requester {requester}"
    committer = (commit.committer or "").lower()
    if committer not in (who, WEB_FLOW):
        return (
            f"is committed, and its signature made, by {commit.committer or 'an unknown account'}"
            f", not by the requester {requester}"
        )
    return None


class GitHubApprovals:
    """The ApprovalSource used by ``plan``/``apply`` when GitHub credentials are present.

    ``repo``: the clone, whose policies at HEAD (what plan/apply judge by) say which
    requests need signed commits; without it none are checked."""

    def __init__(
        self, client: GitHubClient, cache: ApprovalCache | None = None, repo: Path | None = None
    ) -> None:
        self.client = client
        self.cache = cache or ApprovalCache(None, client.api_url, client.repository)
        self.repo = repo
        self.signed_commits = SignedCommits(client, repo)
        self._head: tuple[_Head | None] | None = None  # loaded on first need
        self._seen: set[str] = set()
        self._default_branch: str | None = None
        self._pulls_of: dict[str, PullRequestInfo | None] = {}
        self._reviews_of: dict[int, list[Review]] = {}
        self._files_of: dict[int, dict[str, str | None]] = {}

    @classmethod
    def from_env(cls, repo_dir: Path, env: Mapping[str, str] | None = None) -> GitHubApprovals:
        """From GITHUB_API_URL/GITHUB_TOKEN/GITHUB_REPOSITORY; ConfigError when missing."""
        client = GitHubClient.from_env(env)
        cache = ApprovalCache.from_ledger(repo_dir, client.api_url, client.repository, client)
        return cls(client, cache, repo_dir)

    @property
    def calls(self) -> int:
        return self.client.calls

    def lookup(self, changes: Sequence[FileChange]) -> dict[str, ApprovalRecord]:
        out: dict[str, ApprovalRecord] = {}
        head = self._signing_head() if changes else None
        if head is not None:
            head.parse(changes)
        for change in changes:
            self._seen.add(ApprovalCache.key(change))
            cached = self.cache.get(change)
            if (
                cached is not None
                and not cached.signed
                and self._signing(change, cached.approved_at, cached.approvals)
            ):
                cached = None  # a policy requires signed commits since this was recorded
            out[change.path] = cached or self._verify(change)
            if cached is None:
                self.cache.put(change, out[change.path])
        return out

    def remover(self, removal: Removal, path: str) -> Remover:
        """The author of the pull request whose merge removed ``path`` (a direct push:
        the commit's author, as git records it). Kept with the verified approvals."""
        key = f"removed:{removal.commit}:{path}"
        self._seen.add(key)
        kept = self.cache.records.get(key)
        if isinstance(kept, dict) and isinstance(kept.get("author"), str):
            pr = kept.get("pr")
            return Remover(kept["author"], pr if isinstance(pr, int) else None)
        try:
            pull = self._merged_pull(removal.commit)
        except GitHubError as exc:
            return Remover(None, error=f"cannot tell who removed it: {exc}")
        if pull is None:
            name = removal.author.rsplit(" <", 1)[0].strip()
            return Remover(name or None)  # a direct push: not a GitHub login
        self.cache.records[key] = {"author": pull.author, "pr": pull.number}
        self.cache.dirty = True
        return Remover(pull.author, pull.number)

    def current_reviews(self, number: int) -> list[Review]:
        """Pull request ``number``'s reviews as GitHub lists them now: a break-glass
        request's follow-up review comes after the merge, so it is never read from the
        approvals recorded when it was granted (``ApprovalCache``). Raises GitHubError."""
        if number not in self._reviews_of:
            self._reviews_of[number] = self.client.pull_reviews(number)
        return self._reviews_of[number]

    def evidence(self) -> dict[str, bytes]:
        """The verified approvals for the ledger branch, when this run learnt new ones."""
        if not self.cache.dirty:
            return {}
        return {CACHE_FILE: self.cache.payload(keep=self._seen)}

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
            approvals = Approvals(reviewers, pr_author=pull.author, pr_number=pull.number)
            signing = self._signing(change, pull.merged_at, approvals)
            problems = (
                self.signed_commits.problems(
                    pull.number, pull.head_sha, change.path, signing[1].requester
                )
                if signing
                else []
            )
        except GitHubError as exc:
            return ApprovalRecord(
                change.path,
                change.commit,
                None,
                Approvals(frozenset()),
                error=f"approval could not be verified: {exc}",
                transient=True,
            )
        if signing and problems:
            return ApprovalRecord(
                change.path,
                change.commit,
                pull.merged_at,
                approvals,
                pr=pull.number,
                error=unsigned_message(signing[0], signing[1].requester, problems),
                code=UNSIGNED,
            )
        return ApprovalRecord(
            change.path,
            change.commit,
            pull.merged_at,
            approvals,
            pr=pull.number,
            signed=signing is not None,
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
        # A review submitted after the merge never counts: GitHub lets anyone approve a
        # merged pull request, which would otherwise approve a merge that passed no gate.
        # (A dismissal after the merge still removes an approval: it can only take away.)
        return approvers(
            self._reviews_of[pull.number],
            pull.head_sha,
            pr_author=pull.author,
            before=pull.merged_at,
        )

    def _signing(
        self, change: FileChange, approved_at: datetime | None, approvals: Approvals | None
    ) -> tuple[Policy, AccessRequest] | None:
        """The policy whose ``require_signed_commits`` applies to this version, with the
        request: the policies at HEAD judge the request files at HEAD, with this approval,
        as plan/apply do. Versions no longer at HEAD (the audit's history) are not checked."""
        head = self._signing_head()
        request = head.requests.get((change.path, change.blob)) if head else None
        if head is None or request is None or approved_at is None:
            return None
        policy = head.rule.policy(request, approved_at=approved_at, approvals=approvals)
        return (policy, request) if policy is not None else None

    def _signing_head(self) -> _Head | None:
        """The policies and request files at HEAD, once per run; None when no policy sets
        ``require_signed_commits`` (or there is no clone): then nothing more is read."""
        if self._head is None:
            self._head = (_Head.load(self.repo) if self.repo is not None else None,)
        return self._head[0]


@dataclass
class _Head:
    """What HEAD holds for ``require_signed_commits``: the rule its policies make and its
    request files (blob SHAs, and the requests parsed as lookups need them)."""

    repo: Path
    rule: SigningRule
    blobs: dict[str, str]  # request file -> blob SHA at HEAD
    requests: dict[tuple[str, str], AccessRequest] = field(default_factory=dict)

    @classmethod
    def load(cls, repo: Path) -> _Head | None:
        from reconciler.repo import load_config

        with git.Tree(repo, "HEAD") as tree:
            config, _ = load_config(tree)
            rule = SigningRule.of(config)
            if rule is None:
                return None
            blobs = {path: sha for path, (_, sha) in tree.entries().items()}
        return cls(repo, rule, blobs)

    def parse(self, changes: Sequence[FileChange]) -> None:
        """The requests of ``changes`` still at HEAD, read and parsed in one go."""
        from reconciler.history import MemorySource
        from reconciler.repo import load_requests

        wanted = {
            c.path: c.blob
            for c in changes
            if self.blobs.get(c.path) == c.blob and (c.path, c.blob) not in self.requests
        }
        if not wanted:
            return
        data = git.read_blobs(self.repo, wanted.values())
        source = MemorySource({p: data[b] for p, b in wanted.items() if b in data})
        requests, _ = load_requests(source, self.rule.plain, list(wanted))
        self.requests.update({(r.path, wanted[r.path]): r for r in requests})


def _pick(merged: list[PullRequestInfo], sha: str) -> PullRequestInfo | None:
    """A squash or merge commit is the PR's ``merge_commit_sha``; a rebased commit is one
    of several the PR put on the branch, which GitHub associates with it."""
    exact = [p for p in merged if p.merge_commit_sha == sha]
    if exact:
        return exact[0]
    return max(merged, key=lambda p: p.merged_at or datetime.min, default=None)
