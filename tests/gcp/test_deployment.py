"""Condition titles, the deployment and the typed settings of the GCP provider, through
the real client over HTTP against the emulator (which refuses titles over 100
characters, as the strictest GCP surface might)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

import jsonschema
import pytest

from reconciler.core.models import Config
from reconciler.core.plan import plan
from reconciler.errors import ConfigError
from reconciler.providers.base import make
from reconciler.providers.gcp import TITLE_MAX, Deployment, Gcp, GcpProvider
from reconciler.sandbox.gcp_emulator import GcpEmulator

from .conftest import NOW, add, grant, revoke

P = "projects/payments-prod"
# The longest request path there can be: a 39-character login and a 48-character slug.
LONGEST = f"requests/{'a' * 39}/{'b' * 48}.yaml"
SIBLING = f"requests/{'a' * 39}/{'b' * 47}c.yaml"  # differs only in its last slug character


def titles(emulator: GcpEmulator, scope: str = P) -> list[str]:
    return [b["condition"]["title"] for b in emulator.get_policy(scope).get("bindings", [])]


# -- titles -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployment", "path", "title"),
    [
        (
            "acme/access",
            "requests/alice/inc-4821.yaml",
            "accessctl:bb0610ee:requests/alice/inc-4821.yaml",
        ),
        ("default", "requests/bob/x.yml", "accessctl:37a8eec1:requests/bob/x.yml"),
        (
            "acme/access",
            LONGEST,
            f"accessctl:bb0610ee:{LONGEST[:68]}~{hashlib.sha256(LONGEST.encode()).hexdigest()[:12]}",
        ),
    ],
    ids=["short", "default-deployment", "cut"],
)
def test_title_format(deployment: str, path: str, title: str):
    assert Deployment(deployment).title_for(path) == title
    assert len(title) <= TITLE_MAX


def test_the_longest_path_fits_and_stays_unique():
    ours = Deployment("acme/access")
    assert len(LONGEST) == 102
    assert len(ours.title_for(LONGEST)) == TITLE_MAX
    assert ours.title_for(LONGEST) != ours.title_for(SIBLING)
    # the longest path that is not cut
    fits = "requests/" + "a" * (TITLE_MAX - 19 - 9 - 5) + ".yaml"
    assert ours.title_for(fits) == f"accessctl:{ours.tag}:{fits}"


def test_description_carries_path_pr_and_deployment():
    name = "x" * 100  # the longest deployment name allowed
    text = Deployment(name).description_for(grant(request=LONGEST, pr=123456))
    assert text == f"accessctl grant for {LONGEST} via PR #123456; deployment {name}"
    assert len(text) <= 256


def test_long_paths_round_trip_through_the_cloud(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    long, sibling = grant(request=LONGEST), grant(request=SIBLING)

    results = provider.apply(P, [add(long), add(sibling)], NOW)

    assert all(r.ok and r.verified for r in results), [r.message for r in results]
    assert len(set(titles(emulator))) == 2
    assert all(len(t) <= TITLE_MAX for t in titles(emulator))
    obs = provider.observe([P], NOW)
    assert {g.request for g in obs.grants[P]} == {LONGEST, SIBLING}
    assert not obs.warnings
    emulator.reset_counters()
    kept = plan([long, sibling], obs.grants[P], NOW)
    assert kept.empty and len(kept.keep) == 2

    [gone] = provider.apply(P, [revoke(long)], NOW)

    assert gone.ok and [g.request for g in provider.observe([P], NOW).grants[P]] == [SIBLING]


def test_a_cut_title_whose_description_disagrees_is_not_kept(
    emulator: GcpEmulator, provider: GcpProvider
):
    emulator.add_resource(P)
    provider.apply(P, [add(grant(request=LONGEST))], NOW)
    policy = emulator.get_policy(P)
    policy["bindings"][0]["condition"]["description"] = f"accessctl grant for {SIBLING}"
    emulator.set_policy(P, policy)

    obs = provider.observe([P], NOW)
    [seen] = obs.grants[P]
    the_plan = plan([grant(request=LONGEST), grant(request=SIBLING)], obs.grants[P], NOW)

    assert seen.request == titles(emulator)[0]  # traceable to no request file
    assert any("cannot be traced" in w for w in obs.warnings)
    assert [c.grant.request for c in the_plan.revoke] == [seen.request]
    assert {c.grant.request for c in the_plan.grant} == {LONGEST, SIBLING}
    results = provider.apply(P, [*the_plan.revoke, *the_plan.grant], NOW)
    assert all(r.ok for r in results)
    assert {g.request for g in provider.observe([P], NOW).grants[P]} == {LONGEST, SIBLING}


# -- the window is part of the identity -------------------------------------------------


def test_start_moved_later_replaces_the_binding(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    end = NOW + timedelta(hours=4)
    first = grant(begin=NOW - timedelta(minutes=5), end=end)
    provider.apply(P, [add(first)], NOW)
    # The edited request starts later and ends at the same hard stop.
    later = grant(begin=NOW + timedelta(hours=1), end=end, pr=13)

    obs = provider.observe([P], NOW)
    the_plan = plan([later], obs.grants[P], NOW)
    assert (len(the_plan.revoke), len(the_plan.grant)) == (1, 1)
    results = provider.apply(P, [*the_plan.revoke, *the_plan.grant], NOW)

    assert all(r.ok and r.verified for r in results), [r.message for r in results]
    [binding] = emulator.get_policy(P)["bindings"]
    assert binding["condition"]["expression"] == (
        'request.time >= timestamp("2026-12-01T11:00:00Z") && '
        'request.time < timestamp("2026-12-01T14:00:00Z")'
    )
    assert "via PR #13" in binding["condition"]["description"]
    assert plan([later], provider.observe([P], NOW).grants[P], NOW).empty


def test_a_begin_already_passed_is_no_difference(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    ahead = grant(begin=NOW + timedelta(minutes=30), end=NOW + timedelta(hours=2))
    provider.apply(P, [add(ahead)], NOW)
    later = NOW + timedelta(hours=1)  # the begin bound in the cloud is behind us now

    [seen] = provider.observe([P], later).grants[P]

    assert seen.key(later) == ahead.key(later) and seen.key(NOW) == ahead.key(NOW)
    assert plan([ahead], [seen], later).empty


def test_a_different_end_is_a_different_binding(emulator: GcpEmulator, provider: GcpProvider):
    emulator.add_resource(P)
    provider.apply(P, [add(grant())], NOW)
    longer = grant(end=NOW + timedelta(hours=3))

    [result] = provider.apply(P, [add(longer)], NOW)

    assert result.ok and emulator.writes(P) == 2 and len(titles(emulator)) == 2


# -- settings ---------------------------------------------------------------------------


def settings(**gcp: object) -> Config:
    return Config(providers={"gcp": gcp})


@pytest.mark.parametrize(
    ("policies", "options", "expected"),
    [
        ({}, {}, 8),
        ({"concurrency": 3}, {}, 3),
        ({"concurrency": 3}, {"concurrency": None}, 3),
        ({"concurrency": 3}, {"concurrency": 5}, 5),
        ({}, {"concurrency": 2}, 2),
    ],
    ids=["default", "policies", "flag-not-given", "flag-overrides", "flag-only"],
)
def test_concurrency_setting(emulator: GcpEmulator, policies, options, expected):
    provider = make("gcp", settings(**policies), {"endpoint": emulator.url, **options})
    assert provider.concurrency == expected


def test_concurrency_from_the_policies_bounds_calls_in_flight(emulator: GcpEmulator):
    scopes = [f"projects/conc-{i:02d}-prod" for i in range(9)]
    for scope in scopes:
        emulator.add_resource(scope)
    emulator.latency = 0.1
    provider = make("gcp", settings(concurrency=3), {"endpoint": emulator.url})

    obs = provider.observe(scopes, NOW)

    assert not obs.failures and emulator.max_in_flight == 3


def test_other_settings_from_the_policies(emulator: GcpEmulator):
    config = settings(attempts=2, timeout=7, verify_read=True, deployment="acme/access")
    provider = make("gcp", config, {"endpoint": emulator.url, "backoff_base": 0.001})
    assert isinstance(provider, GcpProvider)
    assert (provider.attempts, provider.timeout, provider.verify_read) == (2, 7.0, True)
    assert provider.deployment.name == "acme/access"

    emulator.add_resource(P)
    emulator.fail_next(P, status=503, count=None)
    assert "after 2 attempts" in provider.observe([P], NOW).failures[P]
    assert emulator.reads(P) == 2


@pytest.mark.parametrize(
    ("policies", "options", "expected"),
    [
        ({}, {}, "default"),
        ({"deployment": "acme/infra"}, {}, "acme/infra"),
        ({"deployment": "acme/infra"}, {"deployment": "acme/access"}, "acme/access"),
        ({}, {"deployment": "acme/access"}, "acme/access"),
    ],
    ids=["default", "policies", "caller-first", "caller-only"],
)
def test_deployment_setting(policies, options, expected):
    provider = make("gcp", settings(**policies), {"endpoint": "http://127.0.0.1:9", **options})
    assert provider.deployment.name == expected


@pytest.mark.parametrize("bad", ["", "x" * 101, " padded", "tab\there", "caf\u00e9"])
def test_deployment_schema_refuses(bad: str):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"deployment": bad}, Gcp.settings_schema)
    if bad:  # an empty option means "not given"; anything else bad is a setup error
        with pytest.raises(ConfigError, match="printable ASCII"):
            make("gcp", Config(), {"endpoint": "http://127.0.0.1:9", "deployment": bad})


def test_settings_schema_accepts_the_documented_keys():
    jsonschema.validate(
        {
            "deployment": "acme/access",
            "concurrency": 3,
            "attempts": 5,
            "timeout": 30,
            "verify_read": False,
        },
        Gcp.settings_schema,
    )


def test_resolve_returns_the_grants_unchanged(make_provider: Callable[..., GcpProvider]):
    grants = [grant(), grant(principal="user:Bob@example.com")]
    assert make_provider().resolve(grants) == grants
