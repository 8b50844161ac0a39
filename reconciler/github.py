"""The PyGithub adapter: the few GitHub calls accessctl makes, with retries and a counter.

Built from ``GITHUB_API_URL`` / ``GITHUB_TOKEN`` / ``GITHUB_REPOSITORY``. Every method
returns plain values (never PyGithub objects), so callers and the core stay SDK-free.
Every request pins the REST API version (``X-GitHub-Api-Version``) it was written for.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from reconciler.core.asking import Asked
from reconciler.core.reviews import Review
from reconciler.errors import ConfigError, GitHubError

DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"  # the REST API version every request asks for
ACTIONS_BOT_LOGIN = "github-actions[bot]"  # who Actions' GITHUB_TOKEN writes as
COMMENT_LIMIT = 65_536  # GitHub's maximum comment body, in characters
MAX_RATE_LIMIT_WAIT = 300.0  # longer waits fail the call rather than stall the run
MAX_PULL_COMMITS = 250  # what GET /pulls/{n}/commits lists at most
COMMIT_FILES_PAGE = 300  # files GET /commits/{sha} lists in one answer
T = TypeVar("T")

_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?")
_CUT_NOTE = (
    "\n\n---\n**This report is cut short**: it is longer than a GitHub comment may be. "
    "The whole report is in the job summary of this workflow run.\n"
)


@dataclass(frozen=True)
class PullRequestInfo:
    number: int
    author: str
    author_type: str
    head_sha: str
    base_sha: str
    base_ref: str
    state: str
    merged_at: datetime | None
    merge_commit_sha: str | None
    base_default_branch: str = ""  # the base repository's default branch ("" if not given)
    requested_reviewers: tuple[str, ...] = ()  # logins whose review is requested now
    requested_teams: tuple[str, ...] = ()  # slugs of the teams whose review is requested now


@dataclass(frozen=True)
class ChangedFile:
    """One entry of ``pulls/{n}/files``; ``previous`` is set for renames."""

    path: str
    status: str  # added | removed | modified | renamed | copied | changed | unchanged
    previous: str | None = None
    blob: str | None = None  # blob SHA of the file at the PR's head, when GitHub gives it


@dataclass(frozen=True)
class Comment:
    """One comment on an issue or pull request, as listed."""

    id: int
    body: str
    author: str
    author_type: str | None


@dataclass(frozen=True)
class Issue:
    """An issue (never a pull request), as the notification sink needs it."""

    number: int
    title: str
    body: str
    author: str


@dataclass(frozen=True)
class CommitInfo:
    """One commit as GitHub describes it: who GitHub says wrote it, and whether GitHub
    verified its signature (``reason``: GitHub's verification reason, ``valid`` when it did).
    ``author``/``committer`` are the GitHub accounts their e-mail addresses belong to (None
    when none does), never the free-text names in the commit."""

    sha: str
    parents: tuple[str, ...]
    verified: bool
    reason: str
    author: str | None
    committer: str | None


@dataclass(frozen=True)
class CommitStatus:
    """One commit status, with the account that created it (statuses are never edited or
    deleted: a new one with the same context is added instead)."""

    context: str
    state: str
    description: str
    creator: str
    created_at: datetime | None


@functools.cache
def rate_limit_retry() -> type[Any]:
    """The retry policy class, built on first use (PyGithub stays unloaded until then)."""
    from github import GithubRetry
    from github.GithubException import RateLimitExceededExceedsMaxWait

    class RateLimitRetry(GithubRetry):
        """PyGithub's retry policy (5xx; 403 rate limits by their message) plus GitHub's other
        rate-limit answer, 429, with every wait bounded by ``max_rate_limit_wait``.

        GitHub's rule for either status: wait ``Retry-After`` seconds when given; otherwise,
        when ``x-ratelimit-remaining`` is 0, until ``x-ratelimit-reset``; otherwise at least a
        minute (``secondary_rate_wait``). A longer wait than allowed fails the call at once.
        ``on_response`` is told of every answer that is retried or refused here, so the
        client's call counter sees the requests that never reach PyGithub.
        """

        def __init__(self, *, on_response: Callable[[], None] | None = None, **kwargs: Any) -> None:
            self.on_response = on_response
            self.rate_limit_wait: float | None = None
            kwargs.setdefault("status_forcelist", [*range(500, 600), 429])
            kwargs.setdefault(
                "allowed_methods", GithubRetry.DEFAULT_ALLOWED_METHODS | {"GET", "POST", "PATCH"}
            )
            super().__init__(**kwargs)

        def new(self, **kw: Any) -> RateLimitRetry:
            fresh: RateLimitRetry = super().new(on_response=self.on_response, **kw)
            return fresh

        def get_backoff_time(self) -> float:
            if self.rate_limit_wait is not None:
                return self.rate_limit_wait
            return float(super().get_backoff_time())

        def increment(
            self,
            method: str | None = None,
            url: str | None = None,
            response: Any = None,
            error: Exception | None = None,
            _pool: Any = None,
            _stacktrace: Any = None,
        ) -> Any:
            if response is None:
                return super().increment(method, url, response, error, _pool, _stacktrace)
            if self.on_response is not None:
                self.on_response()
            announced = _announced_wait(response.headers, time.time())
            if response.status == 429 or (response.status == 403 and announced is not None):
                wait = self.secondary_rate_wait if announced is None else announced
                if self.max_rate_limit_wait is not None and wait > self.max_rate_limit_wait:
                    raise RateLimitExceededExceedsMaxWait(
                        response.status,
                        {"message": "rate limited"},
                        dict(response.headers),
                        wait=wait,
                    )
                retry = super().increment(method, url, response, error, _pool, _stacktrace)
                assert isinstance(retry, RateLimitRetry)
                retry.rate_limit_wait = wait  # slept unless a Retry-After above 0 is
                return retry
            return super().increment(method, url, response, error, _pool, _stacktrace)

    return RateLimitRetry


class GitHubClient:
    """One repository on one GitHub API endpoint.

    ``bot_login`` is who an installation token (Actions' ``GITHUB_TOKEN``, a GitHub App's)
    writes as: GitHub will not tell such a token who it is (``GET /user`` answers 403).
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        repository: str,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        secondary_rate_wait: float = 60.0,
        max_rate_limit_wait: float = MAX_RATE_LIMIT_WAIT,
        timeout: int = 20,
        bot_login: str = ACTIONS_BOT_LOGIN,
        api_version: str = API_VERSION,
    ) -> None:
        from github import Auth, Github

        if repository.count("/") != 1 or not all(repository.split("/")):
            raise ConfigError(f"GITHUB_REPOSITORY must be OWNER/NAME, got {repository!r}")
        if not _LOGIN.fullmatch(bot_login):
            raise ConfigError(f"ACCESSCTL_BOT_LOGIN must be a GitHub login, got {bot_login!r}")
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        self.bot_login = bot_login
        self.max_rate_limit_wait = max_rate_limit_wait
        self.calls = 0
        self._identity: str | None = None
        retry = rate_limit_retry()(
            total=retries,
            backoff_factor=backoff,
            secondary_rate_wait=secondary_rate_wait,
            max_rate_limit_wait=max_rate_limit_wait,
            on_response=self._count,
        )
        # No client-side throttle: a run makes a handful of serial calls, and rate
        # limits (primary and secondary) are honoured by the retry policy instead.
        self._gh = Github(
            base_url=self.api_url,
            auth=Auth.Token(token),
            retry=retry,
            timeout=timeout,
            per_page=100,
            seconds_between_requests=None,
            seconds_between_writes=None,
            lazy=True,
            api_version=api_version,
        )
        self._repo = self._gh.get_repo(repository)
        self._install_counter()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GitHubClient:
        """The client Actions sets up for us; ConfigError (exit 2) when it cannot."""
        env = os.environ if env is None else env
        token = env.get("GITHUB_TOKEN", "")
        repository = env.get("GITHUB_REPOSITORY", "")
        missing = [
            n for n, v in (("GITHUB_TOKEN", token), ("GITHUB_REPOSITORY", repository)) if not v
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set: GitHub access is needed to verify approvals "
                "(in Actions pass `GITHUB_TOKEN: ${{ github.token }}`; offline, use --trust-git)"
            )
        return cls(
            env.get("GITHUB_API_URL") or DEFAULT_API_URL,
            token,
            repository,
            bot_login=env.get("ACCESSCTL_BOT_LOGIN") or ACTIONS_BOT_LOGIN,
        )

    def _count(self) -> None:
        self.calls += 1

    def _install_counter(self) -> None:
        """Count every HTTP response (each page of a list is one call); the retry policy
        counts the answers it retries, which never get this far."""
        requester = self._gh.requester
        connect = requester._Requester__createConnection  # type: ignore[attr-defined]

        def count(response: Any, *args: Any, **kwargs: Any) -> Any:
            self._count()
            return response

        try:
            session = connect().session
            session.hooks.setdefault("response", []).append(count)
        except AttributeError:  # a PyGithub without this internals: counting is best effort
            pass

    # ------------------------------------------------------------------ calls
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from github import GithubException
        from github.GithubException import RateLimitExceededExceedsMaxWait

        try:
            return fn()
        except RateLimitExceededExceedsMaxWait as exc:
            raise GitHubError(
                f"GitHub: {what} failed: rate limited for {exc.wait or 0:.0f}s, longer than "
                f"the {self.max_rate_limit_wait:.0f}s a run waits"
            ) from None
        except GithubException as exc:
            message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
            if exc.status == 401:  # a wrong or expired token is configuration, not an outage
                raise ConfigError(
                    f"GitHub rejected the token (401: {message}) while {what}"
                ) from None
            raise GitHubRefusal(
                f"GitHub: {what} failed ({exc.status}: {message})", exc.status
            ) from None
        except OSError as exc:  # connection refused, DNS, timeouts after retries
            raise GitHubError(f"GitHub: {what} failed ({exc})") from None

    def default_branch(self) -> str:
        return self._call("reading the repository", lambda: self._repo.default_branch)

    def pull(self, number: int) -> PullRequestInfo:
        def fetch() -> PullRequestInfo:
            return _pull_info(self._repo.get_pull(number).complete())

        return self._call(f"reading pull request #{number}", fetch)

    def pull_files(self, number: int) -> list[ChangedFile]:
        def fetch() -> list[ChangedFile]:
            return [
                ChangedFile(
                    str(raw["filename"]),
                    str(raw.get("status", "")),
                    raw.get("previous_filename"),
                    raw.get("sha") if isinstance(raw.get("sha"), str) else None,
                )
                for raw in map(_raw, self._repo.get_pull(number).get_files())
            ]

        return self._call(f"listing the files of pull request #{number}", fetch)

    def pull_reviews(self, number: int) -> list[Review]:
        def fetch() -> list[Review]:
            return [_review(r) for r in self._repo.get_pull(number).get_reviews()]

        return self._call(f"listing the reviews of pull request #{number}", fetch)

    def commit_pulls(self, sha: str) -> list[PullRequestInfo]:
        def fetch() -> list[PullRequestInfo]:
            return [_pull_info(p) for p in self._repo.get_commit(sha).get_pulls()]

        return self._call(f"finding the pull requests of commit {sha[:12]}", fetch)

    def closed_pulls(self, base: str, limit: int = 100) -> list[PullRequestInfo]:
        """The most recently updated closed pull requests into ``base`` (one page)."""

        def fetch() -> list[PullRequestInfo]:
            pulls = self._repo.get_pulls(
                state="closed", base=base, sort="updated", direction="desc"
            )
            return [_pull_info(p) for p in pulls.get_page(0)[:limit]]

        return self._call("listing closed pull requests", fetch)

    def identity(self) -> str:
        """The login this token writes as, asked once per client.

        ``GET /user`` answers it for a person's token. GitHub refuses that call to an
        installation token (403 "Resource not accessible by integration"): such a token
        writes as ``bot_login`` (``github-actions[bot]`` for Actions' own token).
        """
        if self._identity is None:
            self._identity = self._call("finding out who the token is", self._whoami)
        return self._identity

    def _whoami(self) -> str:
        from github import GithubException

        try:
            _, data = self._gh.requester.requestJsonAndCheck("GET", "/user")
        except GithubException as exc:
            if exc.status == 403 and "not accessible by integration" in _message(exc).lower():
                return self.bot_login
            raise
        login = data.get("login") if isinstance(data, dict) else None
        if not isinstance(login, str) or not login:
            raise GitHubError("GitHub: GET /user answered without a login")
        return login

    def comments(self, number: int) -> list[Comment]:
        """Every comment on issue or pull request ``number``, oldest first."""
        issue = self._repo.get_issue(number)
        return self._call(
            f"listing the comments of #{number}",
            lambda: [_comment(_raw(c)) for c in issue.get_comments()],
        )

    def upsert_comment(self, number: int, marker: str, body: str) -> int:
        """Write ``body`` as our one comment on #``number``; returns the comment's id.

        Ours is a comment that starts with ``marker`` and whose author is this token's
        identity (``our_comment``); it is edited in place. Anybody else's comment, whatever
        it says, is never edited, adopted or trusted; without one of ours a new comment is
        created, so the real report is always written. The body is cut to GitHub's size
        limit (``fit_comment``). A failed edit raises GitHubError: the caller decides what
        that means.
        """
        return self.write_comment(number, marker, body, self.our_comment(number, marker))

    def our_comment(self, number: int, marker: str) -> Comment | None:
        """The oldest comment on #``number`` that starts with ``marker`` and whose author is
        this token's identity (logins compare case-insensitively); None when there is none.
        Only such a comment is ever believed: anyone may write the marker."""
        marked = [c for c in self.comments(number) if c.body.startswith(marker)]
        me = self.identity().lower() if marked else ""  # nothing to tell apart: no call
        ours = [c for c in marked if c.author.lower() == me]
        return min(ours, key=lambda c: c.id) if ours else None

    def write_comment(self, number: int, marker: str, body: str, ours: Comment | None) -> int:
        """Edit ``ours`` (from ``our_comment``) to ``body``, or create the comment when
        there is none; returns its id."""
        text = fit_comment(body, marker)
        if ours is None:
            issue = self._repo.get_issue(number)
            created = self._call(f"commenting on #{number}", lambda: issue.create_comment(text))
            return int(_raw(created).get("id") or created.id)
        comment_id = ours.id
        # PATCH by id rather than trusting the comment's own ``url`` field.
        url = f"{self._repo.url}/issues/comments/{comment_id}"
        self._call(
            f"editing comment {comment_id} on #{number}",
            lambda: self._gh.requester.requestJsonAndCheck("PATCH", url, input={"body": text}),
        )
        return comment_id

    # ------------------------------------------------------------ review requests
    def request_reviewers(
        self, number: int, reviewers: Sequence[str], team_reviewers: Sequence[str] = ()
    ) -> None:
        """Ask ``reviewers`` (logins) and ``team_reviewers`` (slugs of the repository
        owner's teams) to review pull request ``number`` (``POST
        /pulls/{n}/requested_reviewers``). GitHub answers 422 when one of them is the author
        or not a collaborator (then nobody is asked), 403 to a token without
        ``pull-requests: write``: GitHubRefusal, with the status."""
        from github.GithubObject import NotSet

        pull = self._repo.get_pull(number)
        self._call(
            f"requesting reviews on #{number}",
            lambda: pull.create_review_request(
                reviewers=list(reviewers) or NotSet,
                team_reviewers=list(team_reviewers) or NotSet,
            ),
        )

    def review_requests_made(self, number: int) -> Asked:
        """Everyone GitHub's record says was ever asked to review pull request ``number``,
        whatever happened to the request since (answered, removed, dismissed): the
        ``review_requested`` events of its issue (``GET /issues/{n}/events``: one call per
        hundred events)."""
        issue = self._repo.get_issue(number)

        def fetch() -> Asked:
            users: set[str] = set()
            teams: set[str] = set()
            for raw in map(_raw, issue.get_events()):
                if raw.get("event") != "review_requested":
                    continue
                user, team = raw.get("requested_reviewer"), raw.get("requested_team")
                if isinstance(user, dict) and user.get("login"):
                    users.add(str(user["login"]).lower())
                if isinstance(team, dict) and team.get("slug"):
                    teams.add(str(team["slug"]).lower())
            return Asked(frozenset(users), frozenset(teams))

        return self._call(f"listing the events of #{number}", fetch)

    # ------------------------------------------------------------------ issues
    def open_issues(self, label: str) -> list[Issue]:
        """The open issues labelled ``label`` (pull requests left out), oldest first."""

        def fetch() -> list[Issue]:
            _, data = self._gh.requester.requestJsonAndCheck(
                "GET",
                f"{self._repo.url}/issues",
                parameters={"state": "open", "labels": label, "per_page": 100},
            )
            rows = data if isinstance(data, list) else []
            return sorted(
                (_issue(r) for r in rows if isinstance(r, dict) and "pull_request" not in r),
                key=lambda i: i.number,
            )

        return self._call(f"listing open issues labelled {label}", fetch)

    def create_issue(self, title: str, body: str, labels: Sequence[str]) -> int:
        raw = self._request(
            "POST",
            "/issues",
            "opening an issue",
            {"title": title, "body": _fit(body, COMMENT_LIMIT), "labels": list(labels)},
        )
        return int(raw.get("number") or 0)

    def comment_issue(self, number: int, body: str) -> None:
        self._request(
            "POST",
            f"/issues/{number}/comments",
            f"commenting on issue #{number}",
            {"body": _fit(body, COMMENT_LIMIT)},
        )

    def close_issue(self, number: int) -> None:
        self._request(
            "PATCH",
            f"/issues/{number}",
            f"closing issue #{number}",
            {"state": "closed", "state_reason": "completed"},
        )

    def create_status(
        self, sha: str, state: str, description: str, context: str, target_url: str | None = None
    ) -> None:
        from github.GithubObject import NotSet

        commit = self._repo.get_commit(sha)
        self._call(
            f"setting status {context} on {sha[:12]}",
            lambda: commit.create_status(
                state,
                target_url=target_url or NotSet,
                description=_fit(description, 140),
                context=context,
            ),
        )

    def statuses(self, sha: str) -> list[tuple[str, str, str]]:
        """(context, state, description), newest first."""

        def fetch() -> list[tuple[str, str, str]]:
            return [
                (str(raw.get("context")), str(raw.get("state")), str(raw.get("description") or ""))
                for raw in map(_raw, self._repo.get_commit(sha).get_statuses())
            ]

        return self._call(f"listing statuses of {sha[:12]}", fetch)

    # ------------------------------------------------------------ Git database
    def create_tree(self, files: Mapping[str, bytes], base_tree: str | None) -> str:
        """A tree: ``base_tree`` with ``files`` (path -> content) written over it. Text goes
        inline (GitHub writes the blob); other bytes are uploaded as blobs first."""
        entries: list[dict[str, object]] = []
        for path, content in sorted(files.items()):
            entry: dict[str, object] = {"path": path, "mode": "100644", "type": "blob"}
            try:
                entry["content"] = content.decode("utf-8")
            except UnicodeDecodeError:
                entry["sha"] = self._create_blob(content)
            entries.append(entry)
        body: dict[str, object] = {"tree": entries}
        if base_tree:
            body["base_tree"] = base_tree
        data = self._request("POST", "/git/trees", "creating a tree", body)
        return str(data["sha"])

    def _create_blob(self, content: bytes) -> str:
        body = {"content": base64.b64encode(content).decode(), "encoding": "base64"}
        return str(self._request("POST", "/git/blobs", "creating a blob", body)["sha"])

    def create_commit(self, message: str, tree: str, parents: Sequence[str]) -> CommitInfo:
        """A commit written by GitHub itself. No author, committer or signature is sent: for
        an installation token (Actions' ``GITHUB_TOKEN``, a GitHub App's) GitHub then signs the
        commit as that app's bot, so nobody without the token can make one that verifies."""
        body = {"message": message, "tree": tree, "parents": list(parents)}
        data = self._request("POST", "/git/commits", "creating a commit", body)
        verification = data.get("verification") or {}
        return CommitInfo(
            sha=str(data["sha"]),
            parents=tuple(str(p.get("sha")) for p in data.get("parents") or []),
            verified=verification.get("verified") is True,
            reason=str(verification.get("reason") or ""),
            author=None,
            committer=None,
        )

    def create_ref(self, branch: str, sha: str) -> bool:
        """Create ``refs/heads/<branch>`` at ``sha``; False when it exists already."""
        body = {"ref": f"refs/heads/{branch}", "sha": sha}
        return self._ref_call("POST", "/git/refs", f"creating branch {branch}", body)

    def update_ref(self, branch: str, sha: str) -> bool:
        """Move ``branch`` to ``sha``, fast-forward only; False when it is not one (someone
        else moved the branch since we read it)."""
        body = {"sha": sha, "force": False}
        return self._ref_call("PATCH", f"/git/refs/heads/{branch}", f"updating {branch}", body)

    def _ref_call(self, verb: str, suffix: str, what: str, body: Mapping[str, object]) -> bool:
        try:
            self._request(verb, suffix, what, body)
        except _Refused:
            return False
        return True

    def commit(self, sha: str) -> CommitInfo:
        """One commit with GitHub's verification of its signature."""
        data = self._request("GET", f"/commits/{sha}", f"reading commit {sha[:12]}")
        return _commit_info(data)

    def history(self, head: str) -> list[CommitInfo]:
        """Every commit reachable from ``head``, newest first (``GET /commits?sha=``: one call
        per hundred commits), each with GitHub's verification of its signature. Empty when
        GitHub has no such commit (one that was never pushed)."""
        from github import GithubException

        def fetch() -> list[CommitInfo]:
            try:
                return [_commit_info(_raw(c)) for c in self._repo.get_commits(sha=head)]
            except GithubException as exc:
                if exc.status in (404, 422) and "no commit found" in _message(exc).lower():
                    return []
                raise

        return self._call(f"listing the commits of {head[:12]}", fetch)

    def pull_commits(self, number: int) -> list[CommitInfo]:
        """The commits of pull request ``number``, oldest first (``GET /pulls/{n}/commits``:
        one call per hundred; GitHub lists ``MAX_PULL_COMMITS`` at most), each with GitHub's
        verification of its signature and the accounts it attributes it to."""

        def fetch() -> list[CommitInfo]:
            return [_commit_info(_raw(c)) for c in self._repo.get_pull(number).get_commits()]

        return self._call(f"listing the commits of pull request #{number}", fetch)

    def commit_paths(self, sha: str) -> frozenset[str] | None:
        """The paths commit ``sha`` changes, both names of a rename (``GET /commits/{sha}``,
        one call); None when GitHub's answer may leave some out (a page of 300 files)."""
        data = self._request("GET", f"/commits/{sha}", f"reading the files of commit {sha[:12]}")
        files = data.get("files")
        if not isinstance(files, list) or len(files) >= COMMIT_FILES_PAGE:
            return None
        return frozenset(
            str(f[key])
            for f in files
            if isinstance(f, dict)
            for key in ("filename", "previous_filename")
            if isinstance(f.get(key), str)
        )

    def commit_statuses(self, sha: str) -> list[CommitStatus]:
        """Every status of commit ``sha`` with its creator, newest first."""

        def fetch() -> list[CommitStatus]:
            out = []
            for raw in map(_raw, self._repo.get_commit(sha).get_statuses()):
                creator = raw.get("creator")
                creator = creator if isinstance(creator, dict) else {}
                out.append(
                    CommitStatus(
                        context=str(raw.get("context") or ""),
                        state=str(raw.get("state") or ""),
                        description=str(raw.get("description") or ""),
                        creator=str(creator.get("login") or ""),
                        created_at=_parse_time(raw.get("created_at")),
                    )
                )
            return out

        return self._call(f"listing statuses of {sha[:12]}", fetch)

    def _request(
        self, verb: str, suffix: str, what: str, body: Mapping[str, object] | None = None
    ) -> dict[str, Any]:
        return self._call(what, lambda: self._raw_request(verb, suffix, body))

    def _raw_request(
        self, verb: str, suffix: str, body: Mapping[str, object] | None
    ) -> dict[str, Any]:
        from github import GithubException

        url = f"{self._repo.url}{suffix}"
        try:
            _, data = self._gh.requester.requestJsonAndCheck(
                verb, url, input=dict(body) if body is not None else None
            )
        except GithubException as exc:
            message = _message(exc).lower()
            if exc.status == 422 and ("fast forward" in message or "already exists" in message):
                raise _Refused(message) from None
            raise
        return data if isinstance(data, dict) else {}


class GitHubRefusal(GitHubError):
    """GitHub answered a call with an error ``status`` (after the retries)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class _Refused(GitHubError):
    """GitHub refused a ref update because the ref moved (or exists): the caller's race."""


def _commit_info(raw: dict[str, Any]) -> CommitInfo:
    commit = raw.get("commit") if isinstance(raw.get("commit"), dict) else {}
    verification = commit.get("verification") if isinstance(commit, dict) else None
    verification = verification if isinstance(verification, dict) else {}

    def login(key: str) -> str | None:
        user = raw.get(key)
        return str(user["login"]) if isinstance(user, dict) and user.get("login") else None

    return CommitInfo(
        sha=str(raw.get("sha") or ""),
        parents=tuple(str(p.get("sha")) for p in raw.get("parents") or [] if isinstance(p, dict)),
        verified=verification.get("verified") is True,
        reason=str(verification.get("reason") or ""),
        author=login("author"),
        committer=login("committer"),
    )


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fit_comment(body: str, marker: str, limit: int = COMMENT_LIMIT) -> str:
    """``body`` with ``marker`` first, within ``limit`` characters: a longer report is cut
    at a line end and closed with a pointer to the job summary (an open code fence is
    closed first, so the pointer renders as text)."""
    if not body.startswith(marker):
        body = f"{marker}\n{body}"
    if len(body) <= limit:
        return body
    kept = body[: limit - len(_CUT_NOTE) - len("\n```")]
    line_end = kept.rfind("\n")
    if line_end > len(marker):
        kept = kept[:line_end]
    if kept.count("```") % 2:
        kept += "\n```"
    return kept + _CUT_NOTE


def _announced_wait(headers: Mapping[str, str], now: float) -> float | None:
    """The wait a GitHub answer asks for, in seconds: ``Retry-After`` (seconds or an HTTP
    date), else the time to ``x-ratelimit-reset`` when no request is left; None if neither."""
    retry_after = (headers.get("Retry-After") or "").strip()
    if retry_after.isdigit():
        return float(retry_after)
    if retry_after:
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - now, 0.0)
    reset = (headers.get("X-RateLimit-Reset") or "").strip()
    if headers.get("X-RateLimit-Remaining") == "0" and reset.isdigit():
        return max(float(reset) - now, 0.0)
    return None


def _message(exc: Any) -> str:
    data = getattr(exc, "data", None)
    message = data.get("message") if isinstance(data, dict) else data
    return str(message or "")


def _issue(raw: dict[str, Any]) -> Issue:
    user = raw.get("user") if isinstance(raw.get("user"), dict) else {}
    return Issue(
        int(raw.get("number") or 0),
        str(raw.get("title") or ""),
        str(raw.get("body") or ""),
        str((user or {}).get("login") or ""),
    )


def _comment(raw: dict[str, Any]) -> Comment:
    user = raw.get("user")
    user = user if isinstance(user, dict) else {}
    return Comment(
        id=int(raw.get("id") or 0),
        body=str(raw.get("body") or ""),
        author=str(user.get("login") or ""),
        author_type=user.get("type"),
    )


def _raw(obj: Any) -> dict[str, Any]:
    """The JSON GitHub sent, without PyGithub's lazy completion (one GET per item)."""
    raw = getattr(obj, "_rawData", None)
    return raw if isinstance(raw, dict) else {}


def _parse_time(value: object) -> datetime | None:
    """GitHub's ``2026-12-01T09:00:00Z`` (or None)."""
    if not isinstance(value, str) or not value:
        return None
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _pull_info(pr: Any) -> PullRequestInfo:
    raw = _raw(pr)
    user = raw.get("user") or {}
    return PullRequestInfo(
        number=int(raw["number"]),
        author=str(user.get("login", "")),
        author_type=str(user.get("type", "User")),
        head_sha=str((raw.get("head") or {}).get("sha", "")),
        base_sha=str((raw.get("base") or {}).get("sha", "")),
        base_ref=str((raw.get("base") or {}).get("ref", "")),
        state=str(raw.get("state", "")),
        merged_at=_parse_time(raw.get("merged_at")),
        merge_commit_sha=raw.get("merge_commit_sha"),
        base_default_branch=str(
            ((raw.get("base") or {}).get("repo") or {}).get("default_branch") or ""
        ),
        requested_reviewers=_names(raw.get("requested_reviewers"), "login"),
        requested_teams=_names(raw.get("requested_teams"), "slug"),
    )


def _names(items: object, key: str) -> tuple[str, ...]:
    """``key`` of each object in a JSON list (logins of users, slugs of teams)."""
    rows = items if isinstance(items, list) else []
    return tuple(str(r[key]) for r in rows if isinstance(r, dict) and r.get(key))


def _review(r: Any) -> Review:
    raw = _raw(r)
    user = raw.get("user") or {}
    return Review(
        id=int(raw.get("id", 0)),
        login=str(user.get("login", "")),
        state=str(raw.get("state", "")),
        commit_id=raw.get("commit_id"),
        submitted_at=_parse_time(raw.get("submitted_at")),
        user_type=str(user.get("type", "User")),
    )
