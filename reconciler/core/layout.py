"""Where things may live in an access repository, decided once for every reader.

Only a regular file (git mode 100644) at ``requests/<login>/<slug>.yaml`` or ``.yml`` is a
request. Everything else under ``requests/`` (notes, other extensions, gitlinks, symlinks,
executables, deeper or shallower paths, case variants such as ``Requests/``) is never
parsed, never steers what the reconciler observes, grants or revokes, and is reported
where a person sees it. ``README.md``/``*.md`` and ``.gitkeep`` are allowed, ignored notes.

Pure: paths and git modes in, verdicts out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

REQUESTS = "requests"
POLICIES = "policies"
REQUESTS_DIR = REQUESTS + "/"
POLICIES_DIR = POLICIES + "/"
REGULAR = "100644"
_MODE_NAMES = {
    "100755": "an executable file",
    "120000": "a symlink",
    "160000": "a submodule (gitlink)",
    "040000": "a directory",
}
LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
SLUG_FILE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}\.ya?ml$")


class Kind(StrEnum):
    REQUEST = "request"  # a request file: parsed, judged
    POLICY = "policy"  # policies/<name>.yaml|yml
    NOTE = "note"  # an allowed note under requests/ (*.md, .gitkeep): ignored, not reported
    STRAY = "stray"  # anything else under requests/ (any case): ignored and reported
    OTHER = "other"  # outside requests/ and policies/


@dataclass(frozen=True)
class Problem:
    code: str
    message: str


def under_requests(path: str) -> bool:
    """Whether ``path`` is under ``requests/`` in any letter case (``Requests/`` is a
    trap on case-insensitive checkouts, so it counts as under requests/ to be refused)."""
    return path[: len(REQUESTS_DIR)].lower() == REQUESTS_DIR


def owner(path: str) -> str | None:
    """The login whose directory ``path`` is in (``requests/<login>/...``), as written."""
    parts = path.split("/")
    return parts[1] if len(parts) >= 3 and under_requests(path) and parts[1] else None


def is_request_name(path: str) -> bool:
    """``requests/<login>/<slug>.yaml|yml`` exactly, whatever the mode."""
    parts = path.split("/")
    return (
        len(parts) == 3
        and parts[0] == REQUESTS
        and LOGIN.fullmatch(parts[1]) is not None
        and SLUG_FILE.fullmatch(parts[2]) is not None
    )


def is_note_name(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return path.startswith(REQUESTS_DIR) and (name.endswith(".md") or name == ".gitkeep")


def is_policy_name(path: str) -> bool:
    rest = path[len(POLICIES_DIR) :]
    return path.startswith(POLICIES_DIR) and "/" not in rest and rest.endswith((".yaml", ".yml"))


def classify(path: str, mode: str | None = REGULAR) -> Kind:
    """What an entry of a git tree (path and mode) is. ``mode=None`` means unknown
    (a work tree entry already known to be a regular file)."""
    regular = mode is None or mode == REGULAR
    if under_requests(path):
        if regular and is_request_name(path):
            return Kind.REQUEST
        if regular and is_note_name(path):
            return Kind.NOTE
        return Kind.STRAY
    if path.startswith(POLICIES_DIR) and regular and is_policy_name(path):
        return Kind.POLICY
    return Kind.OTHER


def mode_name(mode: str | None) -> str:
    return _MODE_NAMES.get(mode or "", "not a regular file")


def stray_problem(path: str, mode: str | None = REGULAR) -> Problem:
    """Why an entry under requests/ is not a request (for a STRAY entry)."""
    if mode is not None and mode != REGULAR:
        return Problem(
            "E-FILE-SYMLINK" if mode == "120000" else "E-FILE-MODE",
            f"{mode_name(mode)} is not allowed under requests/: only regular request files "
            "(requests/<login>/<slug>.yaml) and notes (*.md) may be committed there",
        )
    parts = path.split("/")
    name = parts[-1]
    if not path.startswith(REQUESTS_DIR):
        return Problem(
            "E-FILE-LAYOUT",
            f"{parts[0]!r} is not the requests/ directory (directory names are case-sensitive)",
        )
    if len(parts) != 3:
        return Problem("E-FILE-LAYOUT", "request files go at requests/<github-login>/<slug>.yaml")
    if not LOGIN.fullmatch(parts[1]):
        return Problem(
            "E-FILE-LAYOUT",
            f"{parts[1]!r} is not a GitHub login (the directory must be the requester's login)",
        )
    if not name.endswith((".yaml", ".yml")):
        return Problem(
            "E-FILE-LAYOUT",
            f"{name!r} is neither a request file (<slug>.yaml) nor a note (*.md); only those "
            "may live under requests/",
        )
    return Problem(
        "E-FILE-LAYOUT",
        f"{name!r}: the file name must be a slug (lowercase letters, digits, hyphens; at most "
        "48) ending in .yaml or .yml",
    )
