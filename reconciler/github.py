"""The PyGithub adapter: the few GitHub calls accessctl makes, with retries and a counter.

Built from ``GITHUB_API_URL`` / ``GITHUB_TOKEN`` / ``GITHUB_REPOSITORY``. Every method
returns plain values (never PyGithub objects), so callers and the core stay SDK-free.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from reconciler.core.reviews import Review
from reconciler.errors import ConfigError, GitHubError

DEFAULT_API_URL = "https://api.github.com"
T = TypeVar("T")


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


@dataclass(frozen=True)
class ChangedFile:
    """One entry of ``pulls/{n}/files``; ``previous`` is set for renames."""

    path: str
    status: str  # added | removed | modified | renamed | copied | changed | unchanged
    previous: str | None = None
    blob: str | None = None  # blob SHA of the file at the PR's head, when GitHub gives it


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    author: str
    author_type: str | None


class GitHubClient:
    """One repository on one GitHub API endpoint."""

    def __init__(
        self,
        api_url: str,
        token: str,
        repository: str,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        secondary_rate_wait: float = 60.0,
        timeout: int = 20,
    ) -> None:
        from github import Auth, Github, GithubRetry

        if repository.count("/") != 1 or not all(repository.split("/")):
            raise ConfigError(f"GITHUB_REPOSITORY must be OWNER/NAME, got {repository!r}")
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        self.calls = 0
        retry = GithubRetry(
            total=retries,
            backoff_factor=backoff,
            secondary_rate_wait=secondary_rate_wait,
            max_rate_limit_wait=max(secondary_rate_wait, 300.0),
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
        return cls(env.get("GITHUB_API_URL") or DEFAULT_API_URL, token, repository)

    def _install_counter(self) -> None:
        """Count every HTTP response (each page of a list is one call)."""
        requester = self._gh.requester
        connect = requester._Requester__createConnection  # type: ignore[attr-defined]

        def count(response: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return response

        try:
            session = connect().session
            session.hooks.setdefault("response", []).append(count)
        except AttributeError:  # a PyGithub without this internals: counting is best effort
            pass

    # ------------------------------------------------------------------ calls
    def _call(self, what: str, fn: Callable[[], T]) -> T:
        from github import GithubException

        try:
            return fn()
        except GithubException as exc:
            message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
            if exc.status == 401:  # a wrong or expired token is configuration, not an outage
                raise ConfigError(
                    f"GitHub rejected the token (401: {message}) while {what}"
                ) from None
            raise GitHubError(f"GitHub: {what} failed ({exc.status}: {message})") from None
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

    def upsert_comment(self, number: int, marker: str, body: str) -> int:
        """Update the comment that starts with ``marker``, or create it; returns its id.

        Comments by bots (ours is github-actions[bot]) are tried first; a person's comment
        that copies the marker is overwritten with the real report where GitHub allows,
        so a forged verdict never stands next to ours. If no edit is allowed, a new comment
        is written rather than failing.
        """
        from github import GithubException

        issue = self._repo.get_issue(number)
        listed = self._call(
            f"listing the comments of #{number}", lambda: [_raw(c) for c in issue.get_comments()]
        )
        marked = [c for c in listed if str(c.get("body") or "").lstrip().startswith(marker)]
        marked.sort(key=lambda c: not _is_bot(c.get("user")))
        for comment in marked[:3]:
            comment_id = int(comment["id"])
            # PATCH by id rather than trusting the comment's own ``url`` field.
            url = f"{self._repo.url}/issues/comments/{comment_id}"
            try:
                self._gh.requester.requestJsonAndCheck("PATCH", url, input={"body": body})
                return comment_id
            except GithubException as exc:
                if exc.status not in (403, 404):
                    raise GitHubError(f"GitHub: editing comment {comment_id} failed") from None
        created = self._call(f"commenting on #{number}", lambda: issue.create_comment(body))
        return int(_raw(created).get("id") or created.id)

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


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _raw(obj: Any) -> dict[str, Any]:
    """The JSON GitHub sent, without PyGithub's lazy completion (one GET per item)."""
    raw = getattr(obj, "_rawData", None)
    return raw if isinstance(raw, dict) else {}


def _is_bot(user: object) -> bool:
    if not isinstance(user, dict):
        return False
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


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
    )


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
