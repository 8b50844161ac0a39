"""The emulators the tests run over HTTP, started on free ports and stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from reconciler.sandbox.gcp_emulator import GcpEmulator
from reconciler.sandbox.github_emulator import GitHubEmulator


@contextmanager
def running_gcp(*resources: str) -> Iterator[GcpEmulator]:
    """A GCP emulator holding ``resources`` (e.g. ``projects/x``), each with an empty policy."""
    emu = GcpEmulator(port=0).start()
    try:
        for name in resources:
            emu.add_resource(name)
        yield emu
    finally:
        emu.stop()


@contextmanager
def running_github(*repos: str) -> Iterator[GitHubEmulator]:
    """A GitHub API emulator that knows ``repos`` (``owner/name``)."""
    with GitHubEmulator() as emu:
        for repo in repos:
            emu.add_repo(repo)
        yield emu
