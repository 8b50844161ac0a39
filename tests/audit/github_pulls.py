"""The shared GitHub emulator, plus the one route `accessctl request --open-pr` needs.

Opening a pull request (``POST /repos/{owner}/{repo}/pulls``) is only used here, so the
route lives with these tests instead of in the emulator the PR-gate tests rely on.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.sandbox.github_emulator import GitHubEmulator, Reply, _pull_json

_CREATE = re.compile(r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pulls")


class PullCreatingEmulator(GitHubEmulator):
    def __init__(self) -> None:
        super().__init__()
        self.created: list[dict[str, Any]] = []

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> Reply:
        m = _CREATE.fullmatch(path)
        if method != "POST" or m is None:
            return super().route(method, path, query, body)
        name = f"{m['owner']}/{m['repo']}"
        body = body or {}
        if name not in self.repos or not all(body.get(k) for k in ("title", "head", "base")):
            return Reply(422, {"message": "Validation Failed"})
        number = self.add_pull(
            name, author="alice", head_sha="0" * 40, base_sha="0" * 40,
            base_ref=body["base"], title=body["title"],
        )  # fmt: skip
        pull = self.repos[name].pulls[number]
        pull.head_ref = body["head"]
        self.created.append(dict(body))
        return Reply(201, _pull_json(self, self.repos[name], pull))
