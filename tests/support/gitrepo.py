"""A real git repository in a tmp dir for tests: commits at explicit times by explicit authors,
branches, merge and squash helpers, and the PR file list GitHub would show."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

Files = Mapping[str, str | bytes | None]


def git_date(when: str | datetime) -> str:
    """A date git accepts: text (RFC 3339) as is, a datetime as epoch seconds in UTC."""
    if isinstance(when, datetime):
        return f"@{int(when.timestamp())} +0000"
    return when


class GitRepo:
    """A real repository. Subclasses (the test packages' conftests) pick the defaults below and
    keep their own call signatures on top of ``run_git`` / ``stage`` / ``commit_staged``."""

    # Who authors a commit when a call names nobody; None leaves it to git's configured user.
    author: str | None = "alice"
    # (name, email) recorded as committer; None: the author commits too (as a local `git commit`).
    committer: tuple[str, str] | None = None
    # Whether git's output is returned stripped of surrounding whitespace.
    strip: bool = True
    # True: commit every change in the tree (`git add -A`); False: only the files named.
    stage_all: bool = True

    def __init__(self, root: Path, *, bare: bool = False, init: bool = True) -> None:
        self.root = root
        if init:
            self.init(bare=bare)

    @property
    def path(self) -> Path:
        return self.root

    def init(self, *, bare: bool = False) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_git("init", "-q", *(["--bare"] if bare else []), "-b", "main")
        self.run_git("config", "commit.gpgsign", "false")
        self.run_git("config", "user.name", "Test")
        self.run_git("config", "user.email", "test@example.com")

    def base_env(self) -> dict[str, str]:
        """The environment git runs in before author and date are added."""
        return dict(os.environ)

    def run_git(
        self, *args: str, author: str | None = None, date: str | datetime | None = None
    ) -> str:
        env = self.base_env()
        who = author or self.author
        if who is not None:
            name, email = self.committer or (who, f"{who}@example.com")
            env.update(
                GIT_AUTHOR_NAME=who,
                GIT_AUTHOR_EMAIL=f"{who}@example.com",
                GIT_COMMITTER_NAME=name,
                GIT_COMMITTER_EMAIL=email,
            )
        if date is not None:
            env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = git_date(date)
        proc = subprocess.run(
            ["git", "-C", str(self.root), *args], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"git {args}: {proc.stderr}"
        return proc.stdout.strip() if self.strip else proc.stdout

    def git(self, *args: str, author: str | None = None, date: str | datetime | None = None) -> str:
        return self.run_git(*args, author=author, date=date)

    # -- files -------------------------------------------------------------------------------

    def write_file(self, rel: str, text: str | bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def write(self, files: Files) -> None:
        """Write (or, for None, delete) files relative to the repo root."""
        for rel, text in files.items():
            if text is None:
                (self.root / rel).unlink()
            else:
                self.write_file(rel, text)

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink()

    def stage(self, files: Files) -> None:
        """Write files and stage them (see ``stage_all``); None deletes a file."""
        if self.stage_all:
            self.write(files)
            self.run_git("add", "-A")
            return
        written = []
        for rel, text in files.items():
            if text is None:
                self.run_git("rm", "-q", "--", rel)
                continue
            self.write_file(rel, text)
            written.append(rel)
        if written:
            self.run_git("add", "--", *written)

    # -- commits and branches ----------------------------------------------------------------

    def commit_staged(
        self, message: str, *, author: str | None = None, date: str | datetime | None = None
    ) -> str:
        self.run_git("commit", "-q", "--allow-empty", "-m", message, author=author, date=date)
        return self.head()

    def commit(
        self,
        files: Files | None = None,
        message: str = "change",
        author: str | None = None,
        date: str | datetime | None = None,
    ) -> str:
        self.stage(files or {})
        return self.commit_staged(message, author=author, date=date)

    def head(self) -> str:
        return self.run_git("rev-parse", "HEAD").strip()

    def checkout(self, ref: str, *, new: bool = False) -> None:
        self.run_git("checkout", "-q", *(["-b"] if new else []), ref)

    def merge_pr(
        self, number: int, files: Files, when: str | datetime, author: str = "alice"
    ) -> str:
        """A feature branch with the change, merged into main with a merge commit."""
        branch = f"pr-{number}"
        self.checkout(branch, new=True)
        self.stage(files)
        self.commit_staged(f"request {number}", author=author, date=when)
        self.checkout("main")
        message = f"Merge pull request #{number} from {author}/{branch}"
        self.run_git("merge", "-q", "--no-ff", branch, "-m", message, date=when)
        return self.head()

    def squash_pr(
        self, number: int, files: Files, when: str | datetime, author: str = "alice"
    ) -> str:
        """The change as one commit on main, titled the way GitHub titles a squash merge."""
        self.stage(files)
        return self.commit_staged(f"Request access (#{number})", author=author, date=when)

    # -- what GitHub would show --------------------------------------------------------------

    def blob(self, ref: str, path: str) -> str:
        return self.run_git("rev-parse", f"{ref}:{path}").strip()

    def diff(self, base: str, head: str) -> list[dict]:
        """The PR's files as GitHub lists them, with the blob SHA at head."""
        out = []
        names = self.run_git(
            "-c", "core.quotepath=false", "diff", "--name-status", "--no-renames", base, head
        )
        for line in names.splitlines():
            status, path = line.split("\t")
            kind = {"A": "added", "D": "removed"}.get(status[0], "modified")
            entry = {"filename": path, "status": kind}
            if kind != "removed":
                entry["sha"] = self.blob(head, path)
            out.append(entry)
        return out
