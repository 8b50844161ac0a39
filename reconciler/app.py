"""The one place that wires the core to git, approvals and the cloud providers.

``reconcile()`` runs the whole loop: load the branch's files, establish each request's
approval, evaluate it, observe every scope where managed grants may sit (concurrently, one
read per scope), plan, and, for ``apply``, carry out each scope's changes in one provider
call. Scopes fail on their own: a scope that cannot be read gets no changes at all (never
revoke on unknown state) and is reported; the others go on.
"""

from __future__ import annotations

import importlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler import gitlog
from reconciler.approvals import ApprovalRecord, ApprovalSource, FileChange, TrustGit
from reconciler.core.models import Change, ChangeResult, Decision, Grant, Plan
from reconciler.core.plan import plan as make_plan
from reconciler.core.policy import compute_window, evaluate
from reconciler.core.render import Problem
from reconciler.core.timeutil import format_rfc3339
from reconciler.errors import ConfigError, Finding
from reconciler.providers import base
from reconciler.repo import GitTree, LoadedRepo, WorkTree, load_repo

ScopeRef = tuple[str, str]  # (provider, scope)
DEFAULT_CONCURRENCY = 8
# How long after a request was edited or deleted an unreadable scope it named still fails
# the run (a revocation may be pending there); older history only warns.
HISTORY_HORIZON = timedelta(days=30)
_GLOB = frozenset("*?[")


@dataclass
class Outcome:
    """Everything one plan/apply run found and did."""

    now: datetime
    plan: Plan
    problems: list[Problem] = field(default_factory=list)
    results: list[ChangeResult] = field(default_factory=list)
    failed_scopes: dict[ScopeRef, str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    applied: bool = False
    ledger: str | None = None

    @property
    def failed_changes(self) -> list[ChangeResult]:
        return [r for r in self.results if not r.ok]

    @property
    def exit_code(self) -> int:
        """1 when anything needs a person: an error (bad or refused request, unreadable scope
        where a request points), or a failed change. Warnings alone exit 0."""
        errors = [p for p in self.problems if p.severity == "error"]
        return 1 if errors or self.failed_changes else 0


# -- approvals --------------------------------------------------------------------------


def approval_source(
    trust_git: bool, repo: Path, env: Mapping[str, str] | None = None
) -> ApprovalSource:
    """TrustGit with ``--trust-git``; GitHub when Actions' credentials are there; else stop."""
    if trust_git:
        return TrustGit()
    env = os.environ if env is None else env
    if not (env.get("GITHUB_TOKEN") and env.get("GITHUB_REPOSITORY")):
        raise ConfigError(
            "plan/apply verify approvals on GitHub: set GITHUB_TOKEN and GITHUB_REPOSITORY "
            "(and GITHUB_API_URL for GitHub Enterprise), or pass --trust-git to take "
            "approval from git history alone (sandbox, demo, air-gapped use)."
        )
    try:
        approvals_github = importlib.import_module("reconciler.approvals_github")
    except ImportError as exc:
        raise ConfigError(
            f"GitHub approval verification is not available in this installation ({exc}); "
            "pass --trust-git to take approval from git history alone."
        ) from None
    cls: Any = approvals_github.GitHubApprovals
    return cls.from_env(repo, env)  # type: ignore[no-any-return]


# -- desired state ----------------------------------------------------------------------


def _second_floor(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def _second_ceil(t: datetime) -> datetime:
    return t.replace(microsecond=0) + timedelta(seconds=1) if t.microsecond else t


def _wanted(decision: Decision, now: datetime) -> bool:
    window = decision.window
    if not decision.allowed or window is None or decision.principal is None:
        return False
    if window.end <= now:
        return False
    # GCP bindings carry their begin bound, so a future window is written ahead of time.
    return window.contains(now) or (decision.request.provider == "gcp" and window.begin > now)


def _grant_of(decision: Decision, record: ApprovalRecord) -> Grant:
    assert decision.principal is not None
    return _window_grant(decision, decision.principal, record.pr)


def _window_grant(decision: Decision, principal: str, pr: int | None = None) -> Grant:
    request, window = decision.request, decision.window
    assert window is not None
    # Clouds keep whole seconds: shorten rather than stretch a fractional window.
    return Grant(
        provider=request.provider,
        scope=request.scope,
        role=request.role,
        principal=principal,
        request=request.path,
        begin=_second_ceil(window.begin),
        end=_second_floor(window.end),
        pr=pr,
    )


def _refusal_problems(decision: Decision) -> list[Problem]:
    request = decision.request
    return [
        Problem(
            code=f"E-REFUSED-{refusal.reason.value.upper()}",
            message=refusal.message
            + (
                f" (policy {refusal.policy})"
                if refusal.policy and refusal.policy not in refusal.message
                else ""
            ),
            file=request.path,
            line=request.line_of(refusal.key) if refusal.key else 1,
        )
        for refusal in decision.refusals
    ] or [Problem("E-REFUSED", "not allowed by any policy", file=request.path, line=1)]


def build_desired(
    loaded: LoadedRepo, approvals: Mapping[str, ApprovalRecord], now: datetime
) -> tuple[set[Grant], list[Decision], list[Problem]]:
    """The grants that should exist now: allowed requests in (or, on GCP, before) their
    window. Requests without an approval record, refused or unverifiable grant nothing and
    are reported."""
    desired: set[Grant] = set()
    decisions: list[Decision] = []
    problems: list[Problem] = []
    for request in loaded.requests:
        record = approvals.get(request.path)
        if record is None or record.error or record.approved_at is None:
            why = record.error if record and record.error else "approval could not be established"
            problems.append(Problem("E-APPROVAL", why, file=request.path, line=1))
            continue
        if (author := _foreign_author(request.requester, record)) is not None:
            # pr-check enforces this before merge; an admin merge past it grants nothing.
            problems.append(
                Problem(
                    "E-APPROVAL-AUTHOR",
                    f"pull request #{record.pr} was opened by {author}, not by the requester "
                    f"{request.requester}: access is only granted to the person who asked",
                    file=request.path,
                    line=request.line_of("requester"),
                )
            )
            continue
        try:
            decision = evaluate(
                request, loaded.config, approved_at=record.approved_at, approvals=record.approvals
            )
        except Exception as exc:  # one request the evaluator chokes on grants nothing
            problems.append(Problem("E-EVALUATE", f"could not evaluate: {exc}", request.path, 1))
            continue
        decisions.append(decision)
        if not decision.allowed:
            problems.extend(_refusal_problems(decision))
        elif _wanted(decision, now):
            desired.add(_grant_of(decision, record))
    return desired, decisions, problems


def _foreign_author(requester: str, record: ApprovalRecord) -> str | None:
    """The PR author when it is not the requester (logins compare case-insensitively)."""
    author = record.approvals.pr_author if record.approvals else None
    return author if author and author.lower() != requester.lower() else None


def request_notes(
    decisions: Iterable[Decision], problems: Iterable[Problem], now: datetime
) -> dict[str, str]:
    """One sentence per request path, used as the reason of the changes concerning it."""
    notes: dict[str, str] = {}
    for p in problems:
        if p.file and p.file.startswith("requests/") and p.file not in notes:
            notes[p.file] = f"request not valid or not approved: {p.message}"
    for d in decisions:
        path, window = d.request.path, d.window
        if not d.allowed:
            notes.setdefault(
                path, f"refused: {d.refusals[0].message if d.refusals else d.reason.value}"
            )
        elif window is not None and window.end <= now:
            notes[path] = f"expired at {format_rfc3339(window.end)} (policy {d.policy})"
        elif window is not None and window.begin > now and d.request.provider != "gcp":
            notes[path] = f"scheduled: begins at {format_rfc3339(window.begin)}"
        else:
            notes[path] = f"allowed by policy {d.policy}"
    return notes


def former_grants(decisions: Iterable[Decision], loaded: LoadedRepo) -> list[Grant]:
    """What each request on the branch would hold, whether or not it holds now: lets a
    revoke of an AWS assignment (which names no request) say which request it ends."""
    out = []
    for d in decisions:
        principal = d.principal or loaded.config.principal(d.request.requester, d.request.provider)
        if principal is not None and d.window is not None:
            out.append(_window_grant(d, principal))
    return out


def held_grants(
    loaded: LoadedRepo,
    records: Mapping[str, ApprovalRecord],
    observed: Iterable[Grant],
    now: datetime,
    changes: Mapping[str, FileChange] | None = None,
) -> set[Grant]:
    """Grants to leave in place because their request's approval lookup failed
    transiently (GitHub down): unknown is not refused, so neither grant nor revoke.
    Never past the request's window as git dates it (the merge commit's time stands in
    for ``merged_at``): an AWS assignment has no expiry of its own."""
    held: set[Grant] = set()
    pending = [r for r in loaded.requests if (rec := records.get(r.path)) and rec.transient]
    for request in pending:
        change = (changes or {}).get(request.path)
        if change is not None and compute_window(request, change.committed_at).end <= now:
            continue
        principal = (loaded.config.principal(request.requester, request.provider) or "").lower()
        for g in observed:
            if (g.provider, g.scope, g.role) != (request.provider, request.scope, request.role):
                continue
            live_gcp = g.request == request.path and g.end is not None and g.end > now
            same_aws = g.provider == "aws" and g.principal.lower() == principal
            if live_gcp or same_aws:
                held.add(g)
    return held


# -- loading ----------------------------------------------------------------------------


def _finding_problem(f: Finding) -> Problem:
    return Problem(f.code, f.message, file=f.file, line=f.line, severity=f.severity)


def load_branch(repo: Path, head: str | None) -> LoadedRepo:
    """The committed files at ``head`` (what is on the branch), not the work tree's edits."""
    if head is None:
        return load_repo(WorkTree(repo))
    return load_repo(GitTree(repo, head))


def _check_config(loaded: LoadedRepo) -> None:
    broken = [
        f for f in loaded.findings if f.severity == "error" and not f.file.startswith("requests/")
    ]
    if broken:
        # Acting on half a policy set could revoke everything: change nothing, stop.
        raise ConfigError(
            f"the policies have {len(broken)} error(s); nothing was planned or changed",
            tuple(broken),
        )


def _valid_requests(loaded: LoadedRepo) -> LoadedRepo:
    bad = {f.file for f in loaded.findings if f.severity == "error"}
    return replace(loaded, requests=[r for r in loaded.requests if r.path not in bad])


# -- scopes and providers ---------------------------------------------------------------


def scopes_to_observe(loaded: LoadedRepo, historical: Iterable[ScopeRef]) -> dict[str, set[str]]:
    """Per provider: where managed grants may sit. Current requests, exact policy scopes,
    and scopes named by earlier versions of request files (edited or deleted)."""
    out: dict[str, set[str]] = defaultdict(set)
    for policy in loaded.config.policies:
        out[policy.provider].update(s for s in policy.scopes if not (_GLOB & set(s)))
    for request in loaded.requests:
        out[request.provider].add(request.scope)
    active = set(out)
    for provider, scope in historical:
        if provider in active:
            out[provider].add(scope)
    return dict(out)


def _scope_problem(
    ref: ScopeRef,
    message: str,
    loaded: LoadedRepo,
    historical: Mapping[ScopeRef, datetime],
    now: datetime,
) -> Problem:
    """An unreadable scope is an error where a current request points, or where an edited
    or deleted request pointed recently (an early revocation may be pending there). A scope
    only policies name, or only long-gone versions named, is a warning: a project deleted
    a year ago must not turn every run red, and GCP bindings there expire by themselves."""
    provider, scope = ref
    current = any((r.provider, r.scope) == ref for r in loaded.requests)
    recent = ref in historical and historical[ref] > now - HISTORY_HORIZON
    if current or recent:
        return Problem(
            "E-SCOPE-UNREADABLE",
            f"{message}; no changes planned for this scope",
            provider=provider,
            scope=scope,
        )
    why = "earlier request versions named it" if ref in historical else "named in policies"
    return Problem(
        "W-SCOPE-UNREADABLE",
        f"{message}; {why}, but no current or recent request uses it",
        provider=provider,
        scope=scope,
        severity="warning",
    )


def make_providers(
    loaded: LoadedRepo,
    names: Iterable[str],
    options: Mapping[str, Any],
    unusable: dict[str, str] | None = None,
) -> dict[str, base.Provider]:
    """One provider per name. With ``unusable``, a provider that cannot be set up (e.g. no
    AWS credentials) and that no current request uses is left out and its reason recorded:
    a GCP-only deployment whose policies also name AWS still converges on GCP. A provider a
    current request needs stays a configuration error (exit 2)."""
    providers: dict[str, base.Provider] = {}
    for name in sorted(names):
        try:
            providers[name] = base.make(name, loaded.config, options)
        except ConfigError as exc:
            if unusable is None or any(r.provider == name for r in loaded.requests):
                raise
            unusable[name] = f"{name} provider unavailable: {exc}"
    return providers


def _pool(concurrency: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="accessctl")


def observe_all(
    providers: Mapping[str, base.Provider],
    scopes: Mapping[str, set[str]],
    now: datetime,
    concurrency: int,
) -> tuple[dict[ScopeRef, frozenset[Grant]], dict[ScopeRef, str], Counter[str]]:
    """One observe() per provider with all its scopes (providers read scopes in parallel
    themselves, and AWS discovers accounts once); providers side by side."""
    jobs = [(name, sorted(scopes.get(name, ()))) for name in sorted(providers)]

    def run(job: tuple[str, list[str]]) -> base.Observation:
        name, batch = job
        try:
            return providers[name].observe(batch, now)
        except Exception as exc:  # a provider bug must not abort the other providers
            return base.Observation(failures=dict.fromkeys(batch, f"observation failed: {exc}"))

    grants: dict[ScopeRef, frozenset[Grant]] = {}
    failures: dict[ScopeRef, str] = {}
    calls: Counter[str] = Counter()
    with _pool(min(concurrency, max(1, len(jobs)))) as pool:
        for (name, batch), obs in zip(jobs, pool.map(run, jobs), strict=True):
            calls.update({f"{name}.{k}": v for k, v in obs.calls.items()})
            for scope, found in obs.grants.items():
                grants[name, scope] = found
            for scope, msg in obs.failures.items():
                failures[name, scope] = msg
            for scope in batch:  # a scope the provider forgot is unknown, not empty
                if (name, scope) not in grants and (name, scope) not in failures:
                    failures[name, scope] = "the provider reported nothing for this scope"
    for ref in failures:
        grants.pop(ref, None)
    return grants, failures, calls


def apply_all(
    providers: Mapping[str, base.Provider], plan: Plan, now: datetime, concurrency: int
) -> list[ChangeResult]:
    """Each scope's grants and revokes in one provider call, scopes in parallel."""
    by_scope: dict[ScopeRef, list[Change]] = defaultdict(list)
    for change in (*plan.revoke, *plan.grant):
        by_scope[change.grant.provider, change.grant.scope].append(change)

    def run(item: tuple[ScopeRef, list[Change]]) -> list[ChangeResult]:
        (name, scope), changes = item
        try:
            results = list(providers[name].apply(scope, changes, now))
        except Exception as exc:  # report every change of the scope failed, go on
            return [ChangeResult(c, ok=False, message=f"apply failed: {exc}") for c in changes]
        reported = {r.change for r in results}
        missing = [c for c in changes if c not in reported]
        return results + [
            ChangeResult(c, ok=False, message="the provider reported no result") for c in missing
        ]

    items = sorted(by_scope.items())
    with _pool(concurrency) as pool:
        return [r for batch in pool.map(run, items) for r in batch]


# -- the loop ---------------------------------------------------------------------------


@dataclass
class Settings:
    repo: Path
    now: datetime
    trust_git: bool = False
    apply: bool = False
    concurrency: int = DEFAULT_CONCURRENCY
    ledger: bool = True
    env: Mapping[str, str] | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)


def _approval_records(
    source: ApprovalSource, loaded: LoadedRepo, changes: Mapping[str, FileChange]
) -> dict[str, ApprovalRecord]:
    known = [changes[r.path] for r in loaded.requests if r.path in changes]
    records = dict(source.lookup(known)) if known else {}
    for r in loaded.requests:
        if r.path not in changes:
            records[r.path] = ApprovalRecord(
                r.path, "", None, None, error="the file is not committed on this branch"
            )
    return records


def reconcile(settings: Settings) -> Outcome:
    """Load, verify, evaluate, observe, plan and (with ``apply``) act. Raises ConfigError
    (exit 2) before touching anything when the setup is wrong."""
    repo, now = settings.repo, settings.now
    source = approval_source(settings.trust_git, repo, settings.env)
    head = gitlog.head_commit(repo)
    history = gitlog.read_history(repo) if head else gitlog.History()
    gitlog.check_complete(history)
    loaded = load_branch(repo, head)
    _check_config(loaded)
    problems = [_finding_problem(f) for f in loaded.findings]
    loaded = _valid_requests(loaded)

    records = _approval_records(source, loaded, history.changes)
    desired, decisions, refusals = build_desired(loaded, records, now)
    problems += refusals
    notes = request_notes(decisions, problems, now)
    for path, record in records.items():
        if record.transient:
            notes[path] = "approval could not be verified right now: left as it was"

    historical = gitlog.blob_scopes(repo, history.old_blobs)
    scopes = scopes_to_observe(loaded, historical)
    options = {"concurrency": settings.concurrency, **settings.provider_options}
    unusable: dict[str, str] = {}
    providers = make_providers(loaded, scopes, options, unusable)
    actual, failed, calls = observe_all(providers, scopes, now, settings.concurrency)
    for name, message in unusable.items():  # its scopes are unknown, not empty
        failed.update({(name, scope): message for scope in scopes.get(name, ())})
    problems += [
        _scope_problem(ref, msg, loaded, historical, now) for ref, msg in sorted(failed.items())
    ]
    observed = [g for found in actual.values() for g in found]
    desired |= held_grants(loaded, records, observed, now, history.changes)
    readable = [g for g in desired if (g.provider, g.scope) not in failed]
    former = former_grants(decisions, loaded)
    the_plan = make_plan(readable, observed, now, notes=notes, former=former)
    the_plan = replace(the_plan, errors=tuple(str(p) for p in problems if p.severity == "error"))
    outcome = Outcome(now, the_plan, problems, failed_scopes=failed, calls=calls)
    if settings.apply:
        outcome.results = apply_all(providers, the_plan, now, settings.concurrency)
        outcome.applied = True
        if settings.ledger and outcome.results:
            _record_ledger(outcome, repo, head)
    return outcome


def _record_ledger(outcome: Outcome, repo: Path, head: str | None) -> None:
    """Append to the audit ledger; a failure is reported, never undoes what was applied."""
    try:
        ledger = importlib.import_module("reconciler.ledger")
    except ImportError:
        outcome.problems.append(
            Problem(
                "W-LEDGER",
                "the ledger module is not available; nothing recorded",
                severity="warning",
            )
        )
        return
    record: Callable[..., str | None] = ledger.record
    run: dict[str, object] = {}
    if hasattr(ledger, "default_run"):
        run.update(ledger.default_run(repo))
    run["commit"] = head or run.get("commit") or ""
    if os.environ.get("GITHUB_ACTOR"):
        run["actor"] = os.environ["GITHUB_ACTOR"]
    try:
        # The ledger picks its own branch (accessctl-ledger), never the checked-out one.
        outcome.ledger = record(repo, outcome.results, now=outcome.now, run=run)
    except Exception as exc:  # the grants stand; the missing record must be noticed
        outcome.problems.append(
            Problem("E-LEDGER", f"could not record this apply in the ledger: {exc}")
        )
