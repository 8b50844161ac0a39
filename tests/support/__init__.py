"""Helpers shared by the test packages: a real-git repository (``tests.support.gitrepo``)."""

from __future__ import annotations

from tests.support.gitrepo import GitRepo, git_date

__all__ = ["GitRepo", "git_date"]
