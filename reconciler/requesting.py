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
def remote_repository(repo: Path) -> str | None:
    """``owner/name`` from origin's URL (https or ssh), for when GITHUB_REPOSITORY is unset."""
    try:
        url = _git(repo, "remote", "get-url", "origin")
    except ConfigError:
        return None
    m = re.search(r"[:/]([^/:]+/[^/]+?)(?:\.git)?/?$", url)
    return m.group(1) if m else None


def default_branch(repo: Path) -> str:
    try:
        ref = _git(repo, "symbolic-ref", "-q", "refs/remotes/origin/HEAD")
        return ref.rsplit("/", 1)[-1]
    except ConfigError:
        return "main"


def commit_on_remote_branch(
    repo: Path, path: str, text: str, *, base: str, branch: str, message: str
) -> str:
    """Commit ``path`` on top of origin/<base> without touching the checkout; push it to
    ``branch``. Returns the new commit."""
    _git(
        repo, "fetch", "-q", "--no-tags", "origin", f"+refs/heads/{base}:refs/remotes/origin/{base}"
    )
    parent = _git(repo, "rev-parse", "--verify", f"refs/remotes/origin/{base}^{{commit}}")
    blob = _git(repo, "hash-object", "-w", "--stdin", input_bytes=text.encode())
    with tempfile.TemporaryDirectory(prefix="accessctl-request-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", f"{parent}^{{tree}}", env=env)
        _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = _git(repo, "write-tree", env=env)
        sha = _git(repo, "commit-tree", tree, "-p", parent, "-m", message, env=env)
    _git(repo, "push", "-q", "origin", f"{sha}:refs/heads/{branch}")
    return sha


def open_pull(repository: str, *, head: str, base: str, title: str, body: str) -> str:
    """Open the pull request through PyGithub; returns its web URL."""
    from github import Auth, Github, GithubException

    token = os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN")
    if not token:
        raise ConfigError(
            "GITHUB_TOKEN (or GH_TOKEN) is not set: cannot open the pull request "
            "(the branch was pushed; open it in the browser)"
        )
    api = os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    try:
        gh = Github(base_url=api.rstrip("/"), auth=Auth.Token(token), timeout=20)
        pull = gh.get_repo(repository).create_pull(base=base, head=head, title=title, body=body)
    except GithubException as exc:
        message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
        raise GitHubError(
            f"GitHub refused to open the pull request ({exc.status}: {message})"
        ) from None
    except OSError as exc:
        raise GitHubError(f"GitHub could not be reached to open the pull request ({exc})") from None
    return str(pull.html_url)
