"""What each provider's test support gives the shared contract suite (test_contract.py).

A provider joins the suite with one ``Harness`` class registered in ``HARNESSES`` under its
provider name: it runs the provider's emulator, builds the adapter the way the app does
(``reconciler.providers.base.make`` with a Config whose policy owns the role and whose
identities map a login to the principal), hands out a valid scope, role and principals,
plants grants accessctl must never touch, reads back what the cloud holds, and breaks a
scope or the whole cloud on demand. ``test_every_registered_provider_has_a_harness`` keeps
a third provider from being registered without one.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

import reconciler.providers  # noqa: F401 - registers the built-in providers
from reconciler.core.models import Config, Policy
from reconciler.providers.aws import Tuning
from reconciler.providers.base import Provider, make

LOGIN = "alice"
SECOND_LOGIN = "bob"


class Held(NamedTuple):
    """One thing the cloud holds in a scope, as the harness reads it back directly.

    ``detail`` tells apart entries of the same role and principal: the GCP condition
    title ("" for an unconditional binding), the AWS principal type (USER or GROUP)."""

    role: str
    principal: str
    detail: str


class Harness(Protocol):
    """One provider's side of the contract suite."""

    name: str  # the registered provider name
    role: str  # a role the harness's policy owns
    principal: str  # the principal of LOGIN
    second_principal: str  # the principal of SECOND_LOGIN
    unknown_principal: str  # well-formed, but the cloud has no such principal
    # Observed grants carry the request's window, and the spec's identity compares it
    # (GCP: the condition). False: the cloud holds no window (AWS assignments).
    window_in_identity: bool
    # Scopes that do not match spec.scope_pattern but look close; the harness makes them
    # exist in its emulator wherever the emulator lets it, so a failure cannot come from
    # the cloud refusing an unknown resource.
    near_miss_scopes: tuple[str, ...]

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def reset(self) -> None:
        """Forget everything of the previous test (directory seeded again)."""

    def fresh_scope(self) -> str:
        """A scope matching spec.scope_pattern that holds nothing yet."""

    def config(self) -> Config: ...

    def adapter(self) -> Provider:
        """The runtime provider against the emulator, via ``make`` and ``config()``."""

    def unreachable_adapter(self) -> Provider:
        """The runtime provider pointed at an endpoint where nothing listens."""

    def principal_id(self, principal: str) -> str | None:
        """The cloud's own id of a principal that resolve() should fill in (None when the
        provider compares principals by their text)."""

    def add_unmanaged(self, scope: str) -> list[Held]:
        """Plant grants accessctl does not own in ``scope``, directly in the emulator, as
        close to the managed ones as the cloud allows; returns what was planted."""

    def held(self, scope: str) -> list[Held]:
        """Everything the cloud holds in ``scope`` (duplicates kept), read directly."""

    def break_scope(self, scope: str) -> None:
        """From now on the cloud refuses every call about ``scope`` (as for a scope the
        reconciler's credentials cannot reach)."""


def _closed_port() -> int:
    """A local port where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _policy(provider: str, scopes: tuple[str, ...], role: str) -> Policy:
    return Policy(
        name=f"{provider}-contract",
        provider=provider,
        scopes=scopes,
        roles=(role,),
        requesters=(LOGIN, SECOND_LOGIN),
        approvers=("erin",),
        approvals=0,
        max_duration=timedelta(hours=8),
        file=f"policies/{provider}.yaml",
        line=2,
    )


# -- GCP ---------------------------------------------------------------------------------


class GcpHarness:
    name = "gcp"
    role = "roles/cloudsql.viewer"
    principal = "user:alice@example.com"
    second_principal = "user:bob@example.com"
    unknown_principal = "user:nobody@example.com"
    window_in_identity = True
    near_miss_scopes: tuple[str, ...] = (
        "projects/Contract_Upper",  # project ids are lowercase
        "projects/123456789012",  # a project number, not an id
        "organizations/acme",  # organizations are numbers
        "projects/contract-near\n",  # a trailing newline
    )

    def __init__(self) -> None:
        from reconciler.sandbox.gcp_emulator import GcpEmulator

        self.emulator = GcpEmulator(port=0)
        self._scopes = 0

    def start(self) -> None:
        self.emulator.start()

    def stop(self) -> None:
        self.emulator.stop()

    def reset(self) -> None:
        for scope in self.near_miss_scopes:
            try:
                self.emulator.add_resource(scope)
            except ValueError:
                pass  # the emulator itself refuses the name: nothing to plant

    def fresh_scope(self) -> str:
        self._scopes += 1
        scope = f"projects/contract-{self._scopes:04d}"
        self.emulator.add_resource(scope)
        return scope

    def config(self) -> Config:
        return Config(
            policies=(_policy("gcp", ("projects/contract-*",), self.role),),
            identities={
                LOGIN: {"gcp": self.principal},
                SECOND_LOGIN: {"gcp": self.second_principal},
            },
        )

    def _options(self, endpoint: str) -> dict[str, Any]:
        return {
            "endpoint": endpoint,
            "attempts": 2,
            "timeout": 5,
            "backoff_base": 0.005,
            "backoff_max": 0.02,
        }

    def adapter(self) -> Provider:
        return make("gcp", self.config(), self._options(self.emulator.url))

    def unreachable_adapter(self) -> Provider:
        return make("gcp", self.config(), self._options(f"http://127.0.0.1:{_closed_port()}"))

    def principal_id(self, principal: str) -> str | None:
        return None  # IAM compares members by their text

    def add_unmanaged(self, scope: str) -> list[Held]:
        from reconciler.providers.gcp import Deployment

        end = 'request.time < timestamp("2026-12-01T12:00:00Z")'
        other = Deployment("other-org/access")
        request = "requests/alice/contract.yaml"
        bindings: list[dict[str, Any]] = [
            # a standing grant of the very role and member
            {"role": self.role, "members": [self.principal]},
            # another tool's conditional binding, shaped exactly like ours
            {
                "role": self.role,
                "members": [self.principal, self.second_principal],
                "condition": {"title": "break-glass", "expression": end},
            },
            # another accessctl deployment's binding for a request of the same path
            {
                "role": self.role,
                "members": [self.principal],
                "condition": {
                    "title": other.title_for(request),
                    "description": f"accessctl grant for {request}; deployment {other.name}",
                    "expression": end,
                },
            },
            # an old-style title naming no request of this repository
            {
                "role": self.role,
                "members": [self.second_principal],
                "condition": {"title": "accessctl:requests/bob/by-hand.yaml", "expression": end},
            },
        ]
        policy = self.emulator.get_policy(scope)
        policy["bindings"] = [*policy.get("bindings", []), *bindings]
        policy["version"] = 3
        self.emulator.set_policy(scope, policy)
        return [
            Held(b["role"], member, b.get("condition", {}).get("title", ""))
            for b in bindings
            for member in b["members"]
        ]

    def held(self, scope: str) -> list[Held]:
        policy = self.emulator.get_policy(scope)
        return sorted(
            Held(b["role"], member, b.get("condition", {}).get("title", ""))
            for b in policy.get("bindings", [])
            for member in b["members"]
        )

    def break_scope(self, scope: str) -> None:
        self.emulator.fail_next(scope, status=403, count=None)


# -- AWS ---------------------------------------------------------------------------------

ALICE = "alice@example.com"
BOB = "bob@example.com"
FAST = Tuning(
    workers=4,
    poll_first=0.01,
    poll_max=0.05,
    poll_timeout=5,
    retry_attempts=2,
    retry_base=0.01,
    retry_cap=0.05,
)


class AwsHarness:
    name = "aws"
    role = "ReadOnly"
    principal = ALICE
    second_principal = BOB
    unknown_principal = "nobody@example.com"
    window_in_identity = False
    near_miss_scopes: tuple[str, ...] = (
        "11111111111",  # 11 digits
        "1111111111111",  # 13 digits
        "111111111111\n",  # a trailing newline
    )

    def __init__(self) -> None:
        from reconciler.sandbox.aws import AwsSandbox

        self.sandbox = AwsSandbox()
        self.seeded: Any = None
        self._scopes = 0

    def start(self) -> None:
        self.sandbox.start()

    def stop(self) -> None:
        self.sandbox.stop()

    def reset(self) -> None:
        self.sandbox.reset()
        # ReadOnly is owned (named in the policy); BreakGlass is not.
        self.seeded = self.sandbox.seed(
            users=[ALICE, BOB],
            permission_sets={"ReadOnly": "PT1H", "BreakGlass": "PT1H"},
            groups=["ops"],
        )

    def fresh_scope(self) -> str:
        self._scopes += 1
        return f"{400000000000 + self._scopes:012d}"

    def config(self) -> Config:
        return Config(
            policies=(_policy("aws", ("4*",), self.role),),
            identities={
                LOGIN: {"aws": self.principal},
                SECOND_LOGIN: {"aws": self.second_principal},
            },
            providers={"aws": self.seeded.provider_settings()},
        )

    def _make(self, endpoint: str) -> Provider:
        import boto3
        from botocore.config import Config as BotoConfig

        from reconciler.sandbox.aws import FAKE_CREDENTIALS

        session = boto3.session.Session(
            region_name=self.sandbox.region,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        boto = BotoConfig(
            retries={"mode": "standard", "max_attempts": 2},
            connect_timeout=2,
            read_timeout=5,
        )
        options = {
            "tuning": FAST,
            # Clients of our own: nothing read from (or written to) the environment.
            "sso_admin": session.client("sso-admin", endpoint_url=endpoint, config=boto),
            "identitystore": session.client("identitystore", endpoint_url=endpoint, config=boto),
            "sweep_users": True,  # moto does not track provisioning (see aws._wants_sweep)
        }
        return make("aws", self.config(), options)

    def adapter(self) -> Provider:
        return self._make(self.sandbox.url)

    def unreachable_adapter(self) -> Provider:
        return self._make(f"http://127.0.0.1:{_closed_port()}")

    def principal_id(self, principal: str) -> str | None:
        found: str | None = self.seeded.users.get(principal)
        return found

    def add_unmanaged(self, scope: str) -> list[Held]:
        # A GROUP assignment of the owned permission set, and USER assignments of a
        # permission set no policy names, to both managed principals.
        self.sandbox.assign(self.seeded, scope, self.role, "ops")
        self.sandbox.assign(self.seeded, scope, "BreakGlass", self.principal)
        self.sandbox.assign(self.seeded, scope, "BreakGlass", self.second_principal)
        return [
            Held(self.role, "ops", "GROUP"),
            Held("BreakGlass", self.principal, "USER"),
            Held("BreakGlass", self.second_principal, "USER"),
        ]

    def held(self, scope: str) -> list[Held]:
        sso = self.sandbox.client("sso-admin")  # the sandbox's own: no faults, not counted
        names = {v: k for k, v in (*self.seeded.users.items(), *self.seeded.groups.items())}
        out = []
        for ps_name, arn in self.seeded.permission_sets.items():
            pages = sso.get_paginator("list_account_assignments").paginate(
                InstanceArn=self.seeded.instance_arn, AccountId=scope, PermissionSetArn=arn
            )
            for page in pages:
                for row in page["AccountAssignments"]:
                    who = names.get(row["PrincipalId"], row["PrincipalId"])
                    out.append(Held(ps_name, who, row["PrincipalType"]))
        return sorted(out)

    def break_scope(self, scope: str) -> None:
        self.sandbox.faults.deny_account(scope)


HARNESSES: dict[str, Callable[[], Harness]] = {
    "gcp": GcpHarness,
    "aws": AwsHarness,
}

# Contract tests a provider is known to fail: (provider, test name) -> the product bug.
# Marked xfail(strict=True) by conftest.py, so a fix turns the entry red until removed.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {
    ("aws", "test_a_second_apply_of_the_same_grant_is_idempotent"): (
        "a provider that never observed the account creates the assignment again, and the "
        "sandbox (moto) stores a second identical one; whether AWS itself answers an existing "
        "assignment idempotently is not documented. AwsProvider skips creations it has seen "
        "held this run (observe, read-back), which is every planned grant"
    ),
}
