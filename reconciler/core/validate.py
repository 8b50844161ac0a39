"""Layered validation of loaded files: shape, then JSON Schema, then meaning -> Findings at file:line.

Layers, each reporting every problem it finds (one finding per location, the most specific):

1. shape: the document is a mapping (not empty, not a list or a scalar);
2. schema: ``request.schema.json`` / ``policy.schema.json`` (closed objects, patterns);
3. meaning: durations and timestamps parse, regexes compile, names are unique across files,
   teams exist, and a request is judged by the policies (``check_request_now``).

Schemas are passed in as dicts (``SchemaChecker(schema)``) so the core reads no files.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.core.loader import Document, Path_
from reconciler.core.models import (
    GCP_BASIC_ROLES,
    AccessRequest,
    Config,
    Decision,
    Policy,
    Reason,
)
from reconciler.core.policy import evaluate
from reconciler.core.timeutil import format_rfc3339, parse_duration, parse_rfc3339
from reconciler.errors import Finding

# A refusal's reason -> the finding code a person (and a test) sees.
REFUSAL_CODES: dict[Reason, str] = {
    Reason.NO_POLICY: "E-POLICY-NONE",
    Reason.NOT_REQUESTER: "E-POLICY-NOT-REQUESTER",
    Reason.TOO_LONG: "E-POLICY-TOO-LONG",
    Reason.EMPTY_WINDOW: "E-POLICY-EMPTY-WINDOW",
    Reason.TICKET_MISSING: "E-POLICY-TICKET-MISSING",
    Reason.TICKET_MISMATCH: "E-POLICY-TICKET-MISMATCH",
    Reason.NO_IDENTITY: "E-POLICY-NO-IDENTITY",
    Reason.BASIC_ROLE: "E-REQ-BASIC-ROLE",
    Reason.APPROVALS_MISSING: "E-POLICY-APPROVALS",
    Reason.WRONG_DIRECTORY: "E-REQ-DIRECTORY",
}
_KIND = {
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
    type(None): "empty (null)",
}
_GLOB_CHARS = re.compile(r"[*?\[]")
_GCP_PROJECT = re.compile(r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_AWS_ACCOUNT = re.compile(r"^[0-9]{12}$")


MAX_SCHEMA_FINDINGS = 50


class SchemaChecker:
    """A JSON Schema compiled once; ``check(doc)`` -> the most specific finding per location.

    A fast path answers "valid?" ~20x quicker than jsonschema (``compile_fast``); jsonschema
    then only runs on files that have problems, to report them well.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.fast = compile_fast(schema)
        self._validator: Any = None

    @property
    def validator(self) -> Any:
        """jsonschema's validator, built (and jsonschema imported) only once a file needs it."""
        if self._validator is None:
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(self.schema)
        return self._validator

    def check(self, doc: Document, data: Any) -> list[tuple[Path_, Finding]]:
        """(path of the offending entry, finding) for every problem, one per location."""
        if self.fast is not None and self.fast(data):
            return []
        found: dict[tuple[Path_, str, str], tuple[Path_, Finding]] = {}
        for error in self.validator.iter_errors(data):
            for path, finding in _error_findings(doc, error):
                found.setdefault((path, finding.code, finding.message), (path, finding))
            if len(found) > MAX_SCHEMA_FINDINGS:
                break  # a hostile file gets enough to see the problem, not a flood
        out = sorted(found.values(), key=lambda pf: (pf[1].line, pf[1].code, pf[1].message))
        if len(out) > MAX_SCHEMA_FINDINGS:
            del out[MAX_SCHEMA_FINDINGS:]
            last = out[-1][1]
            out.append(
                (
                    (),
                    Finding(
                        doc.file,
                        last.line,
                        "E-SCHEMA-MORE",
                        "more problems follow; fix these first",
                    ),
                )
            )
        return out


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


class _Unsupported(Exception):
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
        if key in ("items", "minItems"):
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
    n = int(value)  # minItems
    return lambda v: not isinstance(v, list) or len(v) >= n


def _error_findings(doc: Document, error: Any) -> list[tuple[Path_, Finding]]:
    """One jsonschema error -> findings a person can act on."""
    path: Path_ = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    where = _where(path)
    file = doc.file
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed][: MAX_SCHEMA_FINDINGS + 1]
        return [
            (
                (*path, k),
                Finding(
                    file, doc.line((*path, k)), "E-SCHEMA-UNKNOWN-KEY", _unknown(k, allowed, where)
                ),
            )
            for k in extras
        ]
    if error.validator == "required" and isinstance(error.instance, dict):
        return [
            (
                path,
                Finding(
                    file, doc.line(path), "E-SCHEMA-MISSING", f"{where}missing required key {k!r}"
                ),
            )
            for k in schema.get("required", ())
            if k not in error.instance
        ]
    if error.validator == "type":
        want = error.validator_value
        want = want if isinstance(want, str) else " or ".join(want)
        want = {"object": "mapping", "array": "list", "integer": "whole number"}.get(want, want)
        got = _KIND.get(type(error.instance), type(error.instance).__name__)
        return [
            (
                path,
                Finding(
                    file, doc.line(path), "E-SCHEMA-TYPE", f"{where}must be a {want}, not {got}"
                ),
            )
        ]
    if error.validator in ("anyOf", "oneOf") and "x-code" not in schema and error.context:
        from jsonschema.exceptions import best_match

        return _error_findings(doc, best_match(error.context))
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        path = (*path, error.instance)  # the error is about a key: point at that key
        where = _where(path)
    code = str(schema.get("x-code", "E-SCHEMA-VALUE"))
    message = str(schema.get("x-message", "")) or error.message
    shown = "" if isinstance(error.instance, dict | list) else f" (got {_show(error.instance)})"
    return [(path, Finding(file, doc.line(path), code, f"{where}{message}{shown}"))]


def _where(path: Path_) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"{text}: " if text else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown(key: str, allowed: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (allowed: {', '.join(allowed)})"
    return f"{where}unknown key {_show(key)}{hint}"


def _as_mapping(doc: Document, what: str) -> dict[str, Any] | None:
    """Shape layer: the document must be a non-empty mapping."""
    if isinstance(doc.data, dict) and doc.data:
        return doc.data
    if doc.data is None or doc.data == {}:
        problem = "the file is empty"
    else:
        problem = f"the file holds {_KIND.get(type(doc.data), 'a value')}"
    doc.findings.append(
        Finding(doc.file, doc.line(), "E-SCHEMA-SHAPE", f"{problem}; expected a mapping ({what})")
    )
    return None


def _ints_to_text(value: Any, keep: frozenset[str] = frozenset(), key: str = "") -> Any:
    """Integers back to the text written (lossless: the loader only reads plain decimals), so
    ``scope: 123456789012`` or ``requester: 1234`` work unquoted. ``keep`` names integer keys."""
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, int):
        return value if key in keep else str(value)
    if isinstance(value, dict):
        return {k: _ints_to_text(v, keep, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints_to_text(v, keep, key) for v in value]
    return value


# --- requests -------------------------------------------------------------------------------


def check_request(doc: Document, checker: SchemaChecker) -> AccessRequest | None:
    """A loaded request file -> AccessRequest, or None with ``doc.findings`` saying why."""
    if not doc.ok:
        return None
    raw = _as_mapping(doc, "requester, provider, scope, role, reason, duration...")
    if raw is None:
        return None
    data = _ints_to_text(raw)
    doc.findings.extend(f for _, f in checker.check(doc, data))
    if doc.findings:
        return None
    duration = _parsed(doc, data, "duration", parse_duration, "E-REQ-DURATION")
    start = _parsed(doc, data, "start", parse_rfc3339, "E-REQ-TIME")
    expires = _parsed(doc, data, "expires", parse_rfc3339, "E-REQ-TIME")
    if doc.findings:
        return None
    return AccessRequest(
        path=doc.file,
        requester=data["requester"],
        provider=data["provider"],
        scope=data["scope"],
        role=data["role"],
        reason=data["reason"],
        ticket=data.get("ticket"),
        duration=duration,
        start=start,
        expires=expires,
        lines={k: doc.lines.get((k,), 1) for k in data},
    )


def _parsed(doc: Document, data: Mapping[str, Any], key: str, parse: Any, code: str) -> Any:
    if key not in data:
        return None
    try:
        return parse(data[key])
    except ValueError as exc:
        doc.findings.append(Finding(doc.file, doc.line((key,)), code, f"{key}: {exc}"))
        return None


def check_request_now(
    request: AccessRequest, config: Config, now: datetime
) -> tuple[Decision, list[Finding]]:
    """Judge a request as if merged ``now`` (the PR stage): expiry, then every policy refusal."""
    findings: list[Finding] = []
    expired = request.expires is not None and request.expires <= now
    if expired:
        findings.append(
            Finding(
                request.path,
                request.line_of("expires"),
                "E-REQ-EXPIRED",
                f"expires {format_rfc3339(request.expires)} is already in the past"
                if request.expires
                else "",
            )
        )
    decision = evaluate(request, config, approved_at=now, approvals=None)
    findings.extend(
        f
        for f in decision_findings(decision)
        if not (expired and f.code == REFUSAL_CODES[Reason.EMPTY_WINDOW])
    )
    return decision, findings


def decision_findings(decision: Decision) -> list[Finding]:
    """A refused decision's refusals as findings at the line of the key each concerns."""
    request = decision.request
    out: list[Finding] = []
    refusals = decision.refusals
    # A policy that does not list the requester is noise next to one that does (and refuses
    # for a reason the requester can fix): show the fixable reasons.
    listing = {r.policy for r in refusals if r.policy} - {
        r.policy for r in refusals if r.reason is Reason.NOT_REQUESTER
    }
    if listing:
        refusals = tuple(r for r in refusals if r.reason is not Reason.NOT_REQUESTER)
    for refusal in refusals:
        line = request.line_of(refusal.key) if refusal.key else 1
        finding = Finding(request.path, line, REFUSAL_CODES[refusal.reason], refusal.message)
        if finding not in out:
            out.append(finding)
    return out


# --- policy files ---------------------------------------------------------------------------


@dataclass
class PolicyFile:
    """What one policy file contributes, with the document for line numbers."""

    doc: Document
    policies: list[tuple[int, Policy]] = field(default_factory=list)  # (index, policy)
    entries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # every one, raw
    teams: dict[str, frozenset[str]] = field(default_factory=dict)
    identities: dict[str, dict[str, str]] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_policy_file(doc: Document, checker: SchemaChecker) -> PolicyFile:
    """One loaded policy file -> its valid parts; problems go to ``doc.findings``.

    Every check runs on every entry, so all problems show at once; but a policy with any
    problem is left out (fail closed), as is an invalid team, identity or provider entry.
    """
    out = PolicyFile(doc)
    if not doc.ok:
        return out
    raw = _as_mapping(doc, "policies, teams, identities, providers")
    if raw is None:
        return out
    data = _ints_to_text(raw, keep=frozenset({"approvals"}))
    errors = checker.check(doc, data)
    doc.findings.extend(f for _, f in errors)
    bad = {path for path, _ in errors}
    entries = data.get("policies")
    for i, entry in enumerate(entries if isinstance(entries, list) else ()):
        if isinstance(entry, dict):
            out.entries.append((i, entry))
            policy = _policy(doc, entry, i, bad)
            if policy is not None:
                out.policies.append((i, policy))
    for section in ("teams", "identities", "providers"):
        value = data.get(section)
        if not isinstance(value, dict) or any(p[:1] == (section,) and len(p) == 1 for p in bad):
            continue
        broken = {p[1] for p in bad if len(p) >= 2 and p[0] == section}
        for name, item in value.items():
            if name in broken:
                continue
            if section == "teams":
                out.teams[name] = frozenset(str(m).lower() for m in item)
            elif section == "identities":
                out.identities[name.lower()] = dict(item)
            else:
                out.providers[name] = dict(item)
    return out


def _policy(doc: Document, entry: Mapping[str, Any], index: int, bad: set[Path_]) -> Policy | None:
    """The meaning checks of one policy entry (each where its value is well-formed), then
    the Policy, if nothing at all is wrong with it."""
    here: Path_ = ("policies", index)
    before = len(doc.findings)
    schema_ok = not any(p[:2] == here or p == ("policies",) for p in bad)
    ticket = _ticket_pattern(doc, entry, here)
    max_duration = None
    if (*here, "max_duration") not in bad and isinstance(entry.get("max_duration"), str):
        try:
            max_duration = parse_duration(entry["max_duration"])
        except ValueError as exc:
            doc.findings.append(
                Finding(
                    doc.file,
                    doc.line((*here, "max_duration")),
                    "E-CONFIG-DURATION",
                    f"{_where((*here, 'max_duration'))}{exc}",
                )
            )
    _check_scopes(doc, entry, here, bad)
    _check_basic_roles(doc, entry, here)
    if not schema_ok or len(doc.findings) > before or max_duration is None:
        return None
    return Policy(
        name=entry["name"],
        provider=entry["provider"],
        scopes=tuple(entry["scopes"]),
        roles=tuple(entry["roles"]),
        requesters=tuple(entry["requesters"]),
        approvers=tuple(entry.get("approvers", ())),
        approvals=entry["approvals"],
        max_duration=max_duration,
        description=entry.get("description", ""),
        ticket=ticket,
        file=doc.file,
        line=doc.line(here),
    )


def _ticket_pattern(doc: Document, entry: Mapping[str, Any], here: Path_) -> re.Pattern[str] | None:
    """The policy's ticket regex, compiled once; an invalid one is a finding."""
    text = entry.get("ticket")
    if not isinstance(text, str):
        return None
    try:
        return re.compile(text)
    except (re.error, RecursionError, OverflowError, ValueError) as exc:
        doc.findings.append(
            Finding(
                doc.file,
                doc.line((*here, "ticket")),
                "E-CONFIG-REGEX",
                f"{_where((*here, 'ticket'))}invalid regular expression: {exc}",
            )
        )
        return None


def _strings(entry: Mapping[str, Any], key: str) -> list[tuple[int, str]]:
    value = entry.get(key)
    items = value if isinstance(value, list) else []
    return [(j, item) for j, item in enumerate(items) if isinstance(item, str)]


def _check_scopes(doc: Document, entry: Mapping[str, Any], here: Path_, bad: set[Path_]) -> None:
    """A scope without glob characters must be a complete, exact scope."""
    provider = entry.get("provider")
    if provider not in ("gcp", "aws"):
        return
    for j, scope in _strings(entry, "scopes"):
        if _GLOB_CHARS.search(scope) or (*here, "scopes", j) in bad:
            continue
        exact = (
            _AWS_ACCOUNT.match(scope)
            if provider == "aws"
            else (_GCP_PROJECT.match(scope) or not scope.startswith("projects/"))
        )
        if not exact:
            want = "a 12-digit account id" if provider == "aws" else "a valid project id"
            doc.findings.append(
                Finding(
                    doc.file,
                    doc.line((*here, "scopes", j)),
                    "E-CONFIG-SCOPE",
                    f"{_where((*here, 'scopes', j))}{scope!r} is not {want} (nor a glob)",
                )
            )


def _check_basic_roles(doc: Document, entry: Mapping[str, Any], here: Path_) -> None:
    if entry.get("provider") != "gcp":
        return
    for j, role in _strings(entry, "roles"):
        if role in GCP_BASIC_ROLES:
            doc.findings.append(
                Finding(
                    doc.file,
                    doc.line((*here, "roles", j)),
                    "E-CONFIG-BASIC-ROLE",
                    f"{_where((*here, 'roles', j))}{role} is a basic role; GCP cannot put a time condition on it, "
                    "so accessctl cannot grant it temporarily",
                )
            )


def merge_config(files: Iterable[PolicyFile]) -> tuple[Config, list[Finding]]:
    """Merge policy files (in path order): duplicates across files, team references, providers."""
    files = list(files)
    findings: list[Finding] = []
    seen: dict[tuple[str, str], tuple[str, int]] = {}  # (kind, lowercased key) -> (file, line)

    def first(kind: str, key: str, pf: PolicyFile, path: Path_) -> bool:
        line = pf.doc.line(path)
        other = seen.setdefault((kind, key.lower()), (pf.doc.file, line))
        if other != (pf.doc.file, line):
            findings.append(
                Finding(
                    pf.doc.file,
                    line,
                    "E-CONFIG-DUPLICATE",
                    f"{kind} {key!r} is already defined at {other[0]}:{other[1]}",
                )
            )
            return False
        return True

    policies: list[tuple[PolicyFile, int, Policy]] = []
    teams: dict[str, frozenset[str]] = {}
    identities: dict[str, dict[str, str]] = {}
    providers: dict[str, dict[str, Any]] = {}
    for pf in files:
        valid = dict(pf.policies)
        for i, entry in pf.entries:
            name = entry.get("name")
            unique = not isinstance(name, str) or first("policy", name, pf, ("policies", i, "name"))
            if unique and i in valid:
                policies.append((pf, i, valid[i]))
        for name in _section(pf, "teams"):
            if first("team", name, pf, ("teams", name)) and name in pf.teams:
                teams[name] = pf.teams[name]
        for login in _section(pf, "identities"):
            if (
                first("identity", login, pf, ("identities", login))
                and login.lower() in pf.identities
            ):
                identities[login.lower()] = pf.identities[login.lower()]
        for name in _section(pf, "providers"):
            if first("provider", name, pf, ("providers", name)) and name in pf.providers:
                providers[name] = pf.providers[name]
    config = Config(
        policies=tuple(p for _, _, p in policies),
        teams=teams,
        identities=identities,
        providers=providers,
    )
    known_teams = {name for pf in files for name in _section(pf, "teams")}
    for pf in files:
        for i, entry in pf.entries:
            findings.extend(_unknown_teams(pf, i, entry, known_teams))
    for pf, i, policy in policies:
        findings.extend(_check_approvers(pf, i, policy, config))
    findings.extend(_check_providers(files, config))
    return config, findings


def _section(pf: PolicyFile, section: str) -> list[str]:
    """The keys of a top-level mapping section, as written (valid or not)."""
    data = pf.doc.data if isinstance(pf.doc.data, dict) else {}
    value = data.get(section)
    return [str(k) for k in value] if isinstance(value, dict) else []


def _unknown_teams(
    pf: PolicyFile, index: int, entry: Mapping[str, Any], known: set[str]
) -> list[Finding]:
    out: list[Finding] = []
    for field_name in ("requesters", "approvers"):
        for j, who in _strings(entry, field_name):
            if who.startswith("team:") and who[5:] not in known:
                out.append(
                    Finding(
                        pf.doc.file,
                        pf.doc.line(("policies", index, field_name, j)),
                        "E-CONFIG-UNKNOWN-TEAM",
                        f"{_where(('policies', index, field_name, j))}no team named {who[5:]!r} in policies/",
                    )
                )
    return out


def _check_approvers(pf: PolicyFile, index: int, policy: Policy, config: Config) -> list[Finding]:
    eligible = config.expand(policy.approvers)
    if policy.approvals <= len(eligible):
        return []
    return [
        Finding(
            pf.doc.file,
            pf.doc.line(("policies", index, "approvals")),
            "E-CONFIG-APPROVALS",
            f"policy {policy.name!r} needs {policy.approvals} approval(s) but its approvers "
            f"name only {len(eligible)} people, so no request could ever be approved",
        )
    ]


def _check_providers(files: Sequence[PolicyFile], config: Config) -> list[Finding]:
    """An aws policy needs providers.aws (reported once, at the first aws policy)."""
    if "aws" in config.providers or any("aws" in _section(pf, "providers") for pf in files):
        return []
    for pf in files:
        for i, entry in pf.entries:
            if entry.get("provider") == "aws":
                return [
                    Finding(
                        pf.doc.file,
                        pf.doc.line(("policies", i, "provider")),
                        "E-CONFIG-PROVIDER",
                        "aws policies need providers.aws (instance_arn, identity_store_id, "
                        "region) in a policy file",
                    )
                ]
    return []
