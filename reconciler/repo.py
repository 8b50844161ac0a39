"""Reading an access repo's files, from the work tree or from a git commit.

The core never opens files; this module turns a repo into (Config, requests, findings).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from reconciler.core.models import AccessRequest, Config
from reconciler.errors import Finding


class FileSource(Protocol):
    """Where files come from: ``WorkTree(dir)`` or ``GitTree(dir, commit)``."""

    def list(self, prefix: str) -> list[str]:
        """Repo-relative POSIX paths of regular files under ``prefix`` (symlinks included,
        so they can be reported), sorted."""
        ...

    def read(self, path: str) -> bytes: ...

    def is_symlink(self, path: str) -> bool: ...


@dataclass
class LoadedRepo:
    config: Config
    requests: list[AccessRequest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)


class WorkTree:
    def __init__(self, root: Path) -> None:
        self.root = root

    # filled by the foundation issue
    def list(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        raise NotImplementedError

    def is_symlink(self, path: str) -> bool:
        raise NotImplementedError


class GitTree:
    """Files as they are at ``commit`` (e.g. the PR's base), read with one ``git cat-file
    --batch`` process."""

    def __init__(self, root: Path, commit: str) -> None:
        self.root = root
        self.commit = commit

    def list(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def read(self, path: str) -> bytes:
        raise NotImplementedError

    def is_symlink(self, path: str) -> bool:
        raise NotImplementedError


def load_config(source: FileSource) -> tuple[Config, list[Finding]]:
    """Every ``policies/*.yaml``/``*.yml`` merged; findings for anything wrong."""
    raise NotImplementedError


def load_requests(
    source: FileSource, config: Config, paths: Sequence[str] | None = None
) -> tuple[list[AccessRequest], list[Finding]]:
    """Parse request files (all under ``requests/`` when ``paths`` is None), checking
    layout, schema and the static policy checks that need no approval time."""
    raise NotImplementedError


def load_repo(source: FileSource, paths: Iterable[str] | None = None) -> LoadedRepo:
    raise NotImplementedError
