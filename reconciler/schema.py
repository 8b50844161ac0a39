"""The JSON Schemas of request and policy files, loaded once per process.

The shipped files under ``reconciler/schemas/`` describe the built-in providers (editors
read them through the ``yaml-language-server`` modeline); the parts that depend on which
providers exist come from the provider registry (``reconciler.core.providers``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from reconciler.core.validate import SchemaChecker


@cache
def schema(name: str) -> dict[str, Any]:
    """``request`` or ``policy``: the JSON Schema shipped in reconciler/schemas/."""
    text = resources.files("reconciler").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def checker(name: str) -> SchemaChecker:
    return SchemaChecker(schema(name))
