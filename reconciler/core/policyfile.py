"""Policy files: each file's valid parts, then merged across files with cross-file checks.

Every check runs on every entry, so a person sees all problems at once; but anything with a
problem is left out of the Config (fail closed): fewer policies never grant more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from reconciler.core import providers
from reconciler.core.loader import Document, Path_
from reconciler.core.models import (
    GITHUB_TEAM,
    BreakGlass,
    Config,
    Notification,
    Policy,
    Settings,
    Suspension,
)
from reconciler.core.policy import TicketPattern
from reconciler.core.timeutil import format_duration, parse_duration
from reconciler.core.validate import SchemaChecker, as_mapping, ints_to_text, where
from reconciler.errors import Finding

_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class PolicyFile:
    """What one policy file contributes, with the document for line numbers."""

    doc: Document
    policies: list[tuple[int, Policy]] = field(default_factory=list)  # (index, policy)
    entries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # every one, raw
    teams: dict[str, frozenset[str]] = field(default_factory=dict)
    identities: dict[str, dict[str, str]] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # valid keys, parsed
    suspended: list[Suspension] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)


def check_policy_file(doc: Document, checker: SchemaChecker) -> PolicyFile:
    """One loaded policy file -> its valid parts; problems go to ``doc.findings``.

    Every check runs on every entry, so all problems show at once; but a policy with any
    problem is left out (fail closed), as is an invalid team, identity or provider entry.
    """
    out = PolicyFile(doc)
    if not doc.ok:
        return out
    raw = as_mapping(
        doc, "policies, teams, identities, suspended, providers, settings, notifications"
    )
    if raw is None:
        return out
    data = ints_to_text(raw, keep=frozenset({"approvals"}) | _integer_settings())
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
            elif not _settings_problems(doc, name, item):
                out.providers[name] = dict(item)
    out.settings = _deployment_settings(doc, data.get("settings"), bad)
    out.suspended = _suspensions(doc, data.get("suspended"), bad)
    out.notifications = _notifications(doc, data.get("notifications"), bad)
    return out


# Which keys each notification type takes: a key it does not use is a mistake (a secret
# the sink would ignore), a missing one leaves it unable to deliver.
_NOTIFICATION_KEYS = {
    "slack": ({"url_env"}, {"secret_env"}),
    "webhook": ({"url_env", "secret_env"}, set()),
    "github-issue": (set(), {"url_env", "secret_env"}),
}


def _notifications(doc: Document, value: object, bad: set[Path_]) -> list[Notification]:
    """The valid entries of ``notifications:``; each type's required and unused keys."""
    if not isinstance(value, list) or ("notifications",) in bad:
        return []
    out = []
    for i, entry in enumerate(value):
        here: Path_ = ("notifications", i)
        if not isinstance(entry, dict) or any(p[: len(here)] == here for p in bad):
            continue
        kind = str(entry.get("type"))
        needed, unused = _NOTIFICATION_KEYS.get(kind, (set(), set()))
        problems = [f"a {kind} notification needs {k}" for k in sorted(needed - set(entry))]
        problems += [f"a {kind} notification takes no {k}" for k in sorted(unused & set(entry))]
        doc.findings += [
            Finding(doc.file, doc.line(here), "E-CONFIG-NOTIFY", f"{where(here)}{p}")
            for p in problems
        ]
        if problems:
            continue
        events = entry.get("events")
        out.append(
            Notification(
                kind,
                url_env=entry.get("url_env"),
                secret_env=entry.get("secret_env"),
                events=frozenset(events) if isinstance(events, list) else None,
                file=doc.file,
                line=doc.line(here),
            )
        )
    return out


def _suspensions(doc: Document, value: object, bad: set[Path_]) -> list[Suspension]:
    """The valid entries of ``suspended:``. An entry with a problem is reported (and the
    file fails validation, so apply stops before changing anything)."""
    if not isinstance(value, list) or ("suspended",) in bad:
        return []
    out = []
    for i, entry in enumerate(value):
        here: Path_ = ("suspended", i)
        if not isinstance(entry, dict) or any(p[: len(here)] == here for p in bad):
            continue
        who, reason = entry.get("who"), entry.get("reason")
        if isinstance(who, str) and isinstance(reason, str):
            out.append(Suspension(who, reason, doc.file, doc.line(here)))
    return out


def _deployment_settings(doc: Document, value: object, bad: set[Path_]) -> dict[str, Any]:
    """The valid keys of the ``settings:`` section, parsed (a duration to a timedelta)."""
    if not isinstance(value, dict) or ("settings",) in bad:
        return {}
    out: dict[str, Any] = {}
    for key, item in value.items():
        here: Path_ = ("settings", key)
        if here in bad:
            continue
        if key == "late_tolerance":
            try:
                out[key] = parse_duration(item)
            except ValueError as exc:
                doc.findings.append(
                    Finding(doc.file, doc.line(here), "E-CONFIG-DURATION", f"{where(here)}{exc}")
                )
        else:
            out[key] = item
    return out


def _integer_settings() -> frozenset[str]:
    """Keys of provider settings that are numbers (kept as written, not turned into text)."""
    return frozenset(
        key
        for spec in providers.specs()
        for key, rule in spec.settings_schema.get("properties", {}).items()
        if isinstance(rule, Mapping) and rule.get("type") in ("integer", "number")
    )


def _settings_problems(doc: Document, name: str, raw: Mapping[str, Any]) -> bool:
    """The provider's own checks of ``providers.<name>`` beyond its schema, as findings."""
    if not providers.known(name):
        return False
    problems = providers.spec(name).settings_problems(raw)
    for problem in problems:
        path: Path_ = (
            ("providers", name) if problem.key is None else ("providers", name, problem.key)
        )
        doc.findings.append(
            Finding(
                doc.file, doc.line(path), "E-CONFIG-PROVIDER", f"{where(path)}{problem.message}"
            )
        )
    return bool(problems)


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
                    f"{where((*here, 'max_duration'))}{exc}",
                )
            )
    break_glass = _break_glass(
        doc, entry.get("break_glass"), (*here, "break_glass"), bad, max_duration
    )
    _check_scopes(doc, entry, here, bad)
    _check_basic_roles(doc, entry, here)
    if not schema_ok or len(doc.findings) > before or max_duration is None:
        return None
    approvers = tuple(entry.get("approvers", ()))
    return Policy(
        name=entry["name"],
        provider=entry["provider"],
        scopes=tuple(entry["scopes"]),
        roles=tuple(entry["roles"]),
        requesters=tuple(entry["requesters"]),
        # github_team:ORG/SLUG entries only say whom pr-check asks for a review: kept
        # apart, so that nothing that decides eligibility ever sees them.
        approvers=tuple(a for a in approvers if not a.startswith(GITHUB_TEAM)),
        review_teams=tuple(
            dict.fromkeys(
                a[len(GITHUB_TEAM) :].lower() for a in approvers if a.startswith(GITHUB_TEAM)
            )
        ),
        approvals=entry["approvals"],
        max_duration=max_duration,
        description=entry.get("description", ""),
        ticket=ticket,
        require_signed_commits=entry.get("require_signed_commits") is True,
        break_glass=break_glass,
        file=doc.file,
        line=doc.line(here),
    )


def _break_glass(
    doc: Document, value: object, here: Path_, bad: set[Path_], longest: timedelta | None
) -> BreakGlass | None:
    """A policy's ``break_glass: {max_duration, review_within}``, both durations parsed and
    the first no longer than the policy's ``longest``; a problem is a finding (and leaves
    the policy out)."""
    if not isinstance(value, dict) or any(p[: len(here)] == here for p in bad):
        return None
    parsed = {}
    for key in ("max_duration", "review_within"):
        try:
            parsed[key] = parse_duration(value[key])
        except (KeyError, ValueError) as exc:
            doc.findings.append(
                Finding(
                    doc.file,
                    doc.line((*here, key)),
                    "E-CONFIG-DURATION",
                    f"{where((*here, key))}{exc}",
                )
            )
    glass = parsed.get("max_duration")
    if glass is not None and longest is not None and glass > longest:
        # Access nobody approved first must never outlast the access approvers grant.
        path = (*here, "max_duration")
        doc.findings.append(
            Finding(
                doc.file,
                doc.line(path),
                "E-CONFIG-BREAK-GLASS",
                f"{where(path)}{format_duration(glass)} is longer than the policy's "
                f"max_duration ({format_duration(longest)}): break-glass access, which nobody "
                "approves first, may not last longer than approved access",
            )
        )
        return None
    if len(parsed) < 2:
        return None
    return BreakGlass(parsed["max_duration"], parsed["review_within"])


def _ticket_pattern(doc: Document, entry: Mapping[str, Any], here: Path_) -> TicketPattern | None:
    """The policy's ticket regex, compiled once (RE2: linear time); an invalid one, or one
    RE2 cannot run (backreferences, lookarounds), is a finding."""
    text = entry.get("ticket")
    if not isinstance(text, str):
        return None
    try:
        return TicketPattern.compile(text)
    except ValueError as exc:
        doc.findings.append(
            Finding(
                doc.file,
                doc.line((*here, "ticket")),
                "E-CONFIG-REGEX",
                f"{where((*here, 'ticket'))}invalid regular expression: {exc}",
            )
        )
        return None


def _strings(entry: Mapping[str, Any], key: str) -> list[tuple[int, str]]:
    value = entry.get(key)
    items = value if isinstance(value, list) else []
    return [(j, item) for j, item in enumerate(items) if isinstance(item, str)]


def _check_scopes(doc: Document, entry: Mapping[str, Any], here: Path_, bad: set[Path_]) -> None:
    """A scope without glob characters must be a complete, exact scope of its provider (the
    schema checks only the shape a glob may have)."""
    name = entry.get("provider")
    if not providers.known(name):
        return
    spec = providers.spec(str(name))
    for j, scope in _strings(entry, "scopes"):
        if _GLOB_CHARS.search(scope) or (*here, "scopes", j) in bad or spec.scope_matches(scope):
            continue
        doc.findings.append(
            Finding(
                doc.file,
                doc.line((*here, "scopes", j)),
                "E-CONFIG-SCOPE",
                f"{where((*here, 'scopes', j))}{scope!r} is not {spec.scope_help} (nor a glob)",
            )
        )


def _check_basic_roles(doc: Document, entry: Mapping[str, Any], here: Path_) -> None:
    name = entry.get("provider")
    if not providers.known(name):
        return
    spec = providers.spec(str(name))
    for j, role in _strings(entry, "roles"):
        problem = spec.role_refusal(role)
        if problem is not None:
            doc.findings.append(
                Finding(
                    doc.file,
                    doc.line((*here, "roles", j)),
                    "E-CONFIG-BASIC-ROLE",
                    f"{where((*here, 'roles', j))}{problem}",
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
    settings: dict[str, Any] = {}
    suspended: list[Suspension] = []
    notifications: list[Notification] = []
    for pf in files:
        suspended += pf.suspended  # a list: every file may stop someone, none overrides
        notifications += pf.notifications  # every file may add a sink
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
        for key in _section(pf, "settings"):
            if first("setting", key, pf, ("settings", key)) and key in pf.settings:
                settings[key] = pf.settings[key]
    config = Config(
        policies=tuple(p for _, _, p in policies),
        teams=teams,
        identities=identities,
        providers=providers,
        settings=Settings(**settings),
        suspended=tuple(suspended),
        notifications=tuple(notifications),
    )
    known_teams = {name for pf in files for name in _section(pf, "teams")}
    for pf in files:
        for i, entry in pf.entries:
            findings.extend(_unknown_teams(pf, i, entry, known_teams))
        # An emergency stop that names a team nobody defined would stop nobody: an error.
        findings += [
            Finding(
                s.file,
                s.line,
                "E-CONFIG-UNKNOWN-TEAM",
                f"suspended: no team named {s.who[5:]!r} in policies/, so this stops nobody",
            )
            for s in pf.suspended
            if s.who.startswith("team:") and s.who[5:] not in known_teams
        ]
    for pf, i, policy in policies:
        findings.extend(_check_approvers(pf, i, policy, config))
    findings.extend(_check_providers(files))
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
                        f"{where(('policies', index, field_name, j))}no team named {who[5:]!r} in policies/",
                    )
                )
    return out


def _check_approvers(pf: PolicyFile, index: int, policy: Policy, config: Config) -> list[Finding]:
    eligible = config.expand(policy.approvers)
    if policy.break_glass is not None and not eligible:
        return [
            Finding(
                pf.doc.file,
                pf.doc.line(("policies", index, "break_glass")),
                "E-CONFIG-BREAK-GLASS",
                f"policy {policy.name!r} allows break-glass but its approvers name nobody, so "
                "no break-glass request could ever get its follow-up review",
            )
        ]
    if policy.approvals <= len(eligible):
        return []
    hint = (
        " (github_team: entries only say whom to ask for a review; list who may approve as "
        "logins or team:NAME)"
        if policy.review_teams
        else ""
    )
    return [
        Finding(
            pf.doc.file,
            pf.doc.line(("policies", index, "approvals")),
            "E-CONFIG-APPROVALS",
            f"policy {policy.name!r} needs {policy.approvals} approval(s) but its approvers "
            f"name only {len(eligible)} people, so no request could ever be approved{hint}",
        )
    ]


def _check_providers(files: Sequence[PolicyFile]) -> list[Finding]:
    """A policy of a provider that cannot work without settings needs ``providers.<name>``
    (reported once per provider, at its first policy)."""
    written = {name for pf in files for name in _section(pf, "providers")}
    out: list[Finding] = []
    for pf in files:
        for i, entry in pf.entries:
            name = entry.get("provider")
            if not providers.known(name) or name in written:
                continue
            spec = providers.spec(str(name))
            if not spec.settings_required:
                continue
            written.add(spec.name)  # once
            needed = ", ".join(str(k) for k in spec.settings_schema.get("required", ()))
            out.append(
                Finding(
                    pf.doc.file,
                    pf.doc.line(("policies", i, "provider")),
                    "E-CONFIG-PROVIDER",
                    f"{spec.name} policies need providers.{spec.name}"
                    + (f" ({needed})" if needed else "")
                    + " in a policy file",
                )
            )
    return out
