"""A quick yes/no JSON Schema validator for the subset of keywords our schemas use.

jsonschema is thorough but slow (~100 us per small document); validating 10,000 requests
needs the answer "valid?" first, and jsonschema's detailed errors only for files that fail.
``compile_fast`` implements each keyword it meets with jsonschema's exact semantics, or
declines (returns None) when the schema uses anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from reconciler.errors import AccessctlError

Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description"})
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class _Unsupported(AccessctlError):
    """The schema uses a keyword the fast path does not implement: no fast path then."""


def compile_fast(root: Mapping[str, Any]) -> Check | None:
    """A yes/no validator for the subset of JSON Schema our schemas use, ~20x quicker than
    jsonschema. Every keyword present is implemented with jsonschema's exact semantics, or
    this declines (None); tests check it agrees with jsonschema."""
    refs: dict[str, Check] = {}

    def ref(target: str) -> Check:
        if not target.startswith("#/$defs/"):
            raise _Unsupported(target)
        name = target[len("#/$defs/") :]
        if name not in refs:
            refs[name] = lambda v: True  # placeholder while compiling (recursive schemas)
            compiled = build(root["$defs"][name])
            refs[name] = compiled
        return lambda v: refs[name](v)  # noqa: PLW0108 - late-bound: refs[name] changes

    def build(schema: Mapping[str, Any]) -> Check:
        keys = [k for k in schema if not (k in _ANNOTATIONS or k.startswith("x-"))]
        if schema.get("type") == "string" and set(keys) <= _STRING_KEYS:
            return _string(schema)
        checks = tuple(keyword(k, schema[k], schema) for k in keys if k not in ("then", "else"))
        return checks[0] if len(checks) == 1 else _every(checks)

    def keyword(key: str, value: Any, schema: Mapping[str, Any]) -> Check:
        if key == "type":
            if not isinstance(value, str):
                raise _Unsupported(key)
            return _TYPES[value]
        if key == "$ref":
            return ref(value)
        if key in ("enum", "const"):
            allowed = frozenset(value if key == "enum" else [value])
            if not all(isinstance(a, str) for a in allowed):
                raise _Unsupported(key)
            return lambda v: isinstance(v, str) and v in allowed
        if key in ("pattern", "minLength", "maxLength"):
            return _string_keyword(key, value)
        if key in ("minimum", "maximum"):
            bound = value
            if key == "minimum":
                return lambda v: not _TYPES["number"](v) or v >= bound
            return lambda v: not _TYPES["number"](v) or v <= bound
        if key in (
            "properties",
            "additionalProperties",
            "required",
            "propertyNames",
            "minProperties",
        ):
            return _object_keyword(key, value, schema, build)
        if key in ("items", "minItems", "uniqueItems"):
            return _array_keyword(key, value, build)
        if key in ("allOf", "anyOf"):
            parts = [build(s) for s in value]
            if key == "allOf":
                return _every(parts)
            return lambda v: any(p(v) for p in parts)
        if key == "if":
            cond = build(value)
            then = build(schema.get("then", {}))
            other = build(schema.get("else", {}))
            return lambda v: then(v) if cond(v) else other(v)
        raise _Unsupported(key)

    try:
        return build(root)
    except (_Unsupported, KeyError, TypeError, ValueError, re.error):
        return None


_STRING_KEYS = frozenset({"type", "pattern", "minLength", "maxLength", "enum"})


def _every(checks: Sequence[Check]) -> Check:
    def run(v: Any) -> bool:
        # a plain loop: measurably quicker than all() over a generator on this hot path
        for check in checks:  # noqa: SIM110
            if not check(v):
                return False
        return True

    return run


def _string(schema: Mapping[str, Any]) -> Check:
    """The common case in one closure: a string with a pattern, lengths or a set of values."""
    search = re.compile(schema["pattern"]).search if "pattern" in schema else None
    low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
    allowed = frozenset(schema["enum"]) if "enum" in schema else None
    if allowed is not None and not all(isinstance(a, str) for a in allowed):
        raise _Unsupported("enum")

    def run(v: Any) -> bool:
        return (
            isinstance(v, str)
            and len(v) >= low
            and (high is None or len(v) <= high)
            and (allowed is None or v in allowed)
            and (search is None or search(v) is not None)
        )

    return run


def _string_keyword(key: str, value: Any) -> Check:
    if key == "pattern":
        search = re.compile(value).search
        return lambda v: not isinstance(v, str) or search(v) is not None
    n = int(value)
    if key == "minLength":
        return lambda v: not isinstance(v, str) or len(v) >= n
    return lambda v: not isinstance(v, str) or len(v) <= n


def _object_keyword(
    key: str, value: Any, schema: Mapping[str, Any], build: Callable[[Mapping[str, Any]], Check]
) -> Check:
    if key == "properties":
        props = {k: build(s) for k, s in value.items()}

        def properties(v: Any) -> bool:
            if isinstance(v, dict):
                for k, x in v.items():
                    check = props.get(k)
                    if check is not None and not check(x):
                        return False
            return True

        return properties
    if key == "additionalProperties":
        if "patternProperties" in schema:
            raise _Unsupported(key)
        known = frozenset(schema.get("properties", {}))
        extra: Check = (lambda v: False) if value is False else build(value)
        return lambda v: (
            not isinstance(v, dict) or all(extra(x) for k, x in v.items() if k not in known)
        )
    if key == "required":
        needed = frozenset(value)
        return lambda v: not isinstance(v, dict) or needed <= v.keys()
    if key == "propertyNames":
        name = build(value)
        return lambda v: not isinstance(v, dict) or all(name(k) for k in v)
    n = int(value)  # minProperties
    return lambda v: not isinstance(v, dict) or len(v) >= n


def _array_keyword(key: str, value: Any, build: Callable[[Mapping[str, Any]], Check]) -> Check:
    if key == "items":
        item = build(value)
        return lambda v: not isinstance(v, list) or all(item(x) for x in v)
    if key == "uniqueItems":
        if not value:
            return lambda v: True
        # The fast path only sees plain YAML scalars, lists and mappings: compare by repr
        # of JSON-like values (strings stay apart from numbers, as in JSON Schema).
        return lambda v: not isinstance(v, list) or len({repr(x) for x in v}) == len(v)
    n = int(value)  # minItems
    return lambda v: not isinstance(v, list) or len(v) >= n
