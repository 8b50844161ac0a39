"""GCP's limits on one allow policy are planned for, not discovered: through the real
google-cloud-resource-manager client, over HTTP, against an emulator that answers 400 like
IAM when a policy breaks them. A grant that would break one is refused with a message that
names the limit and the numbers; the revokes and the grants that fit go out in the same
write; and no write IAM would refuse is ever sent (the emulator answers no 400)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from google.api_core import exceptions as gexc
from google.iam.v1 import policy_pb2
from google.protobuf import json_format

from reconciler.core.models import ChangeResult, Config, Grant
from reconciler.providers.base import make
from reconciler.providers.gcp import (
    DEFAULT_MAX_POLICY_BYTES,
    Deployment,
    GcpProvider,
    Limits,
    measure,
    modify,
)
from reconciler.sandbox.gcp_emulator import ApiError, GcpEmulator, policy_bytes
from reconciler.sandbox.gcp_emulator import Limits as EmulatorLimits

from .conftest import NOW, add, grant, revoke

P = "projects/payments-prod"


def users(n: int, prefix: str = "u") -> list[str]:
    return [f"user:{prefix}{i:04d}@example.com" for i in range(n)]


def groups(n: int, prefix: str = "g") -> list[str]:
    return [f"group:{prefix}{i:03d}@example.com" for i in range(n)]


def for_member(member: str, role: str = "roles/cloudsql.viewer") -> Grant:
    login = re.sub(r"[^a-z0-9]", "", member.split(":")[1].split("@", maxsplit=1)[0])
    return grant(principal=member, role=role, request=f"requests/{login}/inc-1.yaml")


def principals(policy: dict) -> int:
    return sum(len(b["members"]) for b in policy.get("bindings", []))


def assert_nothing_refused_by_iam(emulator: GcpEmulator) -> None:
    assert emulator.answered[400] == 0
    assert [message for status, message in emulator.errors if status == 400] == []


def refused_by_limit(result: ChangeResult, *needles: str) -> bool:
    text = result.message
    return not result.ok and text.startswith("not granted") and all(n in text for n in needles)


@pytest.fixture
def seeded(emulator: GcpEmulator) -> Callable[..., None]:
    """A scope whose policy already holds ``members`` in an unmanaged binding."""

    def seed(members: list[str], audit: list[dict] | None = None) -> None:
        policy: dict = {"bindings": [{"role": "roles/browser", "members": members}]}
        if audit:
            policy["auditConfigs"] = audit
        emulator.add_resource(P, policy)

    return seed


# -- 1,500 principals -------------------------------------------------------------------


def test_near_1500_principals_the_grants_that_fit_go_with_the_revokes(
    emulator: GcpEmulator, provider: GcpProvider, seeded: Callable[..., None]
):
    seeded(users(1487))
    old = [for_member(m) for m in users(3, prefix="old")]
    assert all(r.ok for r in provider.apply(P, [add(g) for g in old], NOW))
    assert principals(emulator.get_policy(P)) == 1490
    new = [for_member(m) for m in users(15, prefix="new")]
    emulator.reset_counters()

    # The plan lists the revokes last; they still go first, and make room.
    provider.observe([P], NOW)
    results = provider.apply(P, [*(add(g) for g in new), *(revoke(g) for g in old)], NOW)

    granted, refused, revoked = results[:13], results[13:15], results[15:]
    assert all(r.ok and r.message == "granted" for r in granted), [r.message for r in granted]
    assert all(refused_by_limit(r, "1,500 principals", "1,501", P) for r in refused)
    assert all(r.ok and r.message == "revoked" for r in revoked)
    policy = emulator.get_policy(P)
    assert principals(policy) == 1500
    members = {m for b in policy["bindings"] for m in b["members"]}
    assert {g.principal for g in new[:13]} <= members
    assert not members & {g.principal for g in [*new[13:], *old]}
    assert emulator.writes(P) == 1
    assert_nothing_refused_by_iam(emulator)


def test_a_scope_at_the_limit_gets_no_write_at_all(
    emulator: GcpEmulator, provider: GcpProvider, seeded: Callable[..., None]
):
    seeded(users(1500))
    emulator.reset_counters()

    provider.observe([P], NOW)
    [result] = provider.apply(P, [add(for_member("user:late@example.com"))], NOW)

    assert refused_by_limit(result, "1,500 principals", "1,501")
    assert emulator.writes(P) == 0
    assert_nothing_refused_by_iam(emulator)


def test_audit_log_exemptions_count_as_principals(
    emulator: GcpEmulator, provider: GcpProvider, seeded: Callable[..., None]
):
    audit = [
        {
            "service": "allServices",
            "auditLogConfigs": [{"logType": "DATA_READ", "exemptedMembers": users(5, "ex")}],
        }
    ]
    seeded(users(1494), audit)
    first, second = (for_member(m) for m in users(2, prefix="new"))

    results = provider.apply(P, [add(first), add(second)], NOW)

    assert results[0].ok
    assert refused_by_limit(results[1], "1,500 principals", "1,501")
    assert emulator.get_policy(P)["auditConfigs"] == audit
    assert_nothing_refused_by_iam(emulator)


def test_a_concurrent_writer_taking_the_room_is_fitted_again_not_sent(
    emulator: GcpEmulator, provider: GcpProvider, seeded: Callable[..., None]
):
    seeded(users(1495))
    provider.observe([P], NOW)  # the cached read still has room for all five

    def another_writer(policy: dict) -> None:
        policy["bindings"][0]["members"] += users(3, prefix="race")

    emulator.conflict_next(P, mutate=another_writer)
    new = [for_member(m) for m in users(5, prefix="new")]

    results = provider.apply(P, [add(g) for g in new], NOW)

    assert [r.ok for r in results] == [True, True, False, False, False]
    assert all(refused_by_limit(r, "1,500 principals") for r in results[2:])
    assert principals(emulator.get_policy(P)) == 1500
    assert emulator.answered[409] == 1
    assert_nothing_refused_by_iam(emulator)


# -- 250 groups and domains -------------------------------------------------------------


def test_250_groups_each_group_once_and_users_still_fit(
    emulator: GcpEmulator, provider: GcpProvider, seeded: Callable[..., None]
):
    seeded([*groups(247), "domain:example.org"])  # 248 of 250
    one, two, three = (for_member(m) for m in groups(3, prefix="new"))
    user = for_member("user:alice@example.com")
    again = for_member(one.principal, role="roles/logging.viewer")  # a group already counted

    results = provider.apply(P, [add(one), add(two), add(three), add(user), add(again)], NOW)

    assert [r.ok for r in results] == [True, True, False, True, True]
    assert refused_by_limit(results[2], "250 Google groups and domains", "251", P)
    held = {m for b in emulator.get_policy(P)["bindings"] for m in b["members"]}
    assert three.principal not in held and user.principal in held
    assert_nothing_refused_by_iam(emulator)


# -- the size bound ----------------------------------------------------------------------


@pytest.fixture
def small(emulator: GcpEmulator, make_provider: Callable[..., GcpProvider]) -> GcpProvider:
    emulator.limits = EmulatorLimits(policy_bytes=4096)
    return make_provider(max_policy_bytes=4096)


def test_the_byte_bound_refuses_what_does_not_fit_to_the_byte(
    emulator: GcpEmulator, small: GcpProvider
):
    emulator.add_resource(P)
    new = [for_member(m) for m in users(20, prefix="n")]

    results = small.apply(P, [add(g) for g in new], NOW)

    fitted = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert fitted and refused and results[: len(fitted)] == fitted  # the first ones, in order
    assert all(refused_by_limit(r, "max_policy_bytes", "4,096 bytes") for r in refused)
    stored = emulator.get_policy(P)
    assert policy_bytes(stored) <= 4096
    # The size the provider reports for the first refused grant is exactly what IAM would
    # have measured with its binding added: the two sides count the same bytes.
    would_be = int(re.search(r"would be ([\d,]+) bytes", refused[0].message)[1].replace(",", ""))
    assert would_be > 4096
    extra = {
        "role": "roles/cloudsql.viewer",
        "members": [new[len(fitted)].principal],
        "condition": stored["bindings"][-1]["condition"]
        | {
            "title": Deployment().title_for(new[len(fitted)].request or ""),
            "description": Deployment().description_for(new[len(fitted)]),
        },
    }
    assert policy_bytes({"bindings": [*stored["bindings"], extra]}) == would_be
    assert_nothing_refused_by_iam(emulator)


def test_a_policy_already_over_the_bound_is_a_warning_and_revokes_still_go(
    emulator: GcpEmulator, make_provider: Callable[..., GcpProvider]
):
    # IAM (the emulator, at 64 KiB) holds more than this deployment's bound allows, e.g.
    # because the bound was lowered later: revokes only shrink the policy, so they go.
    emulator.add_resource(P)
    old = [for_member(m) for m in users(16, prefix="old")]
    assert all(r.ok for r in make_provider().apply(P, [add(g) for g in old], NOW))
    before = policy_bytes(emulator.get_policy(P))
    assert before > 4096 + 300
    strict = make_provider(max_policy_bytes=4096)
    emulator.reset_counters()

    obs = strict.observe([P], NOW)
    results = strict.apply(P, [add(for_member("user:new@example.com")), revoke(old[0])], NOW)

    assert any(f"is {before:,} bytes" in w and "4,096" in w for w in obs.warnings), obs.warnings
    assert refused_by_limit(results[0], "max_policy_bytes", "4,096 bytes")
    assert results[1].ok and results[1].message == "revoked"
    assert policy_bytes(emulator.get_policy(P)) < before and emulator.writes(P) == 1
    assert_nothing_refused_by_iam(emulator)


def test_max_policy_bytes_is_a_setting_with_a_documented_default(emulator: GcpEmulator):
    def limits(**gcp: object) -> Limits:
        provider = make("gcp", Config(providers={"gcp": gcp}), {"endpoint": emulator.url})
        assert isinstance(provider, GcpProvider)
        return provider.limits

    assert limits().policy_bytes == DEFAULT_MAX_POLICY_BYTES == 65536
    assert limits(max_policy_bytes=4096).policy_bytes == 4096
    assert (limits().principals, limits().groups, limits().conditional_bindings) == (
        1500,
        250,
        100,
    )


# -- conditional bindings: advice, not a refusal -----------------------------------------


def test_over_100_conditional_bindings_is_written_with_a_note_and_a_warning(
    emulator: GcpEmulator, provider: GcpProvider
):
    emulator.add_resource(P)
    new = [for_member(m) for m in users(101, prefix="c")]

    results = provider.apply(P, [add(g) for g in new], NOW)

    assert all(r.ok and r.verified for r in results)
    assert "101 conditional role bindings" in results[0].message
    assert "100 Google advises" in results[0].message
    assert len(emulator.get_policy(P)["bindings"]) == 101
    assert emulator.writes(P) == 1
    warnings = provider.observe([P], NOW).warnings
    assert any("101 conditional role bindings" in w for w in warnings), warnings
    assert_nothing_refused_by_iam(emulator)


def test_100_conditional_bindings_say_nothing(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    results = provider.apply(P, [add(for_member(m)) for m in users(100, prefix="c")], NOW)
    assert all(r.message == "granted" for r in results)
    assert provider.observe([P], NOW).warnings == []


# -- the emulator holds IAM's line -------------------------------------------------------


def test_the_emulator_answers_400_for_each_limit(emulator: GcpEmulator):
    emulator.add_resource(P)
    over = {"bindings": [{"role": "roles/browser", "members": users(1501)}]}
    with pytest.raises(ApiError, match=re.escape("members in the policy (1,501)")) as info:
        emulator.set_policy(P, over)  # direct access raises what HTTP would answer
    assert info.value.status == 400
    emulator.set_policy(P, {"bindings": [{"role": "roles/browser", "members": users(1500)}]})
    too_many = [
        {"role": "roles/browser", "members": groups(250)},
        {"role": "roles/viewer", "members": ["domain:example.org"]},
    ]
    with pytest.raises(ApiError, match=re.escape("groups and domains in the policy (251)")):
        emulator.set_policy(P, {"bindings": too_many})
    # The same group in two bindings is one group; a domain counts at every appearance.
    twice = [{"role": r, "members": groups(250)} for r in ("roles/browser", "roles/viewer")]
    emulator.set_policy(P, {"bindings": twice})
    domains = [{"role": r, "members": ["domain:example.org"]} for r in ("roles/a", "roles/b")]
    with pytest.raises(ApiError, match=re.escape("(252)")):
        emulator.set_policy(P, {"bindings": [*twice, *domains]})


def test_the_emulator_refuses_an_oversized_policy_over_http(emulator: GcpEmulator):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import resourcemanager_v3

    client = resourcemanager_v3.ProjectsClient(
        credentials=AnonymousCredentials(),
        transport="rest",
        client_options=ClientOptions(api_endpoint=emulator.url),
    )
    emulator.limits = EmulatorLimits(policy_bytes=2048)
    emulator.add_resource(P)
    big = {"bindings": [{"role": "roles/browser", "members": users(100)}]}

    with pytest.raises(gexc.BadRequest, match=r"size of the policy \([\d,]+ bytes\)"):
        client.set_iam_policy(request={"resource": P, "policy": big})

    assert emulator.answered[400] == 1 and emulator.errors[0][0] == 400


# -- the measure the provider plans with -------------------------------------------------


def test_the_provider_measures_policies_as_the_emulator_does(emulator: GcpEmulator):
    audit = [{"service": "allServices", "auditLogConfigs": [{"logType": "DATA_READ"}]}]
    emulator.add_resource(P, {"bindings": [{"role": "roles/browser", "members": users(3)}]})
    emulator.set_policy(P, {**emulator.get_policy(P), "auditConfigs": audit})
    stored = emulator.get_policy(P)
    policy = json_format.ParseDict(
        {k: v for k, v in stored.items() if k != "etag"}, policy_pb2.Policy()
    )
    changed = modify(
        P,
        policy,
        [for_member(m) for m in [*users(2, "x"), "group:caf\u00e9@example.com"]],
        [],
        now=NOW,
        deployment=Deployment("acme/access"),
    )
    usage = measure(changed.bindings, changed.audit_configs)
    as_json = json_format.MessageToDict(changed)

    assert usage.size == policy_bytes(as_json)
    assert usage.principals == 6 and usage.group_count == 1
    emulator.set_policy(P, as_json)  # and the emulator stores it without complaint
