"""The JSON Schemas of request and policy files: the shipped files plus the provider registry.

The files under ``reconciler/schemas/`` hold everything that does not depend on which
providers exist, and describe the built-in providers (editors read them through the
``yaml-language-server`` modeline). ``schema(name)`` replaces every provider-dependent part
from the registry (``reconciler.core.providers``): the ``provider`` enums, the scope and
role pattern of each provider, its ``identities`` principal and its ``providers.<name>``
settings. A provider registered later (a plug-in, a test's fake) appears in the next call.

After changing a built-in provider, rewrite the shipped files with
``python -m reconciler.schema``; a test checks they agree with the registry.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from reconciler.core import providers
from reconciler.core.providers import ProviderSpec
from reconciler.core.validate import SchemaChecker

NAMES = ("request", "policy")
GLOB_LIMIT = 200  # characters of a policy scope glob a provider pattern cannot describe


def schema(name: str) -> dict[str, Any]:
    """``request`` or ``policy``: the JSON Schema for the providers registered now."""
    return _assembled(name, tuple(providers.specs()))


def checker(name: str) -> SchemaChecker:
    """The compiled ``schema(name)``, once per registry state."""
    return _checker(name, tuple(providers.specs()))


def shipped(name: str) -> dict[str, Any]:
    """The schema file as shipped in reconciler/schemas/ (a fresh copy)."""
    loaded: dict[str, Any] = json.loads(_shipped_text(name))
    return loaded


# Keyed on the registered spec objects themselves: registering or unregistering a
# provider (or re-registering a name with another class) changes the key.
@lru_cache(maxsize=16)
def _assembled(name: str, specs: tuple[ProviderSpec, ...]) -> dict[str, Any]:
    base = shipped(name)
    if name == "request":
        _request(base, specs)
    elif name == "policy":
        _policy(base, specs)
    return base


@lru_cache(maxsize=16)
def _checker(name: str, specs: tuple[ProviderSpec, ...]) -> SchemaChecker:
    return SchemaChecker(_assembled(name, specs))


@cache
def _shipped_text(name: str) -> str:
    if name not in NAMES:
        raise KeyError(f"no schema named {name!r} (known: {', '.join(NAMES)})")
    return resources.files("reconciler").joinpath(f"schemas/{name}.schema.json").read_text("utf-8")


# -- request.schema.json ---------------------------------------------------------------------


def _request(base: dict[str, Any], specs: Sequence[ProviderSpec]) -> None:
    props = base["properties"]
    props["provider"] |= _provider_enum(specs)
    props["scope"]["description"] = _per_provider(specs, lambda s: s.scope_help)
    props["role"]["description"] = _per_provider(specs, lambda s: s.role_help)
    base["allOf"] = [
        _when(
            s.name,
            {
                "scope": _constraint(
                    s.scope_pattern, "E-REQ-SCOPE", f"for {s.name} must be {s.scope_help}"
                ),
                "role": _constraint(
                    s.role_pattern, "E-REQ-ROLE", f"for {s.name} must be {s.role_help}"
                ),
            },
        )
        for s in specs
    ]


# -- policy.schema.json ----------------------------------------------------------------------


def _policy(base: dict[str, Any], specs: Sequence[ProviderSpec]) -> None:
    entry = base["$defs"]["policy"]
    entry["properties"]["provider"] |= _provider_enum(specs)
    entry["allOf"] = [
        _when(
            s.name,
            {
                "scopes": {
                    "items": _constraint(
                        glob_pattern(s.scope_pattern),
                        "E-CONFIG-SCOPE",
                        f"for {s.name} must be {s.scope_help}; * and ? may stand for part of it",
                    )
                },
                "roles": {
                    "items": _constraint(
                        s.role_pattern,
                        "E-CONFIG-ROLE",
                        f"for {s.name} must be {s.role_help}; no globs",
                    )
                },
            },
        )
        for s in specs
    ]
    identity = base["properties"]["identities"]["additionalProperties"]
    identity["properties"] = {s.name: _principal(s) for s in specs}
    identity["x-message"] = f"needs a {_either(s.name for s in specs)} principal"
    base["properties"]["providers"]["properties"] = {
        s.name: copy.deepcopy(dict(s.settings_schema)) for s in specs
    }


def _principal(s: ProviderSpec) -> dict[str, Any]:
    return {"type": "string"} | _constraint(
        s.principal_pattern, "E-CONFIG-IDENTITY", f"must be {s.principal_help}"
    )


# -- parts -----------------------------------------------------------------------------------


def _provider_enum(specs: Sequence[ProviderSpec]) -> dict[str, Any]:
    names = [s.name for s in specs]
    return {"enum": names, "x-message": f"must be {_either(names)}"}


def _when(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "if": {"properties": {"provider": {"const": name}}, "required": ["provider"]},
        "then": {"properties": properties},
    }


def _constraint(pattern: str, code: str, message: str) -> dict[str, Any]:
    return {"pattern": pattern, "x-code": code, "x-message": message}


def _per_provider(specs: Sequence[ProviderSpec], text: Any) -> str:
    return "; ".join(f"{s.name}: {text(s)}" for s in specs) + "."


def _either(names: Iterable[str]) -> str:
    """``gcp or aws``; ``gcp, aws or acme``."""
    items = list(names)
    return " or ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


# -- policy scopes: a provider's scope pattern, widened to globs --------------------------------


def glob_pattern(exact: str) -> str:
    """The pattern of a policy scope for a provider whose exact scopes match ``exact``.

    Literal text stays as written; each run of character classes may also hold ``*`` and
    ``?`` and be shorter, since a wildcard stands for part of the id:
    ``^[0-9]{12}$`` -> ``^[0-9*?]{1,12}$``, ``^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]$`` ->
    ``^projects/[a-z0-9*?-]{1,30}$``. A pattern beyond anchored alternatives of literals and
    quantified classes gets ``exact`` or any glob of at most GLOB_LIMIT visible characters.
    """
    try:
        alternatives = [_widen(a) for a in _alternatives(exact)]
    except ValueError:
        inner = exact.removeprefix("^")
        inner = inner[:-1] if inner.endswith("$") and not inner.endswith("\\$") else inner
        n = GLOB_LIMIT
        return f"^(?:{inner}|[^\\s*?]{{0,{n}}}[*?]\\S{{0,{n}}})$"
    if len(alternatives) == 1:
        return f"^{alternatives[0]}$"
    return "^(?:" + "|".join(alternatives) + ")$"


_PLAIN = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:_=,@-!#%&'~<>\""
)


def _alternatives(exact: str) -> list[str]:
    """``^(?:a|b)$`` -> [a, b]; ``^a$`` -> [a]; ValueError for anything else."""
    if not (exact.startswith("^") and exact.endswith("$")) or exact.endswith("\\$"):
        raise ValueError(exact)
    body = exact[1:-1]
    if not (body.startswith("(?:") and body.endswith(")")):
        return [body]
    return body[3:-1].split("|")  # _widen refuses any group or | left inside a part


def _widen(part: str) -> str:
    out: list[str] = []
    run: list[tuple[list[str], int, int | None]] = []  # (class items, min, max) in a row
    i = 0
    while i < len(part):
        char = part[i]
        if char == "[":
            items, i = _class_items(part, i + 1)
            low, high, i = _quantifier(part, i)
            run.append((items, low, high))
            continue
        if run:
            out.append(_glob_class(run))
            run = []
        if char == "\\" and i + 1 < len(part) and not part[i + 1].isalnum():
            out.append(part[i : i + 2])
            i += 2
        elif char in _PLAIN:
            out.append(char)
            i += 1
        else:
            raise ValueError(part)
    if run:
        out.append(_glob_class(run))
    return "".join(out)


def _class_items(part: str, i: int) -> tuple[list[str], int]:
    """The ranges and characters of ``[...]`` starting after its ``[``; the index after ``]``."""
    items: list[str] = []
    if part[i : i + 1] in ("^", "]"):
        raise ValueError(part)
    while i < len(part) and part[i] != "]":
        if part[i] == "\\":
            item, i = part[i : i + 2], i + 2
        elif i + 2 < len(part) and part[i + 1] == "-" and part[i + 2] != "]":
            item, i = part[i : i + 3], i + 3
        else:
            item, i = part[i], i + 1
        if "[" in item or (len(item) == 2 and item[1].isalnum()):
            raise ValueError(part)
        items.append(item)
    if i >= len(part):
        raise ValueError(part)
    return items, i + 1


def _quantifier(part: str, i: int) -> tuple[int, int | None, int]:
    """(min, max or None, index after) of the quantifier at ``i`` (none: exactly once)."""
    char = part[i : i + 1]
    if char in ("+", "*", "?"):
        return {"+": (1, None), "*": (0, None), "?": (0, 1)}[char] + (i + 1,)
    if char != "{":
        return 1, 1, i
    end = part.index("}", i)
    low, comma, high = part[i + 1 : end].partition(",")
    if not low.isdigit() or (high and not high.isdigit()):
        raise ValueError(part)
    if not comma:
        return int(low), int(low), end + 1
    return int(low), int(high) if high else None, end + 1


def _glob_class(run: list[tuple[list[str], int, int | None]]) -> str:
    """One class for a run of classes: every character any of them allows, plus * and ?."""
    items = list(dict.fromkeys(item for items, _, _ in run for item in items))
    dash = "-" in items
    chars = "".join(item for item in items if item != "-") + "*?" + ("-" if dash else "")
    low = 1 if sum(lo for _, lo, _ in run) >= 1 else 0
    highs = [hi for _, _, hi in run]
    if any(hi is None for hi in highs):
        return f"[{chars}]" + ("+" if low else "*")
    return f"[{chars}]{{{low},{sum(hi for hi in highs if hi is not None)}}}"


# -- python -m reconciler.schema: rewrite the shipped files -------------------------------------


def render(value: Any, indent: int = 0, lead: int = 0, width: int = 100) -> str:
    """JSON as the shipped files write it: a value on one line when it fits, else expanded
    (``lead``: characters before it on its first line, such as its key)."""
    flat = json.dumps(value, separators=(", ", ": "))
    if indent + lead + len(flat) <= width or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, list):
        inner = [pad + render(v, indent + 2, 0, width) for v in value]
        return "[\n" + ",\n".join(inner) + "\n" + " " * indent + "]"
    inner = []
    for key, v in value.items():
        head = f"{json.dumps(key)}: "
        inner.append(pad + head + render(v, indent + 2, len(head), width))
    return "{\n" + ",\n".join(inner) + "\n" + " " * indent + "}"


def main(argv: Sequence[str] = ()) -> int:
    """Write the assembled schemas over the shipped files (in a source checkout)."""
    target = Path(argv[0]) if argv else Path(__file__).resolve().parent / "schemas"
    for name in NAMES:
        path = target / f"{name}.schema.json"
        path.write_text(render(schema(name)) + "\n", encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
