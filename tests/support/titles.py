"""GCP condition titles as accessctl writes them, computed here independently of
``reconciler.providers.gcp`` (from docs/gcp.md, "Deployments and condition titles"):

``accessctl:<tag>:<request path>``, ``tag`` = the first 8 hex characters of
sha256(deployment); a title over 100 characters (or a path that already ends like a cut
title) keeps the head of the path and ends in ``~`` + 12 hex characters of sha256(path).
Titles written before deployments existed were ``accessctl:<request path>`` ("legacy").
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "accessctl:"
MAX = 100
DIGEST = 12
_TAGGED = re.compile(r"^accessctl:(?P<tag>[0-9a-f]{8}):(?P<body>.*)$", re.DOTALL)
_CUT = re.compile(rf"~[0-9a-f]{{{DIGEST}}}$")


def tag(deployment: str = "default") -> str:
    return hashlib.sha256(deployment.encode()).hexdigest()[:8]


def tagged(deployment: str = "default") -> str:
    """The head every title of ``deployment`` starts with."""
    return f"{PREFIX}{tag(deployment)}:"


def title(path: str, deployment: str = "default") -> str:
    """The condition title ``deployment`` writes for the request at ``path``."""
    head = tagged(deployment)
    if len(head) + len(path) <= MAX and not _CUT.search(path):
        return head + path
    digest = hashlib.sha256(path.encode()).hexdigest()[:DIGEST]
    return f"{head}{path[: MAX - len(head) - 1 - DIGEST]}~{digest}"


def legacy(path: str) -> str:
    """The title of a binding written before deployments had tags."""
    return PREFIX + path


def description(path: str, deployment: str = "default", pr: int | None = None) -> str:
    """The condition description: always the full request path, and the deployment."""
    via = f" via PR #{pr}" if pr else ""
    return f"accessctl grant for {path}{via}; deployment {deployment}"


def request_of(condition_title: str) -> str:
    """The request path a tagged or legacy title names. A cut title does not hold its path
    (that is in the description): ValueError, as for a title that is not accessctl's."""
    match = _TAGGED.match(condition_title)
    if match:
        if _CUT.search(match["body"]):
            raise ValueError(f"cut title, the path is only in the description: {condition_title}")
        return match["body"]
    if condition_title.startswith(PREFIX):
        return condition_title[len(PREFIX) :]
    raise ValueError(f"not an accessctl title: {condition_title!r}")
