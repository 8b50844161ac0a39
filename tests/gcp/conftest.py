"""Fixtures for the GCP side: an emulator on a free port and a provider talking to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core.models import Change, ChangeKind, Config, Grant
from reconciler.providers.base import make
from reconciler.providers.gcp import GcpProvider
from reconciler.sandbox.gcp_emulator import GcpEmulator

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


@pytest.fixture
def emulator() -> Iterator[GcpEmulator]:
    emu = GcpEmulator(port=0).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def make_provider(emulator: GcpEmulator) -> Callable[..., GcpProvider]:
    def build(**options: object) -> GcpProvider:
        merged = {"endpoint": emulator.url, "backoff_base": 0.005, "backoff_max": 0.02}
        merged.update(options)
        provider = make("gcp", Config(), merged)
        assert isinstance(provider, GcpProvider)
        return provider

    return build


@pytest.fixture
def provider(make_provider: Callable[..., GcpProvider]) -> GcpProvider:
    return make_provider()


def grant(
    scope: str = "projects/payments-prod",
    role: str = "roles/cloudsql.viewer",
    principal: str = "user:alice@example.com",
    request: str = "requests/alice/inc-4821.yaml",
    begin: datetime | None = NOW,
    end: datetime | None = NOW + timedelta(hours=2),
    pr: int | None = 12,
) -> Grant:
    return Grant("gcp", scope, role, principal, request, begin, end, pr)


def add(g: Grant) -> Change:
    return Change(ChangeKind.GRANT, g, "approved and in window")


def revoke(g: Grant) -> Change:
    return Change(ChangeKind.REVOKE, g, "expired")
