"""Fixtures for the GitHub tests: the API emulator over HTTP and real git repositories."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator

REPO = "acme/access"


class GitRepo:
    """A real git repository in a tmp dir, with helpers to write files and commit."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str, author: str = "alice") -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": f"{author}@example.com",
            "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": f"{author}@example.com",
        }
        proc = subprocess.run(
            ["git", "-C", str(self.root), *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout.strip()

    def write(self, files: dict[str, str | None]) -> None:
        """Write (or, for None, delete) files relative to the repo root."""
        for rel, text in files.items():
            path = self.root / rel
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    def commit(
        self, files: dict[str, str | None], message: str = "change", author: str = "alice"
    ) -> str:
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message, author=author)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def checkout(self, ref: str, *, new: bool = False) -> None:
        self.git("checkout", "-q", *(["-b"] if new else []), ref)


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    with GitHubEmulator() as emu:
        emu.add_repo(REPO)
        yield emu


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def github_env(emulator: GitHubEmulator, tmp_path: Path) -> dict[str, str]:
    """The environment Actions would give a step, pointed at the emulator."""
    return {
        "GITHUB_API_URL": emulator.url,
        "GITHUB_TOKEN": DEFAULT_TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    }
