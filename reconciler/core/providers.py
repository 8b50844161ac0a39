"""What each cloud means by a scope, a principal and a grant: the one provider registry.

Every provider (``reconciler/providers/<name>.py``) declares its semantics in one class
registered here with ``@register``; the core, the schemas, the CLI and the demo read them
from this registry and never name a cloud themselves. Adding a cloud is one provider
module plus one import line in ``reconciler/providers/__init__.py``.

```python
@register
class ExampleCloud(ProviderSpec):
    name = "example"
    title = "Example Cloud"
    scope_pattern = r"^tenants/[a-z0-9-]+$"
    scope_help = "tenants/<id>"
    principal_pattern = r"^[a-z]+@example\\.com$"
    future_start = False
```

Pure: nothing here imports a cloud SDK, reads a file or the clock. ``adapter()`` builds the
runtime side (the observe/apply object) and is the only method allowed to import an SDK,
lazily, inside its body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from reconciler.core.models import Config, Grant


@dataclass(frozen=True)
class SettingProblem:
    """One wrong value under ``providers.<name>`` (``key`` is None for the whole section)."""

    key: str | None
    message: str


class ProviderSpec:
    """The semantics of one provider. Subclass, set the class attributes, ``@register``."""

    name: ClassVar[str]
    title: ClassVar[str]  # for people: "Google Cloud", "AWS IAM Identity Center"
    scope_pattern: ClassVar[str]  # JSON Schema / Python regex for a request's exact scope
    scope_help: ClassVar[str]  # "projects/<id> | folders/<n> | organizations/<n>"
    principal_pattern: ClassVar[str] = r"^\S+$"  # an identity's principal for this cloud
    principal_help: ClassVar[str] = "a principal"
    role_pattern: ClassVar[str] = r"^\S+$"
    role_help: ClassVar[str] = "a role name"
    # Whether a grant whose window begins later may be written ahead of time (the cloud
    # enforces the begin itself, like a GCP IAM condition). False: granted at begin.
    future_start: ClassVar[bool] = False
    # JSON Schema of ``providers.<name>`` in the policies (closed object).
    settings_schema: ClassVar[Mapping[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
    }
    # Settings a policy of this provider cannot work without (e.g. an instance ARN).
    settings_required: ClassVar[bool] = False

    # -- principals and roles ------------------------------------------------------

    def principal_id(self, principal: str) -> str:
        """A principal as the cloud compares it (case rules of the cloud). Default: as is."""
        return principal

    def role_refusal(self, role: str) -> str | None:
        """Why this role can never be granted temporarily, or None."""
        return None

    def scope_matches(self, scope: str) -> bool:
        return re.fullmatch(self.scope_pattern, scope) is not None

    # -- settings ------------------------------------------------------------------

    def settings_problems(self, raw: Mapping[str, Any]) -> list[SettingProblem]:
        """Problems of ``providers.<name>`` beyond its schema (cross-field rules)."""
        return []

    # -- grants --------------------------------------------------------------------

    def identity(self, grant: Grant, now: datetime) -> Hashable:
        """What makes two grants the same thing in the cloud at ``now``: every field that
        changes what the cloud allows. Desired and observed grants compare by this."""
        return (
            grant.provider,
            grant.scope,
            grant.role,
            grant.principal_id or self.principal_id(grant.principal),
        )

    def writable_now(self, grant: Grant, now: datetime) -> bool:
        """Whether a desired grant should exist in the cloud at ``now``."""
        if grant.end is not None and grant.end <= now:
            return False
        return self.future_start or grant.begin is None or grant.begin <= now

    # -- runtime -------------------------------------------------------------------

    def adapter(self, config: Config, options: Mapping[str, Any]) -> Any:
        """The runtime provider (``reconciler.providers.base.Provider``). May raise
        ConfigError when it cannot be set up (no credentials...)."""
        raise NotImplementedError(f"provider {self.name} has no runtime adapter")


S = TypeVar("S", bound=type[ProviderSpec])
_REGISTRY: dict[str, ProviderSpec] = {}


def register(cls: S) -> S:
    """Class decorator: make ``cls`` the provider named ``cls.name``."""
    name = cls.name
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,31}", name):
        raise ValueError(f"provider name {name!r} must be lowercase letters, digits, hyphens")
    _REGISTRY[name] = cls()
    return cls


def unregister(name: str) -> None:
    """Remove a provider (tests that register a fake one clean up with this)."""
    _REGISTRY.pop(name, None)


def spec(name: str) -> ProviderSpec:
    """The registered provider ``name``; KeyError when there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no provider named {name!r} (known: {', '.join(names())})") from None


def known(name: object) -> bool:
    return isinstance(name, str) and name in _REGISTRY


def names() -> tuple[str, ...]:
    """Registered provider names, in registration order."""
    return tuple(_REGISTRY)


def specs() -> Iterator[ProviderSpec]:
    return iter(tuple(_REGISTRY.values()))


def identity(grant: Grant, now: datetime) -> Hashable:
    return spec(grant.provider).identity(grant, now)


IdentityFn = Callable[["Grant", datetime], Hashable]
