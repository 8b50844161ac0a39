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
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from reconciler.core.fastschema import compile_fast
from reconciler.core.loader import Document, Path_
from reconciler.core.models import (
    AccessRequest,
    Config,
    Decision,
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
    Reason.NO_BREAK_GLASS: "E-POLICY-NO-BREAK-GLASS",
    Reason.BREAK_GLASS_START: "E-POLICY-BREAK-GLASS-START",
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


MAX_SCHEMA_FINDINGS = 50


class SchemaChecker:
    """A JSON Schema compiled once; ``check(doc)`` -> the most specific finding per location.

    A fast path answers "valid?" ~20x quicker than jsonschema (``compile_fast``); jsonschema
    then only runs on files that have problems, to report them well.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        schema = _end_anchored(schema)
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


def _end_anchored(node: Any) -> Any:
    """``pattern``s with JSON Schema's (ECMA 262) meaning of a final ``$``: the end of the
    string. Python's ``$`` also matches before a final newline, so ``"alice\\n"`` or
    ``"projects/x\\n"`` would pass a ``^...$`` pattern and reach policies and clouds."""
    if isinstance(node, Mapping):
        out = {k: _end_anchored(v) for k, v in node.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
            out["pattern"] = pattern[:-1] + "\\Z"
        return out
    if isinstance(node, list):
        return [_end_anchored(v) for v in node]
    return node


def _error_findings(doc: Document, error: Any) -> list[tuple[Path_, Finding]]:
    """One jsonschema error -> findings a person can act on."""
    path: Path_ = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    prefix = where(path)
    file = doc.file
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed][: MAX_SCHEMA_FINDINGS + 1]
        return [
            (
                (*path, k),
                Finding(
                    file, doc.line((*path, k)), "E-SCHEMA-UNKNOWN-KEY", _unknown(k, allowed, prefix)
                ),
            )
            for k in extras
        ]
    if error.validator == "required" and isinstance(error.instance, dict):
        return [
            (
                path,
                Finding(
                    file, doc.line(path), "E-SCHEMA-MISSING", f"{prefix}missing required key {k!r}"
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
                    file, doc.line(path), "E-SCHEMA-TYPE", f"{prefix}must be a {want}, not {got}"
                ),
            )
        ]
    if error.validator in ("anyOf", "oneOf") and "x-code" not in schema and error.context:
        from jsonschema.exceptions import best_match

        return _error_findings(doc, best_match(error.context))
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        path = (*path, error.instance)  # the error is about a key: point at that key
        prefix = where(path)
    code = str(schema.get("x-code", "E-SCHEMA-VALUE"))
    message = str(schema.get("x-message", "")) or error.message
    shown = "" if isinstance(error.instance, dict | list) else f" (got {_show(error.instance)})"
    return [(path, Finding(file, doc.line(path), code, f"{prefix}{message}{shown}"))]


def where(path: Path_) -> str:
    """``policies[0].scopes[1]: `` -- the prefix that tells a person which value is meant."""
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


def as_mapping(doc: Document, what: str) -> dict[str, Any] | None:
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


def ints_to_text(value: Any, keep: frozenset[str] = frozenset(), key: str = "") -> Any:
    """Integers back to the text written (lossless: the loader only reads plain decimals), so
    ``scope: 123456789012`` or ``requester: 1234`` work unquoted. ``keep`` names integer keys."""
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, int):
        return value if key in keep else str(value)
    if isinstance(value, dict):
        return {k: ints_to_text(v, keep, k) for k, v in value.items()}
    if isinstance(value, list):
        return [ints_to_text(v, keep, key) for v in value]
    return value


# --- requests -------------------------------------------------------------------------------


def check_request(doc: Document, checker: SchemaChecker) -> AccessRequest | None:
    """A loaded request file -> AccessRequest, or None with ``doc.findings`` saying why."""
    if not doc.ok:
        return None
    raw = as_mapping(doc, "requester, provider, scope, role, reason, duration...")
    if raw is None:
        return None
    data = ints_to_text(raw)
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
        break_glass=data.get("break_glass") is True,
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
