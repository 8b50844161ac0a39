"""A GitHub REST API emulator: a real HTTP server for the endpoints accessctl calls.

It speaks GitHub's JSON shapes, ``Link``-header pagination, token auth and error bodies,
so PyGithub talks to it exactly as it talks to api.github.com. A Python API seeds repos,
pull requests, reviews and merges; counters tell how many calls each route received.

Tokens behave like GitHub's two kinds: the default one is an installation token (Actions'
``GITHUB_TOKEN``): ``GET /user`` answers 403 "Resource not accessible by integration" and what
it writes is authored by ``github-actions[bot]``; ``add_token`` adds a person's token (``GET
/user`` answers its login) or another app's installation token. Requests may pin a REST API
version (``X-GitHub-Api-Version``); an unknown one is refused with 400, as GitHub does.

Review requests behave as on GitHub: ``POST/GET/DELETE pulls/{n}/requested_reviewers``
refuse the author and anyone who is not a collaborator (422; every login is a collaborator
until ``add_collaborator`` names some, a team only after ``add_team``), each request and
removal is an event of the issue (``GET issues/{n}/events``), and a submitted review takes
its author off the requested reviewers.

``attach_git`` backs a repository with a real bare repository (the test's ``origin``): the
Git database endpoints write their objects there, commit listings read what was pushed, and
commits GitHub would sign are signed (``github_git``). A pull request's commits
(``pulls/{n}/commits``) are then the commits between its base and head, and a commit's
detail (``commits/{sha}``) lists the files it changes. ``add_signing_key`` registers a
person's signing key with their account and ``commit`` writes a commit as somebody made and
pushed it: unsigned, signed with a key (verified when the key is the committer's), or made
in GitHub's web interface (committed by ``web-flow`` and signed by GitHub).

    with GitHubEmulator() as gh:
        gh.add_repo("acme/access")
        n = gh.add_pull("acme/access", author="alice", head_sha=..., base_sha=...,
                        files=[{"filename": "requests/alice/x.yaml", "status": "added"}])
        gh.add_review("acme/access", n, "dave", "APPROVED")
        os.environ["GITHUB_API_URL"] = gh.url
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from reconciler import git
from reconciler.sandbox.github_git import (
    GITHUB_COMMITTER,
    GitDatabase,
    GitDatabaseError,
    Person,
    StoredCommit,
    account_of,
    noreply_email,
)

Json = dict[str, Any]
DEFAULT_TOKEN = "emulator-token"  # noqa: S105 - a test credential, not a secret
ACTIONS_BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}
DEFAULT_API_VERSION = "2022-11-28"  # what GitHub assumes when a request names none
API_VERSIONS = ("2022-11-28", "2026-03-10")  # the REST API versions GitHub serves
COMMENT_LIMIT = 65_536  # GitHub's maximum comment body, in characters
INTEGRATION_REFUSAL = "Resource not accessible by integration"
MAX_PULL_COMMITS = 250  # GitHub lists at most this many commits of a pull request
MAX_REVIEW_REQUESTS = 15  # requested reviewers GitHub keeps on a pull request
REVIEW_REQUESTS_DOC = (
    "https://docs.github.com/rest/pulls/review-requests#request-reviewers-for-a-pull-request"
)
ACTIONS_APP = {
    "id": 15368,
    "slug": "github-actions",
    "node_id": "MDM6QXBwMTUzNjg=",
    "name": "GitHub Actions",
    "owner": {"login": "github", "id": 9919, "type": "Organization"},
}


def _stamp(when: datetime | None) -> str | None:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None


def _user(login: str, user_type: str | None = None) -> Json:
    kind = user_type or ("Bot" if login.endswith("[bot]") else "User")
    return {"login": login, "id": abs(hash(login)) % 10**8, "type": kind}


@dataclass
class Token:
    """Who a token acts as: ``user`` authors what it writes. ``integration`` marks an
    installation token (Actions' ``GITHUB_TOKEN``, a GitHub App's), refused on ``GET /user``."""

    user: Json
    integration: bool = False


@dataclass(frozen=True)
class Call:
    """One routed request: path parameters, query, JSON body, its token, its API version."""

    params: Json
    query: Json
    body: Json
    caller: Token
    version: str = DEFAULT_API_VERSION


@dataclass
class PullState:
    number: int
    author: Json
    head_sha: str
    base_sha: str
    base_ref: str = "main"
    head_ref: str = "request"
    title: str = "Access request"
    state: str = "open"
    files: list[Json] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)  # every head commit the PR carried
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    main_commits: list[str] = field(default_factory=list)  # commits it put on the base branch
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    requested_reviewers: list[Json] = field(default_factory=list)  # users asked, still open
    requested_teams: list[Json] = field(default_factory=list)  # teams asked, still open


@dataclass
class RepoState:
    full_name: str
    id: int
    owner_id: int
    default_branch: str = "main"
    pulls: dict[int, PullState] = field(default_factory=dict)
    reviews: dict[int, list[Json]] = field(default_factory=dict)
    comments: dict[int, Json] = field(default_factory=dict)  # comment id -> comment
    statuses: dict[str, list[Json]] = field(default_factory=dict)  # sha -> newest last
    issues: dict[int, Json] = field(default_factory=dict)  # number -> issue (not pulls)
    git: GitDatabase | None = None  # the repository's objects and refs (attach_git)
    events: dict[int, list[Json]] = field(default_factory=dict)  # issue/PR number -> events
    collaborators: set[str] | None = None  # lowercased logins; None: everybody
    teams: dict[str, Json] = field(default_factory=dict)  # slug -> team with access
    workflow_runs: list[Json] = field(default_factory=list)  # Actions runs, oldest first


class GitHubEmulator:
    """The server and its state; thread-safe; ``url`` is the API base (GITHUB_API_URL)."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, max_per_page: int = 100) -> None:
        self.token = token
        self.tokens: dict[str, Token] = {token: Token(dict(ACTIONS_BOT), integration=True)}
        self.max_per_page = max_per_page
        self.repos: dict[str, RepoState] = {}
        self.emails: dict[str, Json] = {}  # verified e-mail address -> the account it belongs to
        self.signing_keys: dict[str, bytes] = {}  # lowercased login -> its registered key
        self.calls: Counter[str] = Counter()  # "GET /repos/{o}/{r}/pulls/{n}" -> count
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.api_versions: Counter[str] = Counter()  # X-GitHub-Api-Version sent ("" if none)
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()
        self._request = threading.local()  # the token and API version of the request served
        self._faults: list[tuple[re.Pattern[str], int, Json, dict[str, str]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> str:
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GitHubEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "emulator not started"
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    @property
    def identity(self) -> Json:
        """Who the default token is (the author of what it writes)."""
        return self.tokens[self.token].user

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self.log.clear()
            self.api_versions.clear()

    # ----------------------------------------------------------------- seeding
    def add_repo(self, full_name: str, default_branch: str = "main") -> RepoState:
        with self._lock:
            repo = RepoState(full_name, next(self._ids), next(self._ids), default_branch)
            self.repos[full_name] = repo
            return repo

    def add_workflow_run(
        self,
        full_name: str,
        workflow: str,
        *,
        branch: str,
        started_at: str,
        conclusion: str | None = "success",
        event: str = "schedule",
    ) -> Json:
        """A GitHub Actions run of ``.github/workflows/<workflow>``: ``conclusion`` None is
        a run still in progress."""
        with self._lock:
            repo = self.repos[full_name]
            run = {
                "id": next(self._ids),
                "name": workflow.rsplit(".", 1)[0],
                "path": f".github/workflows/{workflow}",
                "head_branch": branch,
                "event": event,
                "status": "completed" if conclusion else "in_progress",
                "conclusion": conclusion,
                "created_at": started_at,
                "run_started_at": started_at,
                "updated_at": started_at,
            }
            repo.workflow_runs.append(run)
            return run

    def attach_git(self, full_name: str, path: Path) -> GitDatabase:
        """Back ``full_name``'s Git database and commit endpoints with the bare repository at
        ``path`` (the test's ``origin``): what the API writes, ``git fetch`` brings, and what
        ``git push`` sends, the API lists."""
        with self._lock:
            database = GitDatabase(path)
            self.repos[full_name].git = database
            return database

    def add_email(self, email: str, login: str, user_type: str | None = None) -> None:
        """``email`` is a verified address of ``login``: commits carrying it are theirs."""
        with self._lock:
            self.emails[email.lower()] = _user(login, user_type)

    def add_signing_key(self, login: str) -> None:
        """``login`` registers a signing key with their account (GitHub's GPG or SSH signing
        keys; here an HMAC key): commits they sign with it verify when they committed them."""
        with self._lock:
            self.signing_keys.setdefault(login.lower(), secrets.token_bytes(32))

    def commit(
        self,
        repo: str,
        *,
        parent: str,
        files: Mapping[str, str | None],
        author: str,
        committer: str | None = None,
        signed_by: str | None = None,
        web: bool = False,
        message: str = "change",
        when: datetime | None = None,
    ) -> str:
        """A commit on ``parent`` as somebody made it and pushed it (``files``: path ->
        content, None deletes); returns its SHA. ``author``/``committer`` are logins (their
        no-reply addresses, so GitHub attributes the commit to those accounts; the committer
        defaults to the author). ``signed_by``: signed with that login's registered key, or
        with a key nobody registered when they have none (GitHub cannot verify it). ``web``:
        made in GitHub's web interface: committed by ``web-flow`` and signed by GitHub."""
        with self._lock:
            database = self.repos[repo].git
            assert database is not None, "commit needs attach_git"
            now = (when or datetime.now(UTC)).replace(microsecond=0)
            by = Person(author, noreply_email(_user(author)), now)
            made = (
                Person(*GITHUB_COMMITTER, now)
                if web
                else Person(committer or author, noreply_email(_user(committer or author)), now)
            )
            [base] = database.read_commits([parent])
            entries: list[Json] = [
                {"path": path, "mode": "100644", "type": "blob"}
                | ({"content": text} if text is not None else {"sha": None})
                for path, text in files.items()
            ]
            tree = database.write_tree(base.tree, entries)
            shape: Json = {
                "tree": tree,
                "parents": [parent],
                "message": message,
                "author": by,
                "committer": made,
            }
            sha = database.write_commit(**shape, sign=web)
            if signed_by is None or web:
                return sha
            [unsigned] = database.read_commits([sha])
            key = self.signing_keys.get(signed_by.lower()) or secrets.token_bytes(32)
            return database.write_commit(
                **shape, sign=False, signature=_signature(key, unsigned.payload)
            )

    def add_token(
        self, token: str, login: str, *, integration: bool = False, user_type: str | None = None
    ) -> None:
        """Another credential: a person's token (``GET /user`` answers ``login``) or, with
        ``integration``, an installation token whose writes ``login`` (``app[bot]``) authors."""
        with self._lock:
            self.tokens[token] = Token(_user(login, user_type), integration)

    def add_collaborator(self, repo: str, *logins: str) -> None:
        """``logins`` are collaborators of ``repo``; from the first call on, nobody else is."""
        with self._lock:
            state = self.repos[repo]
            state.collaborators = (state.collaborators or set()) | {x.lower() for x in logins}

    def add_team(self, repo: str, slug: str, *members: str) -> Json:
        """A team of ``repo``'s owner with access to it, holding ``members`` (who then are
        collaborators too). Only such a team can be asked for a review."""
        with self._lock:
            state = self.repos[repo]
            owner = state.full_name.split("/")[0]
            team_id = next(self._ids)
            team = {
                "id": team_id,
                "node_id": f"T_{team_id}",
                "url": f"{self.url}/organizations/{state.owner_id}/team/{team_id}",
                "html_url": f"https://github.example/orgs/{owner}/teams/{slug}",
                "name": slug,
                "slug": slug.lower(),
                "description": None,
                "privacy": "closed",
                "notification_setting": "notifications_enabled",
                "permission": "push",
                "members_url": f"{self.url}/organizations/{state.owner_id}/team/{team_id}/members{{/member}}",
                "repositories_url": f"{self.url}/organizations/{state.owner_id}/team/{team_id}/repos",
                "parent": None,
                "_members": [m.lower() for m in members],
            }
            state.teams[slug.lower()] = team
            if state.collaborators is not None:
                state.collaborators |= {m.lower() for m in members}
            return _public(team)

    def add_pull(
        self,
        repo: str,
        *,
        author: str,
        head_sha: str,
        base_sha: str,
        files: list[Json] | None = None,
        base_ref: str | None = None,
        title: str = "Access request",
        author_type: str | None = None,
    ) -> int:
        """Open a pull request; ``files`` are GitHub file entries (filename, status,
        previous_filename for renames)."""
        with self._lock:
            state = self.repos[repo]
            number = max(state.pulls, default=0) + 1
            state.pulls[number] = PullState(
                number,
                _user(author, author_type),
                head_sha,
                base_sha,
                base_ref or state.default_branch,
                title=title,
                files=[_file_entry(f) for f in files or []],
                commits=[head_sha],
            )
            state.reviews[number] = []
            return number

    def push(self, repo: str, number: int, head_sha: str, files: list[Json] | None = None) -> None:
        """A new commit on the PR's head branch."""
        with self._lock:
            pull = self.repos[repo].pulls[number]
            pull.head_sha = head_sha
            pull.commits.append(head_sha)
            if files is not None:
                pull.files = [_file_entry(f) for f in files]
            pull.updated_at = datetime.now(UTC)

    def add_review(
        self,
        repo: str,
        number: int,
        login: str,
        state: str,
        *,
        commit_id: str | None = None,
        user_type: str | None = None,
        submitted_at: datetime | None = None,
        body: str = "",
    ) -> int:
        with self._lock:
            pull = self.repos[repo].pulls[number]
            review_id = next(self._ids)
            if state != "PENDING":  # a submitted review answers the request (GitHub's rule)
                pull.requested_reviewers = [
                    u for u in pull.requested_reviewers if u["login"].lower() != login.lower()
                ]
            self.repos[repo].reviews[number].append(
                {
                    "id": review_id,
                    "user": _user(login, user_type),
                    "body": body,
                    "state": state,
                    "commit_id": commit_id or pull.head_sha,
                    "submitted_at": _stamp(submitted_at or datetime.now(UTC)),
                    "author_association": "MEMBER",
                }
            )
            return review_id

    def dismiss_review(
        self, repo: str, number: int, review_id: int, *, by: str = "admin", message: str = ""
    ) -> None:
        with self._lock:
            state = self.repos[repo]
            for review in state.reviews[number]:
                if review["id"] == review_id:
                    before = review["state"]
                    review["state"] = "DISMISSED"
                    dismissed = {
                        "state": before.lower(),
                        "review_id": review_id,
                        "dismissal_message": message or None,
                        "dismissal_commit_id": None,
                    }
                    _add_event(
                        self,
                        state,
                        number,
                        "review_dismissed",
                        Token(_user(by)),
                        dismissed_review=dismissed,
                    )

    def add_comment(
        self, repo: str, number: int, body: str, *, login: str, user_type: str | None = None
    ) -> int:
        """A comment somebody else wrote on issue/PR ``number``; returns its id."""
        with self._lock:
            return _store_comment(self, self.repos[repo], number, body, _user(login, user_type))

    def merge(
        self,
        repo: str,
        number: int,
        *,
        merge_commit_sha: str,
        main_commits: list[str] | None = None,
        merged_at: datetime | None = None,
    ) -> None:
        """Merge: ``merge_commit_sha`` is the merge/squash commit (or the last rebased
        commit); ``main_commits`` every commit the merge put on the base branch."""
        with self._lock:
            pull = self.repos[repo].pulls[number]
            pull.state = "closed"
            pull.merged_at = merged_at or datetime.now(UTC)
            pull.merge_commit_sha = merge_commit_sha
            pull.main_commits = list(main_commits or [merge_commit_sha])
            pull.updated_at = pull.merged_at

    def close(self, repo: str, number: int) -> None:
        with self._lock:
            self.repos[repo].pulls[number].state = "closed"

    def fail(
        self,
        pattern: str,
        status: int = 502,
        *,
        times: int = 1,
        message: str = "Server Error",
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` requests whose ``METHOD /path`` matches ``pattern`` fail."""
        with self._lock:
            for _ in range(times):
                self._faults.append(
                    (re.compile(pattern), status, {"message": message}, headers or {})
                )

    def secondary_rate_limit(self, pattern: str, *, times: int = 1) -> None:
        self.fail(
            pattern,
            403,
            times=times,
            message="You have exceeded a secondary rate limit. Please wait a few minutes.",
            headers={"Retry-After": "0"},
        )

    def rate_limit(
        self,
        pattern: str,
        *,
        times: int = 1,
        status: int = 429,
        retry_after: str | None = "0",
        reset: int | None = None,
    ) -> None:
        """The next ``times`` matching requests are rate limited, as GitHub answers: with
        ``Retry-After`` seconds and/or (``reset``, epoch seconds) ``x-ratelimit-remaining: 0``
        and ``x-ratelimit-reset``."""
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        if reset is not None:
            headers |= {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        primary = reset is not None and retry_after is None
        message = (
            "API rate limit exceeded for installation ID 1."
            if primary
            else "You have exceeded a secondary rate limit. Please wait a few minutes."
        )
        self.fail(pattern, status, times=times, message=message, headers=headers)

    # ----------------------------------------------------------------- queries
    def comments(self, repo: str, number: int) -> list[Json]:
        with self._lock:
            items = self.repos[repo].comments.values()
            return [c for c in items if c["_issue"] == number]

    def statuses(self, repo: str, sha: str) -> list[Json]:
        with self._lock:
            return list(self.repos[repo].statuses.get(sha, []))

    def requested_reviewers(self, repo: str, number: int) -> tuple[list[str], list[str]]:
        """(logins, team slugs) whose review is requested now on pull request ``number``."""
        with self._lock:
            pull = self.repos[repo].pulls[number]
            return (
                [u["login"] for u in pull.requested_reviewers],
                [t["slug"] for t in pull.requested_teams],
            )

    def events(self, repo: str, number: int) -> list[Json]:
        with self._lock:
            return [dict(e) for e in self.repos[repo].events.get(number, [])]

    def latest_status(self, repo: str, sha: str, context: str) -> Json | None:
        found = [s for s in self.statuses(repo, sha) if s["context"] == context]
        return found[-1] if found else None

    # ----------------------------------------------------------------- serving
    def take_fault(self, key: str) -> tuple[int, Json, dict[str, str]] | None:
        with self._lock:
            for i, (pattern, status, body, headers) in enumerate(self._faults):
                if pattern.search(key):
                    del self._faults[i]
                    return status, body, headers
        return None

    def route(self, method: str, path: str, query: dict[str, str], body: Json | None) -> Reply:
        """Serve one request as the token and API version of the request being handled."""
        caller = getattr(self._request, "caller", None) or self.tokens[self.token]
        version = getattr(self._request, "version", DEFAULT_API_VERSION)
        for verb, regex, name, fn in _USER_ROUTES:
            if verb == method and regex.fullmatch(path):
                with self._lock:
                    self.calls[f"{method} {name}"] += 1
                    return fn(self, Call({}, query, body or {}, caller, version))
        for verb, regex, name, handler in _ROUTES:
            m = regex.fullmatch(path)
            if verb == method and m:
                with self._lock:
                    self.calls[f"{method} {name}"] += 1
                    repo = self.repos.get(f"{m['owner']}/{m['repo']}")
                    if repo is None:
                        return Reply(404, {"message": "Not Found"})
                    return handler(
                        self, repo, Call(m.groupdict(), query, body or {}, caller, version)
                    )
        with self._lock:
            self.calls[f"{method} {path}"] += 1
        return Reply(404, {"message": "Not Found"})

    def api(self, repo: RepoState, suffix: str = "") -> str:
        return f"{self.url}/repos/{repo.full_name}{suffix}"


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _file_entry(entry: Json) -> Json:
    # "sha" (the blob at head) only when the test gives it, as GitHub always would.
    out = {"additions": 1, "deletions": 0, "changes": 1, "status": "modified"}
    out.update(entry)
    return out


# --------------------------------------------------------------------- JSON shapes
def _repo_json(emu: GitHubEmulator, repo: RepoState) -> Json:
    owner, name = repo.full_name.split("/")
    return {
        "id": repo.id,
        "name": name,
        "full_name": repo.full_name,
        "owner": {"login": owner, "id": repo.owner_id, "type": "Organization"},
        "default_branch": repo.default_branch,
        "private": True,
        "url": emu.api(repo),
    }


def _pull_json(
    emu: GitHubEmulator, repo: RepoState, pull: PullState, version: str = DEFAULT_API_VERSION
) -> Json:
    shape = {
        "id": repo.id * 1000 + pull.number,
        "number": pull.number,
        "url": emu.api(repo, f"/pulls/{pull.number}"),
        "html_url": f"https://github.example/{repo.full_name}/pull/{pull.number}",
        "issue_url": emu.api(repo, f"/issues/{pull.number}"),
        "state": pull.state,
        "title": pull.title,
        "user": pull.author,
        "head": {"sha": pull.head_sha, "ref": pull.head_ref, "repo": _repo_json(emu, repo)},
        "base": {"sha": pull.base_sha, "ref": pull.base_ref, "repo": _repo_json(emu, repo)},
        "merged": pull.merged_at is not None,
        "merged_at": _stamp(pull.merged_at),
        "merge_commit_sha": pull.merge_commit_sha,
        "closed_at": _stamp(pull.merged_at) if pull.state == "closed" else None,
        "updated_at": _stamp(pull.updated_at),
        "requested_reviewers": [dict(u) for u in pull.requested_reviewers],
        "requested_teams": [_public(t) for t in pull.requested_teams],
    }
    if version >= "2026-03-10":  # that version drops merge_commit_sha from every pull
        del shape["merge_commit_sha"]
    return shape


def _comment_json(comment: Json) -> Json:
    return {k: v for k, v in comment.items() if not k.startswith("_")}


def _store_comment(emu: GitHubEmulator, repo: RepoState, number: int, body: str, user: Json) -> int:
    cid = next(emu._ids)
    now = _stamp(datetime.now(UTC))
    repo.comments[cid] = {
        "id": cid,
        "url": emu.api(repo, f"/issues/comments/{cid}"),
        "issue_url": emu.api(repo, f"/issues/{number}"),
        "body": body,
        "user": dict(user),
        "author_association": "NONE" if user.get("type") == "Bot" else "MEMBER",
        "created_at": now,
        "updated_at": now,
        "_issue": number,
    }
    return cid


# --------------------------------------------------------------------- handlers
_NOT_FOUND = {"message": "Not Found"}


def _page(emu: GitHubEmulator, items: list[Any], query: dict[str, str], url: str) -> Reply:
    """GitHub's pagination: ``per_page`` (default 30, max 100), ``page``, Link header."""
    try:
        per_page = min(max(int(query.get("per_page", 30)), 1), emu.max_per_page)
        page = max(int(query.get("page", 1)), 1)
    except ValueError:
        return Reply(422, {"message": "Validation Failed"})
    last = max((len(items) + per_page - 1) // per_page, 1)
    chunk = items[(page - 1) * per_page : page * per_page]
    links = []
    for rel, target in (("prev", page - 1), ("next", page + 1), ("first", 1), ("last", last)):
        if 1 <= target <= last and target != page:
            params = {**query, "per_page": str(per_page), "page": str(target)}
            links.append(f'<{url}?{urlencode(params)}>; rel="{rel}"')
    return Reply(200, chunk, {"Link": ", ".join(links)} if links else {})


def _too_long(body: object) -> Reply | None:
    """GitHub's answer to a comment body that is missing or over its size limit."""
    if not isinstance(body, str):
        return Reply(422, {"message": "Validation Failed"})
    if len(body) > COMMENT_LIMIT:
        error = {
            "resource": "IssueComment",
            "code": "custom",
            "field": "body",
            "message": f"body is too long (maximum is {COMMENT_LIMIT} characters)",
        }
        return Reply(422, {"message": "Validation Failed", "errors": [error]})
    return None


def get_user(emu: GitHubEmulator, call: Call) -> Reply:
    """``GET /user``: the token's own account; installation tokens are refused (403)."""
    if call.caller.integration:
        return Reply(
            403,
            {
                "message": INTEGRATION_REFUSAL,
                "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
                "status": "403",
            },
        )
    return Reply(200, {**call.caller.user, "user_view_type": "public"})


def get_repo(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    return Reply(200, _repo_json(emu, repo))


_RUN_STATUSES = frozenset({"completed", "in_progress", "queued", "requested", "waiting"})


def list_workflow_runs(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """``GET /repos/{o}/{r}/actions/workflows/{workflow_id}/runs``: the workflow by file
    name; ``branch``, ``event`` and ``status`` (a status, or a conclusion such as
    ``success``) filter; newest first; ``{"total_count", "workflow_runs"}``."""
    wanted = f".github/workflows/{call.params['wf']}"
    runs = [r for r in repo.workflow_runs if r["path"] == wanted]
    if not runs:
        return Reply(404, _NOT_FOUND)
    if "branch" in call.query:
        runs = [r for r in runs if r["head_branch"] == call.query["branch"]]
    if "event" in call.query:
        runs = [r for r in runs if r["event"] == call.query["event"]]
    status = call.query.get("status")
    if status:
        key = "status" if status in _RUN_STATUSES else "conclusion"
        runs = [r for r in runs if r[key] == status]
    runs = sorted(runs, key=lambda r: (r["run_started_at"], r["id"]), reverse=True)
    per_page = min(int(call.query.get("per_page", 30)), emu.max_per_page)
    page = int(call.query.get("page", 1))
    chunk = runs[(page - 1) * per_page : page * per_page]
    return Reply(200, {"total_count": len(runs), "workflow_runs": chunk})


def get_pull(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    pull = repo.pulls.get(int(call.params["n"]))
    if pull is None:
        return Reply(404, _NOT_FOUND)
    return Reply(200, _pull_json(emu, repo, pull, call.version))


def list_pulls(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    q = call.query
    state = q.get("state", "open")
    pulls = [p for p in repo.pulls.values() if state in ("all", p.state)]
    if q.get("base"):
        pulls = [p for p in pulls if p.base_ref == q["base"]]
    key = (lambda p: p.updated_at) if q.get("sort") == "updated" else (lambda p: p.number)
    pulls.sort(key=key, reverse=q.get("direction", "desc") == "desc")
    items = [_pull_json(emu, repo, p, call.version) for p in pulls]
    return _page(emu, items, q, emu.api(repo, "/pulls"))


def pull_files(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    pull = repo.pulls.get(int(call.params["n"]))
    if pull is None:
        return Reply(404, _NOT_FOUND)
    return _page(emu, list(pull.files), call.query, emu.api(repo, f"/pulls/{pull.number}/files"))


def pull_reviews(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    pull = repo.pulls.get(int(call.params["n"]))
    if pull is None:
        return Reply(404, _NOT_FOUND)
    items = [dict(r) for r in repo.reviews[pull.number]]
    return _page(emu, items, call.query, emu.api(repo, f"/pulls/{pull.number}/reviews"))


def list_comments(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    number = int(call.params["n"])
    if number not in repo.pulls and number not in repo.issues:
        return Reply(404, _NOT_FOUND)
    items = [_comment_json(c) for c in repo.comments.values() if c["_issue"] == number]
    return _page(emu, items, call.query, emu.api(repo, f"/issues/{number}/comments"))


def create_comment(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    number = int(call.params["n"])
    if number not in repo.pulls and number not in repo.issues:
        return Reply(404, _NOT_FOUND)
    refused = _too_long(call.body.get("body"))
    if refused:
        return refused
    cid = _store_comment(emu, repo, number, call.body["body"], call.caller.user)
    return Reply(201, _comment_json(repo.comments[cid]))


def edit_comment(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """Any token with write access may edit any comment on GitHub, not only its own: the
    client, not GitHub, must keep its hands off other people's comments."""
    comment = repo.comments.get(int(call.params["id"]))
    if comment is None:
        return Reply(404, _NOT_FOUND)
    refused = _too_long(call.body.get("body"))
    if refused:
        return refused
    comment["body"] = call.body["body"]
    comment["updated_at"] = _stamp(datetime.now(UTC))
    comment["_edited_by"] = call.caller.user["login"]
    return Reply(200, _comment_json(comment))


def _issue_json(issue: Json) -> Json:
    return {k: v for k, v in issue.items() if not k.startswith("_")}


def create_issue(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """Issues number after pull requests (from 1000 here, so add_pull never collides)."""
    title = call.body.get("title")
    if not isinstance(title, str) or not title:
        return Reply(422, {"message": "Validation Failed"})
    refused = _too_long(call.body.get("body", ""))
    if refused:
        return refused
    number = max([999, *repo.issues, *repo.pulls]) + 1
    labels = [{"name": str(n)} for n in call.body.get("labels") or []]
    now = _stamp(datetime.now(UTC))
    repo.issues[number] = {
        "number": number,
        "url": emu.api(repo, f"/issues/{number}"),
        "title": title,
        "body": call.body.get("body", ""),
        "state": "open",
        "state_reason": None,
        "labels": labels,
        "user": dict(call.caller.user),
        "created_at": now,
        "updated_at": now,
        "closed_at": None,
    }
    return Reply(201, _issue_json(repo.issues[number]))


def list_issues(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """``state`` (open, closed, all) and ``labels`` (comma-separated, all must match)."""
    state = call.query.get("state", "open")
    wanted = {x for x in call.query.get("labels", "").split(",") if x}
    items = [
        _issue_json(i)
        for _, i in sorted(repo.issues.items())
        if state in ("all", i["state"]) and wanted <= {lab["name"] for lab in i["labels"]}
    ]
    return _page(emu, items, call.query, emu.api(repo, "/issues"))


def get_issue(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    issue = repo.issues.get(int(call.params["n"]))
    return Reply(200, _issue_json(issue)) if issue else Reply(404, _NOT_FOUND)


def edit_issue(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    issue = repo.issues.get(int(call.params["n"]))
    if issue is None:
        return Reply(404, _NOT_FOUND)
    if call.body.get("state") not in (None, "open", "closed"):
        return Reply(422, {"message": "Validation Failed"})
    for key in ("title", "body", "state", "state_reason"):
        if key in call.body:
            issue[key] = call.body[key]
    issue["updated_at"] = _stamp(datetime.now(UTC))
    issue["closed_at"] = issue["updated_at"] if issue["state"] == "closed" else None
    return Reply(200, _issue_json(issue))


# --------------------------------------------------------------------- review requests
def _public(obj: Json) -> Json:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _add_event(
    emu: GitHubEmulator, repo: RepoState, number: int, kind: str, caller: Token, **extra: Any
) -> None:
    """An issue event as ``GET issues/{n}/events`` lists it (review-requested-issue-event and
    its siblings in GitHub's REST description)."""
    event_id = next(emu._ids)
    repo.events.setdefault(number, []).append(
        {
            "id": event_id,
            "node_id": f"IE_{event_id}",
            "url": emu.api(repo, f"/issues/events/{event_id}"),
            "actor": dict(caller.user),
            "event": kind,
            "commit_id": None,
            "commit_url": None,
            "created_at": _stamp(datetime.now(UTC)),
            "performed_via_github_app": dict(ACTIONS_APP) if caller.integration else None,
            **extra,
        }
    )


def _review_request_body(
    call: Call, required: tuple[str, ...]
) -> tuple[list[str], list[str]] | Reply:
    """``reviewers`` and ``team_reviewers`` of a request body, or GitHub's 422."""
    users, teams = call.body.get("reviewers", []), call.body.get("team_reviewers", [])
    shaped = all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (users, teams))
    if not shaped or not any(k in call.body for k in required):
        return Reply(
            422,
            {
                "message": 'Invalid request.\n\nNo subschema in "anyOf" matched.',
                "documentation_url": REVIEW_REQUESTS_DOC,
            },
        )
    return users, teams


def request_reviewers(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """201 with the pull request; 422 for its author, for anyone who is not a collaborator
    or a team without access (then nobody is asked), and past GitHub's limit."""
    pull = repo.pulls.get(int(call.params["n"]))
    if pull is None:
        return Reply(404, _NOT_FOUND)
    body = _review_request_body(call, ("reviewers", "team_reviewers"))
    if isinstance(body, Reply):
        return body
    users, teams = body
    if any(u.lower() == pull.author["login"].lower() for u in users):
        message = "Review cannot be requested from pull request author."
        return Reply(422, {"message": message, "documentation_url": REVIEW_REQUESTS_DOC})
    strangers = [
        u for u in users if repo.collaborators is not None and u.lower() not in repo.collaborators
    ]
    if strangers or any(t.lower() not in repo.teams for t in teams):
        message = (
            "Reviews may only be requested from collaborators. One or more of the users or "
            f"teams you specified is not a collaborator of the {repo.full_name} repository."
        )
        return Reply(422, {"message": message, "documentation_url": REVIEW_REQUESTS_DOC})
    open_users = {u["login"].lower() for u in pull.requested_reviewers}
    open_teams = {t["slug"] for t in pull.requested_teams}
    new_users = list(dict.fromkeys(u for u in users if u.lower() not in open_users))
    new_teams = list(dict.fromkeys(t.lower() for t in teams if t.lower() not in open_teams))
    if len(open_users) + len(open_teams) + len(new_users) + len(new_teams) > MAX_REVIEW_REQUESTS:
        error = {
            "resource": "PullRequest",
            "code": "custom",
            "field": "reviewers",
            "message": f"You may only request {MAX_REVIEW_REQUESTS} reviewers.",
        }
        return Reply(
            422,
            {
                "message": "Validation Failed",
                "errors": [error],
                "documentation_url": REVIEW_REQUESTS_DOC,
            },
        )
    for login in new_users:
        user = _user(login)
        pull.requested_reviewers.append(user)
        _add_event(
            emu,
            repo,
            pull.number,
            "review_requested",
            call.caller,
            review_requester=dict(call.caller.user),
            requested_reviewer=user,
        )
    for slug in new_teams:
        team = repo.teams[slug]
        pull.requested_teams.append(team)
        _add_event(
            emu,
            repo,
            pull.number,
            "review_requested",
            call.caller,
            review_requester=dict(call.caller.user),
            requested_team=_public(team),
        )
    return Reply(201, _pull_json(emu, repo, pull, call.version))


def list_requested_reviewers(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    pull = repo.pulls.get(int(call.params["n"]))
    if pull is None:
        return Reply(404, _NOT_FOUND)
    users = [dict(u) for u in pull.requested_reviewers]
    return Reply(200, {"users": users, "teams": [_public(t) for t in pull.requested_teams]})


def remove_requested_reviewers(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """200 with the pull request; ``reviewers`` is required (GitHub's REST description)."""
    pull = repo.pulls.get(int(call.params["n"]))
    if pull is None:
        return Reply(404, _NOT_FOUND)
    body = _review_request_body(call, ("reviewers",))
    if isinstance(body, Reply):
        return Reply(
            422, {"message": "Validation Failed", "documentation_url": REVIEW_REQUESTS_DOC}
        )
    users, teams = {u.lower() for u in body[0]}, {t.lower() for t in body[1]}
    for user in [u for u in pull.requested_reviewers if u["login"].lower() in users]:
        pull.requested_reviewers.remove(user)
        _add_event(
            emu,
            repo,
            pull.number,
            "review_request_removed",
            call.caller,
            review_requester=dict(call.caller.user),
            requested_reviewer=user,
        )
    for team in [t for t in pull.requested_teams if t["slug"] in teams]:
        pull.requested_teams.remove(team)
        _add_event(
            emu,
            repo,
            pull.number,
            "review_request_removed",
            call.caller,
            review_requester=dict(call.caller.user),
            requested_team=_public(team),
        )
    return Reply(200, _pull_json(emu, repo, pull, call.version))


def list_issue_events(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """The events of an issue or pull request, oldest first, paginated."""
    number = int(call.params["n"])
    if number not in repo.pulls and number not in repo.issues:
        return Reply(404, _NOT_FOUND)
    items = [dict(e) for e in repo.events.get(number, [])]
    return _page(emu, items, call.query, emu.api(repo, f"/issues/{number}/events"))


_STATUS_STATES = {"error", "failure", "pending", "success"}


def create_status(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    b = call.body
    if b.get("state") not in _STATUS_STATES:
        return Reply(422, {"message": "Validation Failed"})
    if repo.git is not None and repo.git.kind(call.params["sha"]) != "commit":
        return Reply(422, {"message": f"No commit found for SHA: {call.params['sha']}"})
    description = b.get("description")
    if isinstance(description, str) and len(description) > 140:
        return Reply(422, {"message": "description is too long (maximum is 140 characters)"})
    status = {
        "id": next(emu._ids),
        "state": b["state"],
        "description": description,
        "target_url": b.get("target_url"),
        "context": b.get("context") or "default",
        "created_at": _stamp(datetime.now(UTC)),
        "creator": dict(call.caller.user),
    }
    repo.statuses.setdefault(call.params["sha"], []).append(status)
    return Reply(201, status)


def list_statuses(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    sha = call.params["sha"]
    items = list(reversed(repo.statuses.get(sha, [])))  # newest first, as GitHub
    return _page(emu, items, call.query, emu.api(repo, f"/commits/{sha}/statuses"))


def commit_pulls(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """PRs associated with a commit: merged ones that put it on the base branch, and PRs
    whose head branch carries it."""
    sha = call.params["sha"]
    found = [
        p
        for p in repo.pulls.values()
        if sha in p.commits or sha in p.main_commits or sha == p.merge_commit_sha
    ]
    items = [_pull_json(emu, repo, p, call.version) for p in sorted(found, key=lambda p: p.number)]
    return _page(emu, items, call.query, emu.api(repo, f"/commits/{sha}/pulls"))


# --------------------------------------------------------------------- Git database
def _with_git(repo: RepoState, fn: Callable[[GitDatabase], Reply]) -> Reply:
    """Serve from the repository's Git database; GitHub's 409 when there is none."""
    if repo.git is None:
        return Reply(409, {"message": "Git Repository is empty."})
    try:
        return fn(repo.git)
    except GitDatabaseError as exc:
        return Reply(exc.status, {"message": exc.message})


def _user_of(emu: GitHubEmulator, email: str) -> Json | None:
    return account_of(email, emu.emails)


def _person_body(value: object, fallback: Person) -> Person:
    if not isinstance(value, dict):
        return fallback
    when = fallback.when
    if isinstance(value.get("date"), str):
        when = datetime.fromisoformat(value["date"].replace("Z", "+00:00"))
    if not isinstance(value.get("name"), str) or not isinstance(value.get("email"), str):
        raise GitDatabaseError("author and committer need a name and an email")
    return Person(value["name"], value["email"], when)


def _git_commit_json(emu: GitHubEmulator, repo: RepoState, c: StoredCommit) -> Json:
    """A commit as the Git database endpoints show it (``git/commits``)."""
    assert repo.git is not None
    return {
        "sha": c.sha,
        "node_id": f"C_{c.sha[:20]}",
        "url": emu.api(repo, f"/git/commits/{c.sha}"),
        "html_url": f"https://github.example/{repo.full_name}/commit/{c.sha}",
        "author": c.author.json(),
        "committer": c.committer.json(),
        "tree": {"sha": c.tree, "url": emu.api(repo, f"/git/trees/{c.tree}")},
        "message": c.message,
        "parents": [_parent_json(emu, repo, p) for p in c.parents],
        "verification": _verification(emu, repo, c),
    }


def _signature(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode("utf-8"), hashlib.sha256).digest()
    return (
        "-----BEGIN PGP SIGNATURE-----\n\n"
        f"{base64.b64encode(digest).decode()}\n-----END PGP SIGNATURE-----\n"
    )


def _verification(emu: GitHubEmulator, repo: RepoState, c: StoredCommit) -> Json:
    """GitHub's verification of a commit's signature: GitHub's own (``github_git``), or a
    key a person registered, which verifies only when the committer's address belongs to
    that person (``no_user``: to nobody; ``bad_email``: to someone else)."""
    assert repo.git is not None
    signer = next(
        (
            login
            for login, key in emu.signing_keys.items()
            if c.signature and hmac.compare_digest(c.signature, _signature(key, c.payload))
        ),
        None,
    )
    if signer is None:
        return repo.git.verification(c)
    account = _user_of(emu, c.committer.email)
    reason = (
        "no_user"
        if account is None
        else "valid"
        if str(account["login"]).lower() == signer
        else "bad_email"
    )
    return {
        "verified": reason == "valid",
        "reason": reason,
        "signature": c.signature,
        "payload": c.payload,
        "verified_at": c.committer.json()["date"] if reason == "valid" else None,
    }


def _parent_json(emu: GitHubEmulator, repo: RepoState, sha: str) -> Json:
    return {
        "sha": sha,
        "url": emu.api(repo, f"/commits/{sha}"),
        "html_url": f"https://github.example/{repo.full_name}/commit/{sha}",
    }


def _commit_json(emu: GitHubEmulator, repo: RepoState, c: StoredCommit) -> Json:
    """A commit as ``GET /commits`` and ``GET /commits/{ref}`` show it: the git commit plus the
    GitHub accounts its author and committer e-mail addresses belong to."""
    shape = _git_commit_json(emu, repo, c)
    return {
        "sha": c.sha,
        "node_id": shape["node_id"],
        "commit": {
            "author": shape["author"],
            "committer": shape["committer"],
            "message": c.message,
            "tree": shape["tree"],
            "url": shape["url"],
            "comment_count": 0,
            "verification": shape["verification"],
        },
        "url": emu.api(repo, f"/commits/{c.sha}"),
        "html_url": shape["html_url"],
        "comments_url": emu.api(repo, f"/commits/{c.sha}/comments"),
        "author": _user_of(emu, c.author.email),
        "committer": _user_of(emu, c.committer.email),
        "parents": shape["parents"],
    }


def create_blob(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    def run(database: GitDatabase) -> Reply:
        content, encoding = call.body.get("content"), call.body.get("encoding", "utf-8")
        if not isinstance(content, str) or encoding not in ("utf-8", "base64"):
            return Reply(422, {"message": "Invalid request."})
        data = base64.b64decode(content) if encoding == "base64" else content.encode("utf-8")
        sha = database.write_blob(data)
        return Reply(201, {"url": emu.api(repo, f"/git/blobs/{sha}"), "sha": sha})

    return _with_git(repo, run)


def create_tree(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    def run(database: GitDatabase) -> Reply:
        entries, base = call.body.get("tree"), call.body.get("base_tree")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return Reply(422, {"message": "Invalid tree info"})
        sha = database.write_tree(base if isinstance(base, str) else None, entries)
        items = [
            {**e, "url": emu.api(repo, f"/git/{e['type']}s/{e['sha']}")}
            for e in database.tree_entries(sha)
        ]
        body = {"sha": sha, "url": emu.api(repo, f"/git/trees/{sha}"), "tree": items}
        return Reply(201, {**body, "truncated": False})

    return _with_git(repo, run)


def create_git_commit(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """GitHub signs the commit (as the token's bot) only for an installation token that sent
    no author, committer or signature; every other commit is stored as given, unsigned."""

    def run(database: GitDatabase) -> Reply:
        b = call.body
        message, tree, parents = b.get("message"), b.get("tree"), b.get("parents", [])
        if not isinstance(message, str) or not isinstance(tree, str):
            return Reply(422, {"message": "Invalid request."})
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            return Reply(422, {"message": "Invalid request."})
        custom = any(k in b for k in ("author", "committer", "signature"))
        sign = call.caller.integration and not custom
        me = call.caller.user
        now = datetime.now(UTC).replace(microsecond=0)
        author = _person_body(b.get("author"), Person(str(me["login"]), noreply_email(me), now))
        committer = _person_body(b.get("committer"), author)
        if sign:
            committer = Person(*GITHUB_COMMITTER, now)
        signature = b.get("signature") if isinstance(b.get("signature"), str) else None
        sha = database.write_commit(
            tree=tree,
            parents=parents,
            message=message,
            author=author,
            committer=committer,
            sign=sign,
            signature=signature,
        )
        [stored] = database.read_commits([sha])
        return Reply(201, _git_commit_json(emu, repo, stored))

    return _with_git(repo, run)


def _ref_json(emu: GitHubEmulator, repo: RepoState, name: str, sha: str) -> Json:
    return {
        "ref": name,
        "node_id": f"REF_{sha[:12]}",
        "url": emu.api(repo, f"/git/{name}"),
        "object": {"type": "commit", "sha": sha, "url": emu.api(repo, f"/git/commits/{sha}")},
    }


def get_ref(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    def run(database: GitDatabase) -> Reply:
        name = f"refs/{call.params['ref']}"
        sha = database.ref(name)
        return (
            Reply(404, _NOT_FOUND) if sha is None else Reply(200, _ref_json(emu, repo, name, sha))
        )

    return _with_git(repo, run)


def create_ref(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    def run(database: GitDatabase) -> Reply:
        name, sha = call.body.get("ref"), call.body.get("sha")
        if not isinstance(name, str) or not isinstance(sha, str):
            return Reply(422, {"message": "Invalid request."})
        database.create_ref(name, sha)
        return Reply(201, _ref_json(emu, repo, name, sha))

    return _with_git(repo, run)


def update_ref(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    def run(database: GitDatabase) -> Reply:
        name, sha = f"refs/{call.params['ref']}", call.body.get("sha")
        if not isinstance(sha, str):
            return Reply(422, {"message": "Invalid request."})
        database.update_ref(name, sha, force=call.body.get("force") is True)
        return Reply(200, _ref_json(emu, repo, name, sha))

    return _with_git(repo, run)


def list_commits(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    def run(database: GitDatabase) -> Reply:
        start = call.query.get("sha") or repo.default_branch
        head = database.resolve(start)
        if head is None:
            return Reply(404, {"message": f"No commit found for SHA: {start}"})
        shas = database.history(head)
        page = _page(emu, shas, call.query, emu.api(repo, "/commits"))
        stored = database.read_commits(page.body)
        page.body = [_commit_json(emu, repo, c) for c in stored]
        return page

    return _with_git(repo, run)


def get_commit(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    def run(database: GitDatabase) -> Reply:
        sha = database.resolve(call.params["ref"])
        if sha is None:
            return Reply(422, {"message": f"No commit found for SHA: {call.params['ref']}"})
        [stored] = database.read_commits([sha])
        return Reply(200, {**_commit_json(emu, repo, stored), "files": _files(database, stored)})

    return _with_git(repo, run)


_STATUSES = {"A": "added", "D": "removed", "M": "modified", "T": "changed", "R": "renamed"}


def _files(database: GitDatabase, c: StoredCommit) -> list[Json]:
    """The files a commit changes, as ``GET /commits/{sha}`` lists them: against its parent
    (renames detected); for a merge, the files that differ from every parent."""
    if len(c.parents) > 1:
        merged = ("diff-tree", "-r", "-c", "--no-commit-id", "--name-only", "-z", c.sha)
        raw = git.run(database.root, *merged)
        return [{"filename": p, "status": "modified"} for p in raw.decode().split("\0") if p]
    args = ("diff-tree", "-r", "--root", "--no-commit-id", "-M", "--name-status", "-z", c.sha)
    raw = git.run(database.root, *args)
    fields = [f for f in raw.decode().split("\0") if f]
    out: list[Json] = []
    while fields:
        status = fields.pop(0)
        entry: Json = {"status": _STATUSES.get(status[0], "modified")}
        if status[0] in "RC":
            entry["previous_filename"] = fields.pop(0)
            entry["status"] = "renamed" if status[0] == "R" else "copied"
        entry["filename"] = fields.pop(0)
        out.append(entry)
    return out


def pull_commits(emu: GitHubEmulator, repo: RepoState, call: Call) -> Reply:
    """The commits between a pull request's base and head, oldest first, at most 250."""
    pull = repo.pulls.get(int(call.params["n"]))
    if pull is None:
        return Reply(404, _NOT_FOUND)

    def run(database: GitDatabase) -> Reply:
        raw = git.run(database.root, "rev-list", "--reverse", pull.head_sha, f"^{pull.base_sha}")
        shas = raw.decode().split()[:MAX_PULL_COMMITS]
        page = _page(emu, shas, call.query, emu.api(repo, f"/pulls/{pull.number}/commits"))
        page.body = [_commit_json(emu, repo, c) for c in database.read_commits(page.body)]
        return page

    return _with_git(repo, run)


_USER_ROUTES: list[tuple[str, re.Pattern[str], str, Callable[[GitHubEmulator, Call], Reply]]] = [
    ("GET", re.compile("/user"), "/user", get_user),
]
_R = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
Handler = Callable[[GitHubEmulator, RepoState, Call], Reply]
_ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = [
    (verb, re.compile(_R + suffix), "/repos/{o}/{r}" + name, fn)
    for verb, suffix, name, fn in [
        ("GET", "", "", get_repo),
        (
            "GET",
            r"/actions/workflows/(?P<wf>[^/]+)/runs",
            "/actions/workflows/{id}/runs",
            list_workflow_runs,
        ),
        ("GET", r"/pulls", "/pulls", list_pulls),
        ("GET", r"/pulls/(?P<n>\d+)", "/pulls/{n}", get_pull),
        ("GET", r"/pulls/(?P<n>\d+)/files", "/pulls/{n}/files", pull_files),
        ("GET", r"/pulls/(?P<n>\d+)/commits", "/pulls/{n}/commits", pull_commits),
        ("GET", r"/pulls/(?P<n>\d+)/reviews", "/pulls/{n}/reviews", pull_reviews),
        (
            "GET",
            r"/pulls/(?P<n>\d+)/requested_reviewers",
            "/pulls/{n}/requested_reviewers",
            list_requested_reviewers,
        ),
        (
            "POST",
            r"/pulls/(?P<n>\d+)/requested_reviewers",
            "/pulls/{n}/requested_reviewers",
            request_reviewers,
        ),
        (
            "DELETE",
            r"/pulls/(?P<n>\d+)/requested_reviewers",
            "/pulls/{n}/requested_reviewers",
            remove_requested_reviewers,
        ),
        ("GET", r"/issues/(?P<n>\d+)/events", "/issues/{n}/events", list_issue_events),
        ("GET", r"/issues/(?P<n>\d+)/comments", "/issues/{n}/comments", list_comments),
        ("POST", r"/issues/(?P<n>\d+)/comments", "/issues/{n}/comments", create_comment),
        ("PATCH", r"/issues/comments/(?P<id>\d+)", "/issues/comments/{id}", edit_comment),
        ("GET", r"/issues", "/issues", list_issues),
        ("POST", r"/issues", "/issues", create_issue),
        ("GET", r"/issues/(?P<n>\d+)", "/issues/{n}", get_issue),
        ("PATCH", r"/issues/(?P<n>\d+)", "/issues/{n}", edit_issue),
        ("POST", r"/statuses/(?P<sha>[0-9a-fA-F]+)", "/statuses/{sha}", create_status),
        ("GET", r"/statuses/(?P<sha>[0-9a-fA-F]+)", "/statuses/{sha}", list_statuses),
        (
            "GET",
            r"/commits/(?P<sha>[0-9a-fA-F]+)/statuses",
            "/commits/{sha}/statuses",
            list_statuses,
        ),
        ("GET", r"/commits/(?P<sha>[0-9a-fA-F]+)/pulls", "/commits/{sha}/pulls", commit_pulls),
        ("GET", r"/commits", "/commits", list_commits),
        ("GET", r"/commits/(?P<ref>[^/]+)", "/commits/{ref}", get_commit),
        ("POST", r"/git/blobs", "/git/blobs", create_blob),
        ("POST", r"/git/trees", "/git/trees", create_tree),
        ("POST", r"/git/commits", "/git/commits", create_git_commit),
        ("GET", r"/git/ref/(?P<ref>.+)", "/git/ref/{ref}", get_ref),
        ("POST", r"/git/refs", "/git/refs", create_ref),
        ("PATCH", r"/git/refs/(?P<ref>.+)", "/git/refs/{ref}", update_ref),
    ]
]


class _Handler(BaseHTTPRequestHandler):
    emulator: GitHubEmulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        emu = self.emulator
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        version = self.headers.get("X-GitHub-Api-Version")
        with emu._lock:
            emu.api_versions[version or ""] += 1
        caller = self._caller()
        reply = (
            (Reply(401, {"message": "Bad credentials"}) if caller is None else None)
            or _refuse_version(version)
            or self._fault(f"{method} {path}")
        )
        if reply is None:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                reply = Reply(400, {"message": "Problems parsing JSON"})
            else:
                emu._request.caller, emu._request.version = caller, version or DEFAULT_API_VERSION
                reply = emu.route(method, path, query, body if isinstance(body, dict) else None)
        with emu._lock:
            emu.log.append((method, path, reply.status))
        self._send(reply)

    def _caller(self) -> Token | None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        with self.emulator._lock:
            return self.emulator.tokens.get(token)

    def _fault(self, key: str) -> Reply | None:
        fault = self.emulator.take_fault(key)
        if fault is None:
            return None
        status, body, headers = fault
        with self.emulator._lock:
            self.emulator.calls["fault"] += 1
        return Reply(status, body, headers)

    def _send(self, reply: Reply) -> None:
        data = json.dumps(reply.body).encode()
        headers = {
            "content-type": ("Content-Type", "application/json; charset=utf-8"),
            "content-length": ("Content-Length", str(len(data))),
            "x-ratelimit-limit": ("X-RateLimit-Limit", "5000"),
            "x-ratelimit-remaining": ("X-RateLimit-Remaining", "4999"),
        }
        headers |= {key.lower(): (key, value) for key, value in reply.headers.items()}
        self.send_response(reply.status)
        for key, value in headers.values():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)


def _refuse_version(version: str | None) -> Reply | None:
    """GitHub answers 400 to an API version it does not serve (none named: the default)."""
    if version is None or version in API_VERSIONS:
        return None
    message = f"Unsupported 'X-GitHub-Api-Version' header value: {version!r}"
    return Reply(
        400,
        {
            "message": message,
            "documentation_url": "https://docs.github.com/rest/about-the-rest-api/api-versions",
        },
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m reconciler.sandbox.github_emulator --repo acme/access``: serve until ^C."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description="GitHub REST API emulator (accessctl sandbox)")
    parser.add_argument("--repo", action="append", default=[], help="OWNER/NAME to create")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args(argv)
    with GitHubEmulator(args.token) as emu:
        for name in args.repo or ["acme/access"]:
            emu.add_repo(name)
        print(f"GITHUB_API_URL={emu.url} GITHUB_TOKEN={args.token}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
