"""One started harness per provider and worker process, reset before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.core import providers

from .harness import HARNESSES, KNOWN_VIOLATIONS, Harness


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Known contract violations (harness.KNOWN_VIOLATIONS) are strict xfails."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = str(callspec.params.get("harness")) if callspec else ""
        reason = KNOWN_VIOLATIONS.get((name, str(getattr(item, "originalname", item.name))))
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


class _Started:
    """Harnesses started on first use and stopped when the session ends."""

    def __init__(self) -> None:
        self.running: dict[str, Harness] = {}

    def get(self, name: str) -> Harness:
        if name not in self.running:
            if name not in HARNESSES:
                pytest.fail(f"provider {name!r} has no contract harness in tests/providers")
            harness = HARNESSES[name]()
            harness.start()
            self.running[name] = harness
        return self.running[name]

    def stop(self) -> None:
        for harness in self.running.values():
            harness.stop()


@pytest.fixture(scope="session")
def started() -> Iterator[_Started]:
    cache = _Started()
    try:
        yield cache
    finally:
        cache.stop()


@pytest.fixture(params=providers.names())
def harness(request: pytest.FixtureRequest, started: _Started) -> Harness:
    """Every registered provider's harness in turn, with a clean cloud."""
    h = started.get(request.param)
    h.reset()
    return h
