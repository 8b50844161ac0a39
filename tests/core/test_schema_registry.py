"""The schemas come from the shipped files plus the provider registry, and agree with them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from reconciler import schema as schemas
from reconciler.core import providers
from reconciler.core.providers import ProviderSpec, register, unregister

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", schemas.NAMES)
def test_the_shipped_file_is_the_schema_of_the_built_in_providers(name: str) -> None:
    # Editors read the shipped file through the yaml-language-server modeline; validate
    # reads the assembled one. They must say the same thing.
    assert schemas.schema(name) == schemas.shipped(name), (
        "reconciler/schemas/ is out of date with the provider registry: "
        "run `python -m reconciler.schema` and commit the result"
    )


@pytest.mark.parametrize("name", schemas.NAMES)
def test_the_shipped_file_is_written_as_the_generator_writes_it(name: str) -> None:
    text = (ROOT / "reconciler" / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8")
    assert text == schemas.render(json.loads(text)) + "\n"


def test_the_provider_choice_names_every_registered_provider() -> None:
    request = schemas.schema("request")["properties"]["provider"]
    policy = schemas.schema("policy")["$defs"]["policy"]["properties"]["provider"]
    for part in (request, policy):
        assert part["enum"] == list(providers.names())
        assert part["x-message"] == "must be gcp or aws"


class Tenant(ProviderSpec):
    name = "tenant-test"
    title = "Tenant Cloud"
    scope_pattern = r"^tenants/[a-z0-9-]+$"
    scope_help = "tenants/<id>"


def test_a_provider_registered_later_is_in_the_next_schema_and_gone_after() -> None:
    before = schemas.checker("policy")
    register(Tenant)
    try:
        enum = schemas.schema("request")["properties"]["provider"]["enum"]
        assert enum[-1] == "tenant-test"
        assert schemas.schema("request")["properties"]["provider"]["x-message"] == (
            "must be gcp, aws or tenant-test"
        )
        assert schemas.checker("policy") is not before
        assert "tenant-test" in schemas.schema("policy")["properties"]["providers"]["properties"]
    finally:
        unregister("tenant-test")
    assert "tenant-test" not in schemas.schema("request")["properties"]["provider"]["enum"]
    assert schemas.checker("policy") is before


@pytest.mark.parametrize(
    "exact, glob",
    [
        (r"^[0-9]{12}$", r"^[0-9*?]{1,12}$"),
        (
            r"^(?:projects/[a-z][a-z0-9-]{4,28}[a-z0-9]|folders/[0-9]{1,20})$",
            r"^(?:projects/[a-z0-9*?-]{1,30}|folders/[0-9*?]{1,20})$",
        ),
        (r"^tenants/[a-z0-9-]+$", r"^tenants/[a-z0-9*?-]+$"),
        (r"^x\.y/[A-Z_]{2,}$", r"^x\.y/[A-Z_*?]+$"),
        (r"^a[0-9]*$", r"^a[0-9*?]*$"),
    ],
    ids=["digits", "alternatives", "unbounded", "escaped-literal", "optional"],
)
def test_a_scope_pattern_widens_to_globs_class_by_class(exact: str, glob: str) -> None:
    assert schemas.glob_pattern(exact) == glob


@pytest.mark.parametrize(
    "exact", [r"^[a-z]+(?:-[a-z]+)*$", r"tenants/[a-z]+", r"^[^/ ]{1,5}$", r"^\d{3}$"]
)
def test_a_pattern_beyond_the_simple_shape_gets_its_exact_form_or_a_bounded_glob(
    exact: str,
) -> None:
    glob = re.compile(schemas.glob_pattern(exact).replace("$", r"\Z"))
    assert glob.match("abc*")
    assert not glob.match("a b*")
    assert not glob.match("x" * (2 * schemas.GLOB_LIMIT + 2) + "*")


def test_globs_of_the_built_in_providers() -> None:
    def ok(provider: str, scope: str) -> bool:
        pattern = schemas.glob_pattern(providers.spec(provider).scope_pattern)
        return re.fullmatch(pattern.rstrip("$"), scope) is not None

    assert ok("gcp", "projects/payments-*")
    assert ok("gcp", "projects/*")
    assert ok("gcp", "folders/12?4")
    assert not ok("gcp", "*")
    assert not ok("gcp", "projects/Payments-*")
    assert ok("aws", "1111*")
    assert not ok("aws", "1111-*")
