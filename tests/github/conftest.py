"""Fixtures for the GitHub tests: the API emulator over HTTP and real git repositories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.sandbox.github_emulator import DEFAULT_TOKEN, GitHubEmulator
from tests.support import GitRepo
from tests.support.emulators import running_github

__all__ = ["REPO", "GitRepo"]

REPO = "acme/access"


@pytest.fixture
def emulator() -> Iterator[GitHubEmulator]:
    with running_github(REPO) as emu:
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
