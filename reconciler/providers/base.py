"""The provider interface the reconciler needs, and a registry of implementations.

A provider answers two questions and performs one action:

- ``observe(scopes)``: which managed grants exist in these scopes (one read per scope);
- ``apply(scope, grants, revokes)``: make these changes in one scope, verify by reading back.

Scopes fail independently: an observation or apply failure for one scope is reported in
the result and never raised, so the others go on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from reconciler.core import providers
from reconciler.core.models import Change, ChangeResult, Config, Grant


@dataclass
class Observation:
    """Managed grants found per scope, and the scopes that could not be read."""

    grants: dict[str, frozenset[Grant]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # scope -> message
    # Things a person should see that do not make a scope unreadable (a field the
    # decision does not need could not be parsed, a binding of another deployment...).
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # upkeep done, worth a line (not a problem)
    calls: dict[str, int] = field(default_factory=dict)  # API call counts, for benchmarks


class Provider(Protocol):
    name: str

    def observe(self, scopes: Sequence[str], now: datetime) -> Observation:
        """Read the managed grants of every scope (plus the scopes the provider discovers
        itself, e.g. AWS accounts where an owned permission set is provisioned)."""
        ...

    def resolve(self, grants: Sequence[Grant]) -> list[Grant]:
        """The desired grants with ``principal_id`` filled in where the cloud has its own
        id for a principal (AWS: the identity store user id, looked up by exact user name;
        unknown users keep None). Called once per run before planning; never raises for
        cloud failures (a principal that cannot be resolved keeps None)."""
        ...

    def apply(self, scope: str, changes: Sequence[Change], now: datetime) -> list[ChangeResult]:
        """Carry out one scope's grants and revokes; never raises for cloud failures."""
        ...

    def settle(self, now: datetime) -> Observation:
        """Upkeep after the run's changes, even when there were none (AWS: remove session
        denies past their horizon, provision what is not provisioned yet). ``failures``
        are problems a person must see; never raises for cloud failures."""
        ...


def make(name: str, config: Config, options: Mapping[str, Any]) -> Provider:
    """The runtime provider registered as ``name`` (see reconciler.core.providers)."""
    adapter: Provider = providers.spec(name).adapter(config, options)
    return adapter
