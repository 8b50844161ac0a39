"""The GCP provider: this deployment's conditional IAM bindings on projects, folders and
organizations.

A binding is accessctl's when its condition title starts with ``accessctl:``; it is *this
deployment's* when the title carries this deployment's tag (``accessctl:<tag>:<request>``,
see ``Deployment``) or is an old-style ``accessctl:<request>`` title naming a request file
of this repository. Everything else in a policy (other deployments' bindings, other
tools' bindings, member order, ``auditConfigs``) is carried through every write untouched.

Calls per run: one ``getIamPolicy`` per observed scope (concurrently, bounded pool), then
per changed scope one ``setIamPolicy`` sent with the etag of that read. The
``setIamPolicy`` response is the policy IAM stored, so it is the read-back that verifies
the change; ``verify_read: true`` adds a separate ``getIamPolicy`` for the paranoid. A
409 (someone wrote between our read and write) re-reads and redoes the change on the
fresh policy; 429/5xx/transport errors are retried the same way with bounded
exponential backoff and jitter (``reconciler.retry``). A scope that still fails is
reported, never raised.

Each write is held to GCP's limits on one allow policy first (``fit``): the revokes, then
the grants in plan order that keep the policy within 1,500 principals, 250 groups and
domains and ``max_policy_bytes``; a grant that would break one is reported failed, naming
the limit, and never sent.

Grants of the same role to the same member with the same condition expression share one
binding (``_build``): the description names every request, and each stays its own grant.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.core.models import (
    Change,
    ChangeKind,
    ChangeResult,
    Config,
    Grant,
)
from reconciler.core.providers import ProviderSpec, register
from reconciler.core.timeutil import format_rfc3339, parse_rfc3339
from reconciler.errors import ConfigError
from reconciler.providers.base import Observation
from reconciler.retry import Backoff, retrying

if TYPE_CHECKING:
    from google.iam.v1 import policy_pb2

ENDPOINT_ENV = "ACCESSCTL_GCP_ENDPOINT"
_MEMBER_TYPE = re.compile(r"^[A-Za-z]+:\S+$")
_TERM = re.compile(
    r"""^request\.time\s*(?P<op><|>=)\s*timestamp\(\s*(["'])(?P<ts>[^"']+)\2\s*\)$"""
)
_CASELESS = frozenset({"user", "group", "serviceAccount", "domain", "deleted"})
_PR = re.compile(r"\bvia PR #(\d+)\b")
_PERMISSIONS = {
    "projects": "resourcemanager.projects.getIamPolicy/setIamPolicy",
    "folders": "resourcemanager.folders.getIamPolicy/setIamPolicy",
    "organizations": "resourcemanager.organizations.getIamPolicy/setIamPolicy",
}
T = TypeVar("T")
MANAGED_TITLE_PREFIX = "accessctl:"
BASIC_ROLES = frozenset({"roles/owner", "roles/editor", "roles/viewer"})
_PROJECT_ID = "[a-z][a-z0-9-]{4,28}[a-z0-9]"
# Printable ASCII, no space at either end: it is hashed into titles and shown in
# descriptions, so what people type and what IAM stores must be the same text.
_DEPLOYMENT_PATTERN = r"^[!-~](?:[ -~]{0,98}[!-~])?$"
_DEPLOYMENT = re.compile(_DEPLOYMENT_PATTERN)
_DEPLOYMENT_HELP = "must be 1 to 100 printable ASCII characters, such as acme/access"


@register
class Gcp(ProviderSpec):
    """Google Cloud: conditional IAM bindings on projects, folders and organizations."""

    name = "gcp"
    title = "Google Cloud"
    scope_pattern = (
        rf"^(?:projects/{_PROJECT_ID}|folders/[0-9]{{1,20}}|organizations/[0-9]{{1,20}})$"
    )
    scope_help = "projects/<project-id>, folders/<number> or organizations/<number>"
    # One user, group or service account: never a domain, allUsers or a list.
    principal_pattern = r"^(?:user|group|serviceAccount):[^\s@:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$"
    principal_help = "a GCP member: user:, group: or serviceAccount: and an email address"
    role_pattern = (
        rf"^(?:roles/[A-Za-z0-9_.]{{1,128}}|projects/{_PROJECT_ID}/roles/[A-Za-z0-9_.]{{1,64}}"
        r"|organizations/[0-9]{1,20}/roles/[A-Za-z0-9_.]{1,64})$"
    )
    role_help = "roles/<name>, projects/<id>/roles/<name> or organizations/<number>/roles/<name>"
    future_start = True  # the IAM condition carries the begin bound
    settings_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "concurrency": {
                "type": "integer",
                "minimum": 1,
                "maximum": 64,
                "x-message": "must be an integer from 1 to 64",
            },
            "attempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "x-message": "must be an integer from 1 to 10",
            },
            "timeout": {
                "type": "integer",
                "minimum": 1,
                "maximum": 600,
                "x-message": "must be seconds, 1 to 600",
            },
            "verify_read": {"type": "boolean", "x-message": "must be true or false"},
            "max_policy_bytes": {
                "type": "integer",
                "minimum": 1024,
                "maximum": 1048576,
                "x-message": "must be bytes, 1024 to 1048576 (default 65536)",
            },
            "deployment": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "pattern": _DEPLOYMENT_PATTERN,
                "x-message": _DEPLOYMENT_HELP,
            },
            # `accessctl activity` (docs/activity.md): where Cloud Audit Logs are read.
            "activity_source": {
                "enum": ["entries-list", "log-bucket"],
                "x-message": "must be entries-list or log-bucket",
            },
            "activity_bucket": {
                "type": "string",
                "pattern": "^(?:projects|folders|organizations|billingAccounts)/[^/]+/locations/[^/]+/buckets/[^/]+/views/[^/]+$",
                "x-message": "must be a log view: organizations/<n>/locations/<l>/buckets/<b>/views/<v>",
            },
            "activity_allowance": {
                "type": "string",
                "pattern": "^[0-9]{1,4}[smh]$",
                "x-message": "must be a duration like 5m",
            },
            "activity_concurrency": {
                "type": "integer",
                "minimum": 1,
                "maximum": 64,
                "x-message": "must be an integer from 1 to 64",
            },
        },
    }

    def principal_id(self, principal: str) -> str:
        return member_id(principal)

    def role_refusal(self, role: str) -> str | None:
        if role in BASIC_ROLES:
            return (
                f"{role} is a basic role; GCP cannot put a time condition on it, so it "
                "cannot be granted temporarily (ask for a predefined role instead)"
            )
        return None

    def identity(self, grant: Grant, now: datetime) -> tuple[object, ...]:
        # A begin still ahead is part of what the binding allows; one already passed
        # allows the same as none. The end always is.
        begin = grant.begin if grant.begin is not None and grant.begin > now else None
        end = format_rfc3339(grant.end) if grant.end else None
        begin_text = format_rfc3339(begin) if begin else None
        return (
            "gcp",
            grant.scope,
            grant.role,
            member_id(grant.principal),
            grant.request,
            begin_text,
            end,
        )

    def adapter(self, config: Config, options: Mapping[str, Any]) -> GcpProvider:
        return make_provider(config, options)


_SPEC = Gcp()


# -- titles: which deployment a binding belongs to (pure) ------------------------------

TITLE_MAX = 100  # GCP documents no limit on a condition title; assume the strictest seen
DEFAULT_DEPLOYMENT = "default"
_DIGEST = 12  # hex characters of sha256(request path) after a cut title's "~"
_TAGGED = re.compile(r"^(?P<tag>[0-9a-f]{8}):(?P<body>.*)$", re.DOTALL)
_CUT_TAIL = re.compile(rf"~[0-9a-f]{{{_DIGEST}}}$")
DESCRIPTION_MAX = 256  # characters of a condition description: the strictest assumed
_DESCRIPTION = re.compile(
    r"^accessctl grant for (?P<path>[^\s;]+)(?: via PR #\d+)?"
    r"(?P<more>(?:; for [^\s;]+(?: via PR #\d+)?)*)"
    r"(?:; deployment (?P<deployment>.+))?$",
    re.DOTALL,
)


@dataclass(frozen=True)
class Claim:
    """What a binding is to this deployment: ``request`` is None when it is not ours
    (another deployment's, another tool's, an unknown old-style title); ``note`` is what a
    person should hear about it."""

    request: str | None
    legacy: bool = False  # an old ``accessctl:<path>`` title, adopted
    note: str | None = None
    shared: tuple[str, ...] = ()  # the other requests of a shared binding, in order


@dataclass(frozen=True)
class Deployment:
    """One accessctl deployment (one access repository) and the titles it writes.

    ``accessctl:<tag>:<request path>``, ``tag`` = the first 8 hex characters of
    sha256(``name``). A title longer than ``TITLE_MAX`` keeps the head of the path and
    ends in ``~`` + 12 hex characters of sha256(path); the description always carries the
    full path, and a cut title is read back only when its digest matches that path.

    ``known_requests``: request paths this repository ever had on its branch; an old-style
    ``accessctl:<path>`` binding is this deployment's only when ``path`` is one of them.
    """

    name: str = DEFAULT_DEPLOYMENT
    known_requests: frozenset[str] = frozenset()

    @property
    def tag(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:8]

    def title_for(self, request: str) -> str:
        head = f"{MANAGED_TITLE_PREFIX}{self.tag}:"
        if len(head) + len(request) <= TITLE_MAX and not _CUT_TAIL.search(request):
            return head + request
        digest = hashlib.sha256(request.encode()).hexdigest()[:_DIGEST]
        room = TITLE_MAX - len(head) - 1 - _DIGEST
        return f"{head}{request[:room]}~{digest}"

    def description_for(self, grant: Grant) -> str:
        assert grant.request is not None
        return self.description_of([(grant.request, grant.pr)])

    def description_of(self, requests: Sequence[tuple[str, int | None]]) -> str:
        """``accessctl grant for <path> via PR #<n>``, then ``; for <path> via PR #<n>``
        for each further request sharing the binding, then ``; deployment <name>``."""
        parts = [f"{path} via PR #{pr}" if pr else path for path, pr in requests]
        return f"accessctl grant for {'; for '.join(parts)}; deployment {self.name}"

    def claim(self, title: str, description: str) -> Claim:
        if not title.startswith(MANAGED_TITLE_PREFIX):
            return Claim(None)
        rest = title[len(MANAGED_TITLE_PREFIX) :]
        tagged = _TAGGED.match(rest)
        if tagged is None:
            return self._legacy(rest)
        if tagged["tag"] != self.tag:
            return Claim(None)  # another deployment's: not even worth a note
        said = _DESCRIPTION.match(description)
        named = said["deployment"] if said else None
        if named is not None and named != self.name:
            return Claim(None, note=f"has this deployment's tag but names {named!r}; left alone")
        body = tagged["body"]
        shared = _more_paths(said["more"]) if said else ()
        if not _CUT_TAIL.search(body) and self.title_for(body) == title:
            if said and said["path"] != body:
                shared = ()  # the description names another request first: not a list of ours
            return Claim(body, shared=shared)
        if said and self.title_for(said["path"]) == title:
            return Claim(said["path"], shared=shared)
        # Ours, but not traceable to a request: never kept (its request is the title,
        # which no request path equals), so the plan revokes it.
        return Claim(title, note="cannot be traced to a request file; revoked by apply")

    def _legacy(self, path: str) -> Claim:
        if path in self.known_requests:
            return Claim(path, legacy=True)
        return Claim(
            None,
            note=(
                "has the old title format and names no request file of this repository "
                "(another deployment's, or written by hand); left alone"
            ),
        )


def _more_paths(more: str) -> tuple[str, ...]:
    """The further request paths of a shared binding's description (``; for <path>``)."""
    return tuple(m.group(1) for m in _ITEM.finditer(more))


# One request of a description's listing: ``for <path>``, then `` via PR #<n>`` if any.
_ITEM = re.compile(r"\bfor ([^\s;]+)(?: via PR #(\d+))?")


# -- bindings <-> grants (pure) -------------------------------------------------------


def parse_expression(expression: str) -> tuple[datetime | None, datetime | None]:
    """``(begin, end)`` of an accessctl condition; ``(None, None)`` if not ours to read."""
    terms = [t.strip() for t in expression.split("&&")]
    bounds: dict[str, datetime] = {}
    for term in terms:
        match = _TERM.match(term)
        if not match or match["op"] in bounds:
            return None, None
        try:
            bounds[match["op"]] = parse_rfc3339(match["ts"])
        except ValueError:
            return None, None
    if "<" not in bounds:
        return None, None
    return bounds.get(">="), bounds["<"]


def expression_for(grant: Grant, now: datetime) -> str:
    assert grant.end is not None
    expr = f'request.time < timestamp("{format_rfc3339(grant.end)}")'
    if grant.begin is not None and grant.begin > now:
        expr = f'request.time >= timestamp("{format_rfc3339(grant.begin)}") && {expr}'
    return expr


def _requests(binding: Any, claim: Claim) -> list[tuple[str, int | None]]:
    """The requests a binding of ours grants for, with their pull request numbers: one,
    or several when grants of the same role, member and window share the binding."""
    assert claim.request is not None
    description = _listing(binding.condition.description)
    numbers = {m.group(1): int(m.group(2)) for m in _ITEM.finditer(description) if m.group(2)}
    if not claim.shared:
        pr = _PR.search(description)
        return [(claim.request, int(pr.group(1)) if pr else None)]
    return [(path, numbers.get(path)) for path in (claim.request, *claim.shared)]


def _listing(description: str) -> str:
    """The part of a description that names requests and pull requests: what comes before
    ``; deployment <name>``. A deployment name is free text and may itself read like
    ``for <path> via PR #<n>``; it never says which pull request a grant came from."""
    said = _DESCRIPTION.match(description)
    return description[: said.end("more")] if said else description


def _member_grants(scope: str, binding: Any, claim: Claim) -> list[Grant]:
    """One grant per request and member of a binding of ours, in order."""
    begin, end = parse_expression(binding.condition.expression)
    return [
        Grant(
            provider="gcp",
            scope=scope,
            role=binding.role,
            principal=member,
            request=request,
            begin=begin,
            end=end,
            pr=pr,
        )
        for request, pr in _requests(binding, claim)
        for member in binding.members
    ]


def _claim(deployment: Deployment, binding: Any) -> Claim:
    return deployment.claim(binding.condition.title, binding.condition.description)


def read_policy(
    scope: str, policy: policy_pb2.Policy, deployment: Deployment
) -> tuple[frozenset[Grant], list[str]]:
    """This deployment's grants in a policy (one per binding and member), and one note per
    accessctl binding a person should hear about."""
    grants: set[Grant] = set()
    notes: list[str] = []
    for binding in policy.bindings:
        claim = _claim(deployment, binding)
        if claim.note:
            title = binding.condition.title
            note = f"{scope}: binding {title!r} of {binding.role} {claim.note}"
            if note not in notes:
                notes.append(note)
        if claim.request is not None:
            grants.update(_member_grants(scope, binding, claim))
    return frozenset(grants), notes


def grants_of(
    scope: str, policy: policy_pb2.Policy, deployment: Deployment | None = None
) -> frozenset[Grant]:
    """This deployment's managed grants in a policy."""
    return read_policy(scope, policy, deployment or Deployment())[0]


def member_id(member: str) -> str:
    """A member as IAM compares it: e-mail and domain values ignore case (IAM may answer
    ``user:Jane.Doe@example.com`` for ``user:jane.doe@example.com``); types and
    ``principal://`` identifiers do not."""
    kind, sep, value = member.partition(":")
    if sep and kind in _CASELESS and not value.startswith("//"):
        return f"{kind}:{value.lower()}"
    return member


def _key(grant: Grant, now: datetime) -> Hashable:
    """The spec's identity: a grant and a binding member match only when role, member,
    request, begin-if-ahead and end all agree."""
    return _SPEC.identity(grant, now)


def modify(
    scope: str,
    policy: policy_pb2.Policy,
    grants: Sequence[Grant],
    revokes: Sequence[Grant],
    *,
    now: datetime,
    deployment: Deployment,
) -> policy_pb2.Policy:
    """A copy of ``policy`` with ``revokes`` removed and ``grants`` added; nothing else moves
    (bindings that are not this deployment's are copied as they are)."""
    return _build(scope, policy, grants, revokes, now=now, deployment=deployment).policy


def _without(
    scope: str,
    policy: policy_pb2.Policy,
    gone: set[Hashable],
    *,
    now: datetime,
    deployment: Deployment,
) -> tuple[policy_pb2.Policy, set[Hashable]]:
    """A copy of ``policy`` without the grants keyed in ``gone``, and the keys of this
    deployment's grants it still holds. A binding that loses some of its grants is
    rewritten for the rest (a shared one may split), with this deployment's title."""
    from google.iam.v1 import policy_pb2

    present: set[Hashable] = set()
    new = policy_pb2.Policy()
    new.CopyFrom(policy)
    del new.bindings[:]
    for binding in policy.bindings:
        claim = _claim(deployment, binding)
        if claim.request is None:
            new.bindings.append(binding)
            continue
        held = _member_grants(scope, binding, claim)
        keep = [g for g in held if _key(g, now) not in gone]
        present |= {_key(g, now) for g in keep}
        if len(keep) == len(held):
            new.bindings.append(binding)
            continue
        for members, requests in _regroup(keep):
            copy = new.bindings.add()
            copy.CopyFrom(binding)
            del copy.members[:]
            copy.members.extend(members)
            copy.condition.title = deployment.title_for(requests[0][0])
            copy.condition.description = deployment.description_of(requests)
    return new, present


def _regroup(grants: Sequence[Grant]) -> list[tuple[list[str], list[tuple[str, int | None]]]]:
    """What is left of one binding, as bindings: the requests that keep the same members
    stay together, in their order."""
    members: dict[str, list[str]] = {}
    numbers: dict[str, int | None] = {}
    for grant in grants:
        assert grant.request is not None
        members.setdefault(grant.request, []).append(grant.principal)
        numbers.setdefault(grant.request, grant.pr)
    groups: dict[tuple[str, ...], list[tuple[str, int | None]]] = {}
    for request, held in members.items():
        groups.setdefault(tuple(held), []).append((request, numbers[request]))
    return [(list(held), requests) for held, requests in groups.items()]


def _share_key(deployment: Deployment, binding: Any) -> Hashable | None:
    """What a grant must match to join this binding: this deployment's own, traceable,
    one member; then role, member and condition expression (the window)."""
    claim = _claim(deployment, binding)
    if claim.request is None or claim.legacy or claim.note or len(binding.members) != 1:
        return None
    return (binding.role, member_id(binding.members[0]), binding.condition.expression)


def _new_binding(grant: Grant, now: datetime, deployment: Deployment) -> Any:
    from google.iam.v1 import policy_pb2

    assert grant.request is not None  # grant_problem() refuses a grant without one
    binding = policy_pb2.Binding()
    binding.role = grant.role
    binding.members.append(grant.principal)
    binding.condition.title = deployment.title_for(grant.request)
    binding.condition.description = deployment.description_for(grant)
    binding.condition.expression = expression_for(grant, now)
    return binding


def _joined(binding: Any, grant: Grant, deployment: Deployment) -> Any | None:
    """``binding`` granting for ``grant``'s request too, or None when the description
    would grow past ``DESCRIPTION_MAX``."""
    from google.iam.v1 import policy_pb2

    claim = _claim(deployment, binding)
    assert grant.request is not None
    requests = [*_requests(binding, claim), (grant.request, grant.pr)]
    description = deployment.description_of(requests)
    if len(description) > DESCRIPTION_MAX:
        return None
    joined = policy_pb2.Binding()
    joined.CopyFrom(binding)
    joined.condition.description = description
    return joined


def _build(
    scope: str,
    policy: policy_pb2.Policy,
    grants: Sequence[Grant],
    revokes: Sequence[Grant],
    *,
    now: datetime,
    deployment: Deployment,
    limits: Limits | None = None,
) -> Fitted:
    """The revokes, then the grants in order. A grant of the same role to the same member
    with the same window as a binding of ours joins that binding (its description names
    every request; the policy only grows by that text, and the member counts once);
    otherwise it becomes a binding at the end. With ``limits``, a grant that would break
    one is left out, and the ones after it are still tried (a user may fit where a group
    no longer does)."""
    # A revoke and a grant of the same binding (same member but for case) cancel out.
    gone = {_key(g, now) for g in revokes} - {_key(g, now) for g in grants}
    new, present = _without(scope, policy, gone, now=now, deployment=deployment)
    joinable: dict[Hashable, int] = {}
    for position, held in enumerate(new.bindings):
        found = _share_key(deployment, held)
        if found is not None:
            joinable.setdefault(found, position)
    usage: Usage | None = None
    refused: dict[Hashable, str] = {}
    for grant in grants:
        key = _key(grant, now)
        if key in present:
            continue  # already there (a concurrent run, or a retry after a lost response)
        share = (grant.role, member_id(grant.principal), expression_for(grant, now))
        index = joinable.get(share)
        joined = _joined(new.bindings[index], grant, deployment) if index is not None else None
        binding = joined if joined is not None else _new_binding(grant, now, deployment)
        if limits is not None:
            if usage is None:
                usage = measure(new.bindings, new.audit_configs)
            if joined is not None and index is not None:
                after = usage.swapped(new.bindings[index], joined)
            else:
                after = usage.plus(binding)
            breaches = after.breaches(limits)
            if breaches:
                refused[key] = (
                    f"not granted: with it the allow policy of {scope} would exceed "
                    + "; and ".join(breaches)
                    + ". Nothing over a limit is sent to IAM; the next apply tries again, "
                    "and it goes through once revoked or expired bindings make room"
                )
                continue
            usage = after
        if joined is not None and index is not None:
            new.bindings[index].CopyFrom(joined)
        else:
            new.bindings.append(binding)
            joinable[share] = len(new.bindings) - 1
        present.add(key)
    new.version = 3  # conditions need it, and removing bindings from a v3 policy too
    return Fitted(new, refused)


def grant_problem(grant: Grant) -> str | None:
    """Why a grant cannot become a binding, or None."""
    if not _MEMBER_TYPE.match(grant.principal):
        return (
            f"principal {grant.principal!r} has no type prefix; "
            "write it as user:, group:, serviceAccount: or principal://"
        )
    if grant.end is None:
        return "grant has no end time; accessctl never grants GCP access without expiry"
    if not grant.request:
        return "grant names no request file"
    return None


# -- GCP's limits on one allow policy (pure) ------------------------------------------
#
# IAM refuses (400 INVALID_ARGUMENT) a setIamPolicy whose policy breaks one of these, so a
# grant that would break one is refused here instead and the rest of the write goes on.

MAX_PRINCIPALS = 1500  # per allow policy, every appearance counted
MAX_GROUPS = 250  # Google groups (each once) and domains (every appearance) per policy
DEFAULT_MAX_POLICY_BYTES = 64 * 1024  # GCP documents "a few 10s of KB", no exact figure
ADVISED_CONDITIONAL_BINDINGS = 100  # Google's advice, not a refusal: a warning
_WORKSPACE_ACCOUNT = "principalSet://goog/cloudIdentityCustomerId/"


@dataclass(frozen=True)
class Limits:
    """What one allow policy may hold. ``principals`` and ``groups`` are GCP's and fixed;
    ``policy_bytes`` is the ``max_policy_bytes`` setting; ``conditional_bindings`` is only
    warned about."""

    principals: int = MAX_PRINCIPALS
    groups: int = MAX_GROUPS
    policy_bytes: int = DEFAULT_MAX_POLICY_BYTES
    conditional_bindings: int = ADVISED_CONDITIONAL_BINDINGS


def _json_bytes(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _as_json(message: Any) -> dict[str, Any]:
    """A binding or audit config as the REST call carries it (proto3 JSON, defaults left
    out)."""
    from google.protobuf import json_format

    data: dict[str, Any] = json_format.MessageToDict(message)
    return data


@dataclass(frozen=True)
class Usage:
    """How much of the limits a policy uses. ``size`` is the UTF-8 length of
    ``{"bindings":[...],"auditConfigs":[...]}`` as compact JSON: what grows with every
    binding, without the etag and version that every write carries anyway."""

    principals: int = 0
    groups: frozenset[str] = frozenset()  # each Google group once
    domains: int = 0  # domains and Workspace accounts: every appearance
    bindings: int = 0
    size: int = _json_bytes({"bindings": [], "auditConfigs": []})

    @property
    def group_count(self) -> int:
        return len(self.groups) + self.domains

    def with_members(self, members: Sequence[str]) -> Usage:
        groups, domains = set(self.groups), self.domains
        for member in members:
            kind = member.partition(":")[0]
            if kind == "group":
                groups.add(member_id(member))
            elif kind == "domain" or member.startswith(_WORKSPACE_ACCOUNT):
                domains += 1
        return replace(
            self,
            principals=self.principals + len(members),
            groups=frozenset(groups),
            domains=domains,
        )

    def plus(self, binding: Any) -> Usage:
        """This usage with one more binding at the end of the policy."""
        added = _json_bytes(_as_json(binding)) + (1 if self.bindings else 0)
        return replace(
            self.with_members(list(binding.members)),
            bindings=self.bindings + 1,
            size=self.size + added,
        )

    def swapped(self, old: Any, new: Any) -> Usage:
        """This usage with binding ``old`` replaced by ``new`` (same members)."""
        delta = _json_bytes(_as_json(new)) - _json_bytes(_as_json(old))
        return replace(self, size=self.size + delta)

    def breaches(self, limits: Limits, would: bool = True) -> list[str]:
        """The hard limits this usage breaks, each named with its numbers."""
        has, is_ = ("would have", "would be") if would else ("has", "is")
        out = []
        if self.principals > limits.principals:
            out.append(
                f"GCP's limit of {limits.principals:,} principals per allow policy (it {has} "
                f"{self.principals:,}; every appearance of a principal counts)"
            )
        if self.group_count > limits.groups:
            out.append(
                f"GCP's limit of {limits.groups:,} Google groups and domains per allow policy "
                f"(it {has} {self.group_count:,})"
            )
        if self.size > limits.policy_bytes:
            out.append(
                f"max_policy_bytes, {limits.policy_bytes:,} bytes per allow policy (it {is_} "
                f"{self.size:,} bytes)"
            )
        return out


def measure(bindings: Iterable[Any], audit_configs: Iterable[Any] = ()) -> Usage:
    """The usage of a policy's bindings and audit configs (audit-log exemptions count as
    principals, as IAM counts them)."""
    usage = Usage()
    audit = [_as_json(config) for config in audit_configs]
    for config in audit:
        for log in config.get("auditLogConfigs", ()):
            usage = usage.with_members(log.get("exemptedMembers", ()))
    usage = replace(usage, size=_json_bytes({"bindings": [], "auditConfigs": audit}))
    for binding in bindings:
        usage = usage.plus(binding)
    return usage


def conditional_note(scope: str, policy: policy_pb2.Policy, limits: Limits) -> str | None:
    """A warning when a policy holds more conditional bindings than Google advises."""
    conditional = sum(1 for binding in policy.bindings if binding.HasField("condition"))
    if conditional <= limits.conditional_bindings:
        return None
    return (
        f"{scope}: the allow policy has {conditional:,} conditional role bindings, more "
        f"than the {limits.conditional_bindings:,} Google advises per policy (IAM still "
        "accepts them, so accessctl writes them and only warns)"
    )


@dataclass(frozen=True)
class Fitted:
    """The policy to write, and the grants left out of it, by key, with why."""

    policy: policy_pb2.Policy
    refused: Mapping[Hashable, str]


def fit(
    scope: str,
    policy: policy_pb2.Policy,
    grants: Sequence[Grant],
    revokes: Sequence[Grant],
    *,
    now: datetime,
    deployment: Deployment,
    limits: Limits,
) -> Fitted:
    """``modify`` within ``limits``: every revoke (they only shrink the policy), then the
    grants in order, each one that would break a limit left out."""
    return _build(scope, policy, grants, revokes, now=now, deployment=deployment, limits=limits)


# -- clients --------------------------------------------------------------------------


class GcpClients:
    """The three Resource Manager clients, built on first use (importing is cheap)."""

    def __init__(
        self,
        endpoint: str | None = None,
        clients: Mapping[str, Any] | None = None,
        pool_size: int = 10,
    ):
        self.endpoint = endpoint
        self.pool_size = pool_size
        self._clients: dict[str, Any] = dict(clients or {})
        self._failure: Exception | None = None
        self._lock = threading.Lock()

    def for_scope(self, scope: str) -> Any:
        kind = scope.split("/", 1)[0]
        with self._lock:
            if self._failure is not None:
                # Missing credentials fail the same way for every scope: find out once,
                # not once per scope (ADC may probe the metadata server each time).
                raise self._failure
            if kind not in self._clients:
                try:
                    self._clients[kind] = self._build(kind)
                except Exception as exc:
                    self._failure = exc
                    raise
            return self._clients[kind]

    def _build(self, kind: str) -> Any:
        from google.cloud import resourcemanager_v3

        cls = {
            "projects": resourcemanager_v3.ProjectsClient,
            "folders": resourcemanager_v3.FoldersClient,
            "organizations": resourcemanager_v3.OrganizationsClient,
        }[kind]
        if self.endpoint:
            from google.api_core.client_options import ClientOptions
            from google.auth import credentials

            anonymous: Any = credentials.AnonymousCredentials  # untyped in google-auth
            client = cls(
                credentials=anonymous(),
                transport="rest",
                client_options=ClientOptions(api_endpoint=self.endpoint),
            )
        else:
            # Application Default Credentials: what google-github-actions/auth provides.
            client = cls(transport="rest")
        self._widen_pool(client)
        return client

    def _widen_pool(self, client: Any) -> None:
        """requests keeps 10 connections per host; a wider worker pool would churn them."""
        session = getattr(getattr(client, "_transport", None), "_session", None)
        if self.pool_size <= 10 or session is None:
            return
        from requests.adapters import HTTPAdapter

        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self.pool_size)
        session.mount("https://", adapter)
        session.mount("http://", adapter)


# -- errors and retries ---------------------------------------------------------------


def _classify(exc: BaseException) -> tuple[bool, str]:
    """(retryable, message for a person)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    if isinstance(exc, gexc.Conflict):
        return True, "409 ABORTED: the policy kept changing between our read and our write"
    if isinstance(exc, gexc.TooManyRequests | gexc.ServerError | gexc.DeadlineExceeded):
        return True, f"{exc.code} {getattr(exc, 'message', exc)}".strip()
    if isinstance(exc, gexc.GoogleAPICallError):
        return False, f"{exc.code} {exc.message}".strip()
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return False, (
            "no Google credentials: run `gcloud auth application-default login`, use "
            f"google-github-actions/auth, or set {ENDPOINT_ENV} for a sandbox ({exc})"
        )
    import requests

    if isinstance(exc, requests.RequestException | auth_exc.TransportError | OSError):
        return True, f"cannot reach the IAM API: {exc}"
    return False, f"{type(exc).__name__}: {exc}"


def _is_rejection(exc: BaseException) -> bool:
    """IAM refused the policy itself (400), as opposed to refusing us or being down."""
    from google.api_core import exceptions as gexc

    return isinstance(exc, gexc.BadRequest)


def _failure(scope: str, exc: BaseException, attempts: int) -> str:
    """What a person reads about a scope that failed: the cause, and what to do."""
    retryable, message = _classify(exc)
    if retryable:
        message = f"{message} (gave up after {attempts} attempts)"
    if message.startswith("403"):
        kind = scope.split("/", 1)[0]
        return (
            f"{message} (the reconciler needs {_PERMISSIONS.get(kind, 'getIamPolicy/setIamPolicy')}"
            f" on {scope}; see docs/gcp.md)"
        )
    return message


@dataclass
class _Outcome:
    policy: policy_pb2.Policy | None
    error: str | None = None


# -- the provider ---------------------------------------------------------------------


class GcpProvider:
    """Observe and change this deployment's bindings; thread-safe, so the caller may
    apply scopes concurrently."""

    name = "gcp"

    def __init__(
        self,
        clients: GcpClients,
        *,
        deployment: Deployment | None = None,
        concurrency: int = 8,
        attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        timeout: float = 30.0,
        verify_read: bool = False,
        limits: Limits | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.clients = clients
        self.limits = limits or Limits()
        self.deployment = deployment or Deployment()
        self.concurrency = max(1, concurrency)
        self.backoff = Backoff(attempts=max(1, attempts), base=backoff_base, cap=backoff_max)
        self.timeout = timeout
        self.verify_read = verify_read
        self._sleep = sleep
        self._cache: dict[str, policy_pb2.Policy] = {}
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {"reads": 0, "writes": 0}  # over the provider's life

    @property
    def attempts(self) -> int:
        return self.backoff.attempts

    # observe ----------------------------------------------------------------------

    def observe(self, scopes: Sequence[str], now: datetime) -> Observation:
        unique = list(dict.fromkeys(scopes))
        before = dict(self.calls)
        observation = Observation()
        if not unique:
            observation.calls = {"reads": 0, "writes": 0}
            return observation
        workers = min(self.concurrency, len(unique))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gcp-observe") as pool:
            outcomes = list(pool.map(self._read_scope, unique))
        for scope, outcome in zip(unique, outcomes, strict=True):
            if outcome.policy is None:
                observation.failures[scope] = outcome.error or "unknown error"
                continue
            with self._lock:
                self._cache[scope] = outcome.policy
            grants, notes = read_policy(scope, outcome.policy, self.deployment)
            observation.grants[scope] = grants
            observation.warnings.extend(notes)
            observation.warnings.extend(self._limit_notes(scope, outcome.policy))
        observation.calls = {k: self.calls[k] - before.get(k, 0) for k in self.calls}
        return observation

    def _limit_notes(self, scope: str, policy: policy_pb2.Policy) -> list[str]:
        """What a person should know before planning grants here: a policy already over a
        limit takes no new binding, and many conditional bindings are against advice."""
        usage = measure(policy.bindings, policy.audit_configs)
        notes = [
            f"{scope}: the allow policy is over {breach}; new grants there are refused "
            "until it shrinks"
            for breach in usage.breaches(self.limits, would=False)
        ]
        note = conditional_note(scope, policy, self.limits)
        return [*notes, note] if note else notes

    def _read_scope(self, scope: str) -> _Outcome:
        if not _valid_scope(scope):
            return _Outcome(
                None, f"{scope!r} is not projects/<id>, folders/<n> or organizations/<n>"
            )
        try:
            return _Outcome(self._retrying(lambda: self._get(scope)))
        except Exception as exc:
            return _Outcome(None, _failure(scope, exc, self.attempts))

    def resolve(self, grants: Sequence[Grant]) -> list[Grant]:
        """GCP compares members by their text (``member_id``): nothing to look up."""
        return list(grants)

    def settle(self, now: datetime) -> Observation:
        """Nothing to keep up: a binding's condition ends it in the cloud on time."""
        return Observation()

    # apply ------------------------------------------------------------------------

    def apply(self, scope: str, changes: Sequence[Change], now: datetime) -> list[ChangeResult]:
        results: dict[int, ChangeResult] = {}
        grants: list[tuple[int, Change]] = []
        revokes: list[tuple[int, Change]] = []
        for i, change in enumerate(changes):
            problem = grant_problem(change.grant) if change.kind is ChangeKind.GRANT else None
            if change.grant.scope != scope:
                problem = f"change for {change.grant.scope} passed to scope {scope}"
            if problem:
                results[i] = ChangeResult(change, ok=False, message=problem)
            elif change.kind is ChangeKind.GRANT:
                grants.append((i, change))
            elif change.kind is ChangeKind.REVOKE:
                revokes.append((i, change))
            else:
                results[i] = ChangeResult(change, ok=True, message="kept", verified=False)
        if grants or revokes:
            results.update(self._apply_scope(scope, grants, revokes, now))
        return [results[i] for i in range(len(changes))]

    def _apply_scope(
        self,
        scope: str,
        grants: list[tuple[int, Change]],
        revokes: list[tuple[int, Change]],
        now: datetime,
    ) -> dict[int, ChangeResult]:
        if not _valid_scope(scope):
            message = f"{scope!r} is not projects/<id>, folders/<n> or organizations/<n>"
            return {i: ChangeResult(c, ok=False, message=message) for i, c in (*grants, *revokes)}
        try:
            return self._write_and_verify(scope, grants, revokes, now)
        except Exception as exc:
            if not _is_rejection(exc) or len(grants) + len(revokes) < 2:
                message = _failure(scope, exc, self.attempts)
                return {
                    i: ChangeResult(c, ok=False, message=message) for i, c in (*grants, *revokes)
                }
        # IAM refused the combined write (e.g. a role it does not know): one bad grant
        # must not keep the others, least of all the revokes, from happening.
        results: dict[int, ChangeResult] = {}
        Batch = tuple[list[tuple[int, Change]], list[tuple[int, Change]]]
        batches: list[Batch] = [([], revokes)] if revokes else []
        batches += [([g], []) for g in grants]
        for batch_grants, batch_revokes in batches:
            try:
                results.update(self._write_and_verify(scope, batch_grants, batch_revokes, now))
            except Exception as exc:
                message = _failure(scope, exc, self.attempts)
                for i, c in (*batch_grants, *batch_revokes):
                    results[i] = ChangeResult(c, ok=False, message=message)
        return results

    def _write_and_verify(
        self,
        scope: str,
        grants: list[tuple[int, Change]],
        revokes: list[tuple[int, Change]],
        now: datetime,
    ) -> dict[int, ChangeResult]:
        stored, refused = self._retrying(
            lambda: self._write(
                scope, [c.grant for _, c in grants], [c.grant for _, c in revokes], now
            )
        )
        results = self._verify(scope, stored, grants, revokes, now, refused=refused)
        if all(r.ok or _key(r.change.grant, now) in refused for r in results.values()):
            return results
        # GCP answers setIamPolicy with the stored policy; should an endpoint answer
        # with less, a fresh read is the judge before we call the change failed.
        try:
            fresh = self._retrying(lambda: self._get(scope))
        except Exception:
            return results
        return self._verify(scope, fresh, grants, revokes, now, refused=refused)

    def _write(
        self, scope: str, grants: list[Grant], revokes: list[Grant], now: datetime
    ) -> tuple[policy_pb2.Policy, Mapping[Hashable, str]]:
        """One read-modify-write within the limits (the first attempt uses observe()'s
        read); the policy IAM holds afterwards, and the grants left out, by key."""
        with self._lock:
            current = self._cache.pop(scope, None)
        if current is None:
            current = self._get(scope)
        wanted = fit(
            scope,
            current,
            grants,
            revokes,
            now=now,
            deployment=self.deployment,
            limits=self.limits,
        )
        if _same_bindings(wanted.policy, current):
            # Nothing to do: already converged (e.g. by a concurrent run), or every grant
            # was refused and there was nothing to revoke.
            return current, wanted.refused
        stored = self._set(scope, wanted.policy)
        return (self._get(scope) if self.verify_read else stored), wanted.refused

    def _verify(
        self,
        scope: str,
        stored: policy_pb2.Policy,
        grants: list[tuple[int, Change]],
        revokes: list[tuple[int, Change]],
        now: datetime,
        *,
        refused: Mapping[Hashable, str],
    ) -> dict[int, ChangeResult]:
        held = {_key(g, now) for g in grants_of(scope, stored, self.deployment)}
        granted = {_key(c.grant, now) for _, c in grants}
        note = conditional_note(scope, stored, self.limits) if grants else None
        out: dict[int, ChangeResult] = {}
        for i, change in grants:
            key = _key(change.grant, now)
            ok = key in held
            message = "granted" if ok else "binding missing from the policy after the write"
            if ok and note:
                message = f"granted; note: {note}"
            elif not ok and key in refused:
                message = refused[key]
            out[i] = ChangeResult(change, ok=ok, message=message, verified=ok)
        for i, change in revokes:
            key = _key(change.grant, now)
            ok = key not in held
            message = "revoked" if ok else "binding still in the policy after the write"
            if key in granted:
                ok, message = key in held, "superseded by the same grant"
            out[i] = ChangeResult(change, ok=ok, message=message, verified=ok)
        return out

    # calls and retries --------------------------------------------------------------

    def _get(self, scope: str) -> policy_pb2.Policy:
        self._count("reads")
        client = self.clients.for_scope(scope)
        request = {"resource": scope, "options": {"requested_policy_version": 3}}
        return client.get_iam_policy(request=request, retry=None, timeout=self.timeout)

    def _set(self, scope: str, policy: policy_pb2.Policy) -> policy_pb2.Policy:
        self._count("writes")
        client = self.clients.for_scope(scope)
        # No update_mask: IAM's default (bindings, etag) leaves auditConfigs as stored.
        request = {"resource": scope, "policy": policy}
        return client.set_iam_policy(request=request, retry=None, timeout=self.timeout)

    def _retrying(self, call: Callable[[], T]) -> T:
        return retrying(
            call,
            policy=self.backoff,
            retryable=lambda exc: _classify(exc)[0],
            sleep=self._sleep,
        )

    def _count(self, kind: str) -> None:
        with self._lock:
            self.calls[kind] += 1


def _same_bindings(a: policy_pb2.Policy, b: policy_pb2.Policy) -> bool:
    return list(a.bindings) == list(b.bindings)


# -- settings -------------------------------------------------------------------------


def _settings(config: Config, options: Mapping[str, Any]) -> dict[str, Any]:
    """``providers.gcp`` from the policies, overridden by what the caller passes (a CLI
    flag the user gave); a None option means "not given"."""
    merged: dict[str, Any] = dict(config.providers.get("gcp", {}) or {})
    merged.update({k: v for k, v in (options or {}).items() if v is not None})
    return merged


def deployment_of(config: Config, options: Mapping[str, Any]) -> Deployment:
    """The caller's ``deployment``, else ``providers.gcp.deployment``, else "default";
    with the caller's ``known_requests`` (request paths of this repository's history)."""
    name = options.get("deployment") or (config.providers.get("gcp") or {}).get("deployment")
    name = name or DEFAULT_DEPLOYMENT
    if not isinstance(name, str) or len(name) > 100 or not _DEPLOYMENT.match(name):
        raise ConfigError(f"GCP deployment {name!r}: {_DEPLOYMENT_HELP}")
    known = options.get("known_requests") or frozenset()
    return Deployment(name, frozenset(str(path) for path in known))


def _valid_scope(scope: str) -> bool:
    """The one scope syntax: the registered spec's pattern (the same one validate uses)."""
    return re.fullmatch(Gcp.scope_pattern, scope) is not None


def make_provider(config: Config, options: Mapping[str, Any]) -> GcpProvider:
    """Settings (``providers.gcp`` in policies, each overridden by the caller's option of
    the same name): ``deployment`` ("default"), ``concurrency`` (8), ``attempts`` (5),
    ``timeout`` (30 s), ``verify_read`` (false), ``max_policy_bytes`` (65536). Caller-only
    options: ``known_requests``, ``endpoint`` (default ``$ACCESSCTL_GCP_ENDPOINT``),
    ``clients`` (a GcpClients, for tests), ``backoff_base`` (0.5 s) and ``backoff_max``
    (8 s)."""
    merged = _settings(config, options)
    concurrency = int(merged.get("concurrency", 8))
    clients = merged.get("clients")
    if not isinstance(clients, GcpClients):
        endpoint = merged.get("endpoint") or os.environ.get(ENDPOINT_ENV) or None
        clients = GcpClients(endpoint=endpoint, pool_size=concurrency)
    return GcpProvider(
        clients,
        deployment=deployment_of(config, options),
        concurrency=concurrency,
        attempts=int(merged.get("attempts", 5)),
        backoff_base=float(merged.get("backoff_base", 0.5)),
        backoff_max=float(merged.get("backoff_max", 8.0)),
        timeout=float(merged.get("timeout", 30.0)),
        verify_read=bool(merged.get("verify_read", False)),
        limits=Limits(policy_bytes=int(merged.get("max_policy_bytes", DEFAULT_MAX_POLICY_BYTES))),
    )
