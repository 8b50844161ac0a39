"""A minimal GitHub REST emulator for black-box pr-check tests, written from GitHub's
public REST docs (pulls, pull files, reviews, issue comments, commit statuses, the
authenticated user, review requests and the issue events that record them), not from reconciler/sandbox/github_emulator.py. It answers only those
routes; anything else is 404, so a new dependency on another endpoint shows up as a failing
test."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "ghs_e2e_token"


def user(login: str, kind: str = "User") -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10_000_000, "type": kind}


@dataclass
class Pull:
    number: int
    author: str
    head: str
    base: str
    files: list[dict[str, Any]]
    reviews: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


class IndependentGitHub:
    def __init__(self, repo: str = "acme/access") -> None:
        self.repo = repo
        self.pulls: dict[int, Pull] = {}
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self.unknown: list[str] = []
        self.next_id = 1000
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def review(self, number: int, login: str, state: str, commit: str, kind: str = "User") -> None:
        self.pulls[number].reviews.append(
            {
                "id": self._id(),
                "user": user(login, kind),
                "body": "",
                "state": state,
                "commit_id": commit,
                "submitted_at": "2026-12-01T08:30:00Z",
                "author_association": "MEMBER",
            }
        )

    # -- routes ----------------------------------------------------------------------

    def _pull_json(self, p: Pull) -> dict[str, Any]:
        base = f"{self.url}/repos/{self.repo}"
        return {
            "url": f"{base}/pulls/{p.number}",
            "id": p.number * 7,
            "number": p.number,
            "state": "open",
            "title": f"Access request #{p.number}",
            "user": user(p.author),
            "body": None,
            "head": {
                "ref": f"{p.author}/req",
                "sha": p.head,
                "user": user(p.author),
                "label": f"x:{p.author}/req",
            },
            "base": {
                "ref": "main",
                "sha": p.base,
                "user": user("acme", "Organization"),
                "label": "acme:main",
            },
            "merged": False,
            "merged_at": None,
            "merge_commit_sha": None,
            "draft": False,
            "created_at": "2026-12-01T08:00:00Z",
            "updated_at": "2026-12-01T08:00:00Z",
            "html_url": f"https://github.example/{self.repo}/pull/{p.number}",
        }

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/user":
            # TOKEN stands for Actions' GITHUB_TOKEN, an installation token: GitHub does not
            # serve "Get the authenticated user" to those.
            return 403, {
                "message": "Resource not accessible by integration",
                "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
                "status": "403",
            }
        prefix = f"/repos/{self.repo}"
        if not path.startswith(prefix):
            return 404, {"message": "Not Found"}
        rest = path[len(prefix) :]
        if method == "GET" and rest == "":
            return 200, {
                "id": 1,
                "name": self.repo.split("/")[1],
                "full_name": self.repo,
                "default_branch": "main",
                "url": f"{self.url}{prefix}",
                "private": True,
                "owner": user("acme", "Organization"),
            }
        m = re.fullmatch(r"/pulls/(\d+)(/files|/reviews)?", rest)
        if method == "GET" and m:
            p = self.pulls.get(int(m.group(1)))
            if p is None:
                return 404, {"message": "Not Found"}
            if m.group(2) == "/files":
                return 200, p.files
            if m.group(2) == "/reviews":
                return 200, p.reviews
            return 200, self._pull_json(p)
        m = re.fullmatch(r"/pulls/(\d+)/requested_reviewers", rest)
        if m and method == "POST":
            p = self.pulls.get(int(m.group(1)))
            if p is None:
                return 404, {"message": "Not Found"}
            logins = body.get("reviewers") or []
            if p.author.lower() in (x.lower() for x in logins):
                return 422, {"message": "Review cannot be requested from pull request author."}
            for login in logins:
                p.events.append(
                    {
                        "id": self._id(),
                        "event": "review_requested",
                        "actor": user("github-actions[bot]", "Bot"),
                        "review_requester": user("github-actions[bot]", "Bot"),
                        "requested_reviewer": user(login),
                        "created_at": "2026-12-01T08:00:00Z",
                    }
                )
            return 201, self._pull_json(p)
        m = re.fullmatch(r"/issues/(\d+)/events", rest)
        if m and method == "GET":
            p = self.pulls.get(int(m.group(1)))
            return (200, p.events) if p else (404, {"message": "Not Found"})
        m = re.fullmatch(r"/issues/(\d+)/comments", rest)
        if m:
            p = self.pulls.get(int(m.group(1)))
            if p is None:
                return 404, {"message": "Not Found"}
            if method == "GET":
                return 200, p.comments
            if method == "POST":
                c = {
                    "id": self._id(),
                    "body": body["body"],
                    "user": user("github-actions[bot]", "Bot"),
                    "url": f"{self.url}{prefix}/issues/comments/{self.next_id}",
                }
                p.comments.append(c)
                return 201, c
        m = re.fullmatch(r"/issues/comments/(\d+)", rest)
        if m and method == "PATCH":
            for p in self.pulls.values():
                for c in p.comments:
                    if c["id"] == int(m.group(1)):
                        c["body"] = body["body"]
                        return 200, c
            return 404, {"message": "Not Found"}
        m = re.fullmatch(r"/statuses/([0-9a-f]{40})", rest)
        if m and method == "POST":
            s = {
                "id": self._id(),
                "state": body["state"],
                "context": body.get("context", "default"),
                "description": body.get("description"),
                "target_url": body.get("target_url"),
            }
            if s["state"] not in ("error", "failure", "pending", "success"):
                return 422, {"message": "Validation Failed"}
            if s["description"] and len(s["description"]) > 140:
                return 422, {"message": "description is too long (maximum is 140 characters)"}
            self.statuses.setdefault(m.group(1), []).insert(0, s)
            return 201, s
        return 404, {"message": "Not Found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emu = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0].rstrip("/")
                path = path[len("/api/v3") :] if path.startswith("/api/v3") else path
                if self.headers.get("Authorization", "") not in (
                    f"token {TOKEN}",
                    f"Bearer {TOKEN}",
                ):
                    code, payload = 401, {"message": "Bad credentials"}
                else:
                    with emu.lock:
                        code, payload = emu.route(method, path, json.loads(raw) if raw else None)
                        if code == 404:
                            emu.unknown.append(f"{method} {path}")
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

        return Handler
