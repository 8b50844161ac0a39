"""Fixtures for notification tests: a local HTTP receiver on 127.0.0.1, and the reconcile
fixtures (a real git access repo, the GCP emulator, the CLI)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.reconcile.conftest import (  # noqa: F401 - fixtures pytest finds by name
    POLICY,
    T0,
    H,
    access_repo,
    emulator,
    run_cli,
)


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    raw: bytes

    def json(self) -> dict:
        return json.loads(self.raw)


@dataclass
class Receiver:
    """What a webhook or Slack endpoint received; ``status`` is what it answers."""

    url: str
    status: int = 200
    received: list[Delivery] = field(default_factory=list)

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.received if d.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.received.append(Delivery(self.path, dict(self.headers.items()), raw))
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def with_notifications(repo, entries: str) -> None:
    """Rewrite the policies with a ``notifications:`` section, committed before T0."""
    repo.write("policies/access.yaml", POLICY + "notifications:\n" + entries)
    repo.commit("notifications", at=T0 - 23 * H)
