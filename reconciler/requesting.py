"""Writing a request and proposing it: the use cases behind ``accessctl request``.

``check`` judges a draft as if merged now (what the PR check will say) before anything
is written; ``commit_on_remote_branch`` commits the one file on top of the remote's
default branch with git plumbing (the checkout and its index are left alone) and pushes
it; ``open_pull`` opens the pull request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reconciler import git
from reconciler.errors import ConfigError, Finding, GitHubError


def _git(
    repo: Path, *args: str, input_bytes: bytes | None = None, env: dict[str, str] | None = None
) -> str:
    done = git.call(repo, *args, input_bytes=input_bytes, env=env)
    if not done.ok:
        raise ConfigError(f"git {args[0]} failed: {done.error()}")
    return done.text()


def default_requester(repo: Path) -> str:
    """``git config github.user``, the identities entry whose principal carries
    ``git config user.email``, $GITHUB_ACTOR, then the GitHub CLI's logged-in user."""
    from reconciler.trail import whoami

    try:
        return whoami(repo)
    except ConfigError:
        login = os.environ.get("GITHUB_ACTOR") or _gh_login()
        if login:
            return login
        raise


def _gh_login() -> str | None:
    if shutil.which("gh") is None:
        return None
    try:
        proc = subprocess.run(
            ["gh", "api", "user", "--jq", ".login"],
            capture_output=True, text=True, timeout=15, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    login = proc.stdout.strip()
    return login if proc.returncode == 0 and re.fullmatch(r"[A-Za-z0-9-]{1,39}", login) else None


def check(repo: Path, path: str, text: str, now: datetime) -> list[Finding]:
    """Every finding the PR check would raise for this file, merged now."""
    from reconciler.core.validate import check_request_now
    from reconciler.history import MemorySource
    from reconciler.repo import WorkTree, load_config, load_requests

    config, config_findings = load_config(WorkTree(repo))
    broken = [f for f in config_findings if f.severity == "error"]
    if broken:
        raise ConfigError("the policies in this repository are invalid", tuple(broken))
    requests, findings = load_requests(MemorySource({path: text.encode()}), config, [path])
    errors = [f for f in findings if f.severity == "error"]
    for request in requests:
        _, found = check_request_now(request, config, now)
        errors += [f for f in found if f.severity == "error"]
    return errors


# --------------------------------------------------------------------------- pull request
def default_branch(repo: Path) -> str:
    try:
        ref = _git(repo, "symbolic-ref", "-q", "refs/remotes/origin/HEAD")
        return ref.rsplit("/", 1)[-1]
    except ConfigError:
        return "main"


@dataclass(frozen=True)
class Target:
    """Where ``--open-pr`` proposes a request: checked before anything is written."""

    repository: str  # owner/name on GitHub
    token: str
    api_url: str
    base: str  # the default branch on origin


def preflight(repo: Path, env: Mapping[str, str] | None = None) -> Target:
    """Everything ``--open-pr`` needs, before a file is written or a branch pushed: a token,
    the repository (GITHUB_REPOSITORY, or origin's URL when it is a GitHub URL), and an
    ``origin`` remote to push to (any URL: a mirror or a GitHub Enterprise host is fine
    when GITHUB_REPOSITORY names the repository)."""
    env = os.environ if env is None else env
    token = env.get("GITHUB_TOKEN") or env.get("GH_TOKEN")
    if not token:
        raise ConfigError(
            "--open-pr needs a GitHub token: set GITHUB_TOKEN or GH_TOKEN (for example "
            "`export GH_TOKEN=$(gh auth token)`); nothing was written"
        )
    if not git.has_remote(repo):
        raise ConfigError(f"--open-pr pushes to `origin`, and {repo} has no such remote")
    repository = env.get("GITHUB_REPOSITORY") or git.remote_repository(repo)
    if not repository:
        raise ConfigError(
            "cannot tell the GitHub repository from origin's URL: set "
            "GITHUB_REPOSITORY=OWNER/NAME; nothing was written"
        )
    api = env.get("GITHUB_API_URL") or "https://api.github.com"
    return Target(repository, token, api.rstrip("/"), default_branch(repo))


def commit_on_remote_branch(
    repo: Path, path: str, text: str, *, base: str, branch: str, message: str
) -> str:
    """Commit ``path`` on top of origin/<base> without touching the checkout; push it to
    ``branch``. Returns the branch's commit. When the remote branch already holds exactly
    this file (a rerun after a push whose pull request was not opened), nothing new is
    committed or pushed."""
    _git(
        repo, "fetch", "-q", "--no-tags", "origin", f"+refs/heads/{base}:refs/remotes/origin/{base}"
    )
    blob = _git(repo, "hash-object", "-w", "--stdin", input_bytes=text.encode())
    existing = _pushed(repo, branch)
    if existing is not None and git.text(repo, "rev-parse", f"{existing}:{path}") == blob:
        return existing
    parent = _git(repo, "rev-parse", "--verify", f"refs/remotes/origin/{base}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="accessctl-request-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", f"{parent}^{{tree}}", env=env)
        _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = _git(repo, "write-tree", env=env)
        sha = _git(repo, "commit-tree", tree, "-p", parent, "-m", message, env=env)
    _git(repo, "push", "-q", "--force-with-lease", "origin", f"{sha}:refs/heads/{branch}")
    return sha


def _pushed(repo: Path, branch: str) -> str | None:
    """The commit of ``branch`` on origin (fetched), or None when it does not exist."""
    done = git.call(
        repo,
        "fetch",
        "-q",
        "--no-tags",
        "origin",
        f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
    )
    return git.resolve(repo, f"refs/remotes/origin/{branch}") if done.ok else None


def open_pull(target: Target, *, head: str, title: str, body: str) -> str:
    """The pull request from ``head`` to the default branch; an open one for the same
    branch is reused (a rerun never opens a second). Returns its web URL."""
    from github import Auth, Github, GithubException

    try:
        gh = Github(base_url=target.api_url, auth=Auth.Token(target.token), timeout=20)
        repo = gh.get_repo(target.repository, lazy=True)
        owner = target.repository.split("/", 1)[0]
        for pull in repo.get_pulls(state="open", head=f"{owner}:{head}", base=target.base):
            return str(pull.html_url)
        pull = repo.create_pull(base=target.base, head=head, title=title, body=body)
    except GithubException as exc:
        message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
        raise GitHubError(
            f"GitHub refused to open the pull request ({exc.status}: {message}); the branch "
            f"{head} is pushed: rerun the same command to retry, or open it in the browser"
        ) from None
    except OSError as exc:
        raise GitHubError(
            f"GitHub could not be reached to open the pull request ({exc}); the branch {head} "
            "is pushed: rerun the same command to retry"
        ) from None
    return str(pull.html_url)
