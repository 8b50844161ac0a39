"""``accessctl init``: the files of a new access repository, from the package's templates.

An access repository holds only ``policies/``, ``requests/`` and ``.github/`` (workflows,
CODEOWNERS, Dependabot); the tool itself runs from the accessctl action pinned at one
commit. Files that already exist are never overwritten: they are kept and listed.

```python
plan = plan_scaffold(Path("access"), Pin.installed())
written, kept = write_scaffold(plan)
```
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from reconciler import __version__
from reconciler.errors import ConfigError

DISTRIBUTION = "accessctl"
DEFAULT_REPOSITORY = "accessctl/accessctl"  # when the package metadata names no source
_SHA = re.compile(r"[0-9a-f]{40}")
_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")

# template file (reconciler/scaffold/templates/) -> where it goes in the access repository
FILES = {
    "policies-access.yaml": "policies/access.yaml",
    "policy-tests.yaml": "policies/tests/access.yaml",
    "requests-README.md": "requests/README.md",
    "access-check.yml": ".github/workflows/access-check.yml",
    "access-reconcile.yml": ".github/workflows/access-reconcile.yml",
    "access-ci.yml": ".github/workflows/access-ci.yml",
    "access-heartbeat.yml": ".github/workflows/access-heartbeat.yml",
    "CODEOWNERS": ".github/CODEOWNERS",
    "dependabot.yml": ".github/dependabot.yml",
}


@dataclass(frozen=True)
class Pin:
    """Which accessctl the access repository's workflows run: ``repository@ref``."""

    repository: str
    ref: str
    version: str = __version__

    @property
    def is_commit(self) -> bool:
        return _SHA.fullmatch(self.ref) is not None

    @property
    def uses(self) -> str:
        """The ``uses:`` value, with the version as the comment Dependabot keeps fresh."""
        comment = f" # v{self.version}" if self.is_commit else ""
        return f"{self.repository}@{self.ref}{comment}"

    @property
    def schemas(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repository}/{self.ref}/reconciler/schemas"

    @property
    def install(self) -> str:
        return f"git+https://github.com/{self.repository}@{self.ref}"

    @classmethod
    def parse(cls, text: str) -> Pin:
        """``owner/name@ref`` or ``owner/name`` (the installed version's ref)."""
        repository, _, ref = text.partition("@")
        if not _REPOSITORY.fullmatch(repository) or (ref and not _REF.fullmatch(ref)):
            raise ConfigError(f"--action {text!r}: expected OWNER/NAME or OWNER/NAME@REF")
        return cls(repository, ref or installed_ref())

    @classmethod
    def installed(cls) -> Pin:
        return cls(source_repository(), installed_ref())


def source_repository() -> str:
    """The GitHub repository accessctl comes from, as its package metadata names it."""
    try:
        urls = metadata.metadata(DISTRIBUTION).get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    for entry in urls:
        label, _, url = entry.partition(",")
        match = re.fullmatch(r"\s*https://github\.com/([^/\s]+/[^/\s]+?)/?\s*", url)
        if label.strip().lower() == "source" and match:
            return match.group(1)
    return DEFAULT_REPOSITORY


def installed_ref() -> str:
    """The commit accessctl was installed from when pip recorded one (an install from
    git), else the release tag of the installed version."""
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        text = None
    if text:
        try:
            commit = json.loads(text).get("vcs_info", {}).get("commit_id", "")
        except (ValueError, AttributeError):
            commit = ""
        if isinstance(commit, str) and _SHA.fullmatch(commit):
            return commit
    return f"v{__version__}"


# -- the files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    path: str  # relative to the access repository
    text: str


def render(template: str, pin: Pin) -> str:
    text = resources.files("reconciler.scaffold").joinpath(f"templates/{template}")
    out = text.read_text("utf-8")
    for token, value in {
        "__ACTION__": pin.uses,
        "__SCHEMAS__": pin.schemas,
        "__INSTALL__": pin.install,
        "__VERSION__": pin.version,
    }.items():
        out = out.replace(token, value)
    return out


def plan_scaffold(pin: Pin) -> list[Planned]:
    return [Planned(dest, render(template, pin)) for template, dest in FILES.items()]


def occupied(root: Path) -> list[str]:
    """What is already in ``root`` (its ``.git`` aside), sorted; empty for a new directory."""
    if not root.exists():
        return []
    if not root.is_dir():
        raise ConfigError(f"{root}: exists and is not a directory")
    return sorted(p.name for p in root.iterdir() if p.name != ".git")


def write_scaffold(root: Path, planned: list[Planned]) -> tuple[list[str], list[str]]:
    """Write every planned file that does not exist yet; (written, kept) paths."""
    written: list[str] = []
    kept: list[str] = []
    for item in planned:
        target = root / item.path
        if target.exists() or target.is_symlink() or _through_symlink(root, item.path):
            kept.append(item.path)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as fh:  # "x": never replace a file
            fh.write(item.text)
        written.append(item.path)
    return written, kept


def _through_symlink(root: Path, path: str) -> bool:
    """Whether a directory on the way to ``path`` is a symlink (never written through)."""
    parts = Path(path).parts[:-1]
    return any((root.joinpath(*parts[: i + 1])).is_symlink() for i in range(len(parts)))
