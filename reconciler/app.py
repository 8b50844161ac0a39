"""The one place that wires the core to git, approvals and the cloud providers.

``reconcile()`` runs the whole loop: read the branch (``reconciler.history``), establish
each request's approval, judge it (``reconciler.core.judgment``), observe every scope where
managed grants may sit (concurrently, one read per scope), plan, and, for ``apply``, carry
out each scope's changes in one provider call and hand the results to the sinks (the
ledger first). Scopes fail on their own: a scope that cannot be read gets no changes at
all (never revoke on unknown state) and is reported; the others go on.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler import git, history
from reconciler.approvals import ApprovalRecord, ApprovalSource, TrustGit
from reconciler.core import providers as providers_registry
from reconciler.core.judgment import Approval, Judgment, grant_for, judge
from reconciler.core.judgment import Problem as JudgmentProblem
from reconciler.core.models import AccessRequest, Change, ChangeResult, Config, Grant, Plan
from reconciler.core.plan import plan as make_plan
from reconciler.core.policy import compute_window
from reconciler.core.prcheck import may_revoke
from reconciler.core.render import Problem
from reconciler.core.timeutil import format_rfc3339
from reconciler.errors import ConfigError, Finding
from reconciler.providers import base
from reconciler.sinks import HeartbeatSink, LedgerSink, NotificationSink, RunReport, Sink

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


def judge_current(
    branch: history.Branch, records: Mapping[str, ApprovalRecord], now: datetime
) -> dict[str, Judgment]:
    """The one judgment of every request file on the branch, by the policies at its tip."""
    out: dict[str, Judgment] = {}
    for version in branch.current():
        record = records.get(version.path)
        approval = (
            record.approval()
            if record is not None
            else Approval(None, refusal="the file is not committed on this branch")
        )
        out[version.path] = judge(version, approval, now, at_tip=True)
    return out


def _problem(j: Judgment, p: JudgmentProblem) -> Problem:
    line = j.request.line_of(p.key) if j.request is not None and p.key else 1
    if p.kind == "file":
        return Problem(p.code, p.message, file=j.path, line=p.line or 1)
    message = p.message
    if p.policy and p.policy not in message:
        message += f" (policy {p.policy})"
    return Problem(p.code, message, file=j.path, line=line)


def judgment_problems(judgments: Mapping[str, Judgment]) -> list[Problem]:
    """What plan/apply report about the requests: every reason one is not allowed. A
    request only waiting for its window is not a problem; an unverifiable one is."""
    out: list[Problem] = []
    for j in judgments.values():
        if j.allowed:
            continue
        if j.state == "suspended":
            # The refusals an emergency stop causes are its intended outcome: notes.
            out += [replace(_problem(j, p), severity="note") for p in j.problems]
            continue
        out += [_problem(j, p) for p in j.problems] or [
            Problem("E-REFUSED", "not allowed by any policy", file=j.path, line=1)
        ]
    return out


def desired_grants(judgments: Mapping[str, Judgment], now: datetime) -> set[Grant]:
    """The grants that should exist now: allowed requests in (or, where the cloud
    enforces the begin itself, before) their window."""
    return {g for j in judgments.values() if j.wanted(now) and (g := j.grant()) is not None}


def held_grants(
    judgments: Mapping[str, Judgment], observed: Iterable[Grant], now: datetime
) -> set[Grant]:
    """Grants left in place while their request's approval cannot be verified (GitHub
    down): unknown is not refused, so an existing grant is neither revoked nor created.
    Only the window as git dates it, when a policy allows that window (so never longer
    than its max_duration), and only while that window holds."""
    present = {g.key(now) for g in observed}
    held: set[Grant] = set()
    for j in judgments.values():
        g = j.grant() if j.state == "unverified" else None
        if g is None or g.end is None or g.end <= now:
            continue
        if not providers_registry.spec(g.provider).writable_now(g, now):
            continue
        if g.key(now) in present:
            held.add(replace(g, held=True))
    return held


def request_notes(judgments: Mapping[str, Judgment], now: datetime) -> dict[str, str]:
    """One sentence per request path, used as the reason of the changes concerning it."""
    notes: dict[str, str] = {}
    for path, j in judgments.items():
        window = j.window
        if j.state == "unverified":
            notes[path] = "approval could not be verified right now: left as it was"
        elif j.state == "suspended":
            notes[path] = next(
                (p.message for p in j.problems if p.kind == "suspended"), "requester suspended"
            )
        elif not j.allowed:
            first = next((p for p in j.problems if p.kind != "file"), None)
            if any(p.kind == "file" for p in j.problems):
                notes[path] = "request not valid or not approved: the file is invalid"
            else:
                notes[path] = f"refused: {first.message if first else 'not allowed'}"
        elif window is not None and window.end <= now:
            notes[path] = f"expired at {format_rfc3339(window.end)} (policy {j.policy})"
        elif (
            window is not None
            and window.begin > now
            and not providers_registry.spec(j.request.provider).future_start  # type: ignore[union-attr]
        ):
            notes[path] = f"scheduled: begins at {format_rfc3339(window.begin)}"
        elif j.request is not None and j.request.break_glass:
            notes[path] = (
                f"BREAK-GLASS: allowed by policy {j.policy} without approval; an approver "
                "must review the merged pull request"
            )
        else:
            notes[path] = f"allowed by policy {j.policy}"
    return notes


# A version opened by someone other than its requester, or filed in someone else's
# directory, never held a grant under any policy: it is never named for a revoke.
_NEVER_GRANTED = frozenset({"E-APPROVAL-AUTHOR", "E-REFUSED-WRONG-DIRECTORY"})


def former_grants(judgments: Mapping[str, Judgment], config: Config) -> list[Grant]:
    """What each request on the branch would hold, whether or not it holds now: lets a
    revoke of a grant that names no request (an AWS assignment) say which request it ends."""
    out = []
    for j in judgments.values():
        request = j.request
        if request is None or j.window is None:
            continue
        if any(p.code in _NEVER_GRANTED for p in j.problems):
            continue
        principal = j.principal or config.principal(request.requester, request.provider)
        if principal is not None:
            out.append(grant_for(request, principal, j.window, j.pr))
    return out


def untraced_matches(former: Iterable[Grant], observed: Iterable[Grant]) -> list[Grant]:
    """The former grants that could name an observed grant carrying no request (an AWS
    assignment): same provider, scope and role. Only those are resolved to
    provider ids, so a long history costs no lookups for people who hold nothing."""
    open_ = {(g.provider, g.scope, g.role) for g in observed if g.request is None}
    return [g for g in former if (g.provider, g.scope, g.role) in open_]


# -- loading ----------------------------------------------------------------------------


def _finding_problem(f: Finding) -> Problem:
    return Problem(f.code, f.message, file=f.file, line=f.line, severity=f.severity)


def _check_config(findings: Iterable[Finding]) -> None:
    broken = [f for f in findings if f.severity == "error"]
    if broken:
        # Acting on half a policy set could revoke everything: change nothing, stop.
        raise ConfigError(
            f"the policies have {len(broken)} error(s); nothing was planned or changed",
            tuple(broken),
        )


# -- scopes and providers ---------------------------------------------------------------


def scopes_to_observe(
    config: Config, requests: Iterable[AccessRequest], former: Iterable[ScopeRef]
) -> dict[str, set[str]]:
    """Per provider: where managed grants may sit. Exact policy scopes, the scopes of the
    valid requests on the branch, and the scopes valid earlier versions of request files
    (edited or deleted) named. Nothing else (no note, no invalid file) adds a scope."""
    out: dict[str, set[str]] = defaultdict(set)
    for policy in config.policies:
        out[policy.provider].update(s for s in policy.scopes if not (_GLOB & set(s)))
    for request in requests:
        out[request.provider].add(request.scope)
    active = set(out)
    for provider, scope in former:
        if provider in active and providers_registry.spec(provider).scope_matches(scope):
            out[provider].add(scope)
    return dict(out)


def _scope_problem(
    ref: ScopeRef,
    message: str,
    current: set[ScopeRef],
    former: Mapping[ScopeRef, datetime],
    *,
    now: datetime,
    held: set[ScopeRef],
) -> Problem:
    """An unreadable scope is an error where a current request points, or where an edited
    or deleted request pointed recently AND the reconciler's own ledger shows a grant there
    that it never recorded revoking (a revocation may be pending). A version that never
    granted anything (an unapproved commit inside a rebased pull request) cannot make every
    run fail. A scope only policies name, or only old versions named, is a warning: a
    project deleted a year ago must not turn every run red, and GCP bindings there expire
    by themselves."""
    provider, scope = ref
    recent = ref in former and former[ref] > now - HISTORY_HORIZON and ref in held
    if ref in current or recent:
        return Problem(
            "E-SCOPE-UNREADABLE",
            f"{message}; no changes planned for this scope",
            provider=provider,
            scope=scope,
        )
    why = "earlier request versions named it" if ref in former else "named in policies"
    return Problem(
        "W-SCOPE-UNREADABLE",
        f"{message}; {why}, but no current or recent request uses it",
        provider=provider,
        scope=scope,
        severity="warning",
    )


def make_providers(
    config: Config,
    current: Iterable[ScopeRef],
    names: Iterable[str],
    options: Mapping[str, Any],
    unusable: dict[str, str] | None = None,
) -> dict[str, base.Provider]:
    """One provider per name. With ``unusable``, a provider that cannot be set up (e.g. no
    AWS credentials) and that no current request uses is left out and its reason recorded:
    a GCP-only deployment whose policies also name AWS still converges on GCP. A provider a
    current request needs stays a configuration error (exit 2)."""
    needed = {provider for provider, _ in current}
    providers: dict[str, base.Provider] = {}
    for name in sorted(names):
        try:
            providers[name] = base.make(name, config, options)
        except ConfigError as exc:
            if unusable is None or name in needed:
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
) -> tuple[dict[ScopeRef, frozenset[Grant]], dict[ScopeRef, str], Counter[str], list[str]]:
    """One observe() per provider with all its scopes (providers read scopes in parallel
    themselves, and AWS discovers accounts once); providers side by side. Returns the
    grants, the unreadable scopes, the API calls made and the providers' warnings."""
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
    warnings: list[str] = []
    with _pool(min(concurrency, max(1, len(jobs)))) as pool:
        for (name, batch), obs in zip(jobs, pool.map(run, jobs), strict=True):
            calls.update({f"{name}.{k}": v for k, v in obs.calls.items()})
            warnings += [f"{name}: {w}" for w in obs.warnings]
            for scope, found in obs.grants.items():
                grants[name, scope] = found
            for scope, msg in obs.failures.items():
                failures[name, scope] = msg
            for scope in batch:  # a scope the provider forgot is unknown, not empty
                if (name, scope) not in grants and (name, scope) not in failures:
                    failures[name, scope] = "the provider reported nothing for this scope"
    for ref in failures:
        grants.pop(ref, None)
    return grants, failures, calls, warnings


def apply_all(
    providers: Mapping[str, base.Provider],
    plan: Plan,
    now: datetime,
    concurrency: Mapping[str, int],
) -> list[ChangeResult]:
    """Each scope's grants and revokes in one provider call, scopes in parallel: at most
    ``concurrency[provider]`` scopes of one provider at a time (its setting, or the flag)."""
    by_scope: dict[ScopeRef, list[Change]] = defaultdict(list)
    for change in (*plan.revoke, *plan.grant):
        by_scope[change.grant.provider, change.grant.scope].append(change)
    slots = {
        name: threading.BoundedSemaphore(max(1, concurrency.get(name, DEFAULT_CONCURRENCY)))
        for name in providers
    }

    def run(item: tuple[ScopeRef, list[Change]]) -> list[ChangeResult]:
        (name, scope), changes = item
        try:
            with slots[name]:
                results = list(providers[name].apply(scope, changes, now))
        except Exception as exc:  # report every change of the scope failed, go on
            return [ChangeResult(c, ok=False, message=f"apply failed: {exc}") for c in changes]
        reported = {r.change for r in results}
        missing = [c for c in changes if c not in reported]
        return results + [
            ChangeResult(c, ok=False, message="the provider reported no result") for c in missing
        ]

    items = sorted(by_scope.items())
    with _pool(max(1, sum(concurrency.get(n, DEFAULT_CONCURRENCY) for n in providers))) as pool:
        return [r for batch in pool.map(run, items) for r in batch]


# -- the loop ---------------------------------------------------------------------------


@dataclass
class Settings:
    repo: Path
    now: datetime
    trust_git: bool = False
    apply: bool = False
    # None: the policies' providers.<name>.concurrency (else the default); a number: the
    # --concurrency flag, which overrides the policies.
    concurrency: int | None = None
    ledger: bool = True
    env: Mapping[str, str] | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    sinks: Sequence[Sink] | None = None  # None: the ledger (unless ledger=False)


def _approval_records(source: ApprovalSource, branch: history.Branch) -> dict[str, ApprovalRecord]:
    """Approval lookups only for valid files: an invalid file is refused for what it is,
    without asking GitHub."""
    changes = branch.changes()
    wanted = [changes[v.path] for v in branch.current() if v.request is not None and not v.findings]
    return dict(source.lookup(wanted)) if wanted else {}


def deployment(config: Config, repo: Path, env: Mapping[str, str]) -> str:
    """This deployment's identity (it keeps two deployments in one organisation off each
    other's grants): providers.gcp.deployment, else the repository (GITHUB_REPOSITORY, or
    origin's owner/name), else "default"."""
    configured = (config.providers.get("gcp") or {}).get("deployment")
    if isinstance(configured, str) and configured:
        return configured
    if env.get("GITHUB_REPOSITORY"):
        return env["GITHUB_REPOSITORY"]
    return git.remote_repository(repo) or "default"


def reconcile(settings: Settings) -> Outcome:
    """Load, verify, judge, observe, plan and (with ``apply``) act. Raises ConfigError
    (exit 2) before touching anything when the setup is wrong."""
    repo, now = settings.repo, settings.now
    env = os.environ if settings.env is None else settings.env
    source = approval_source(settings.trust_git, repo, env)
    branch = history.load_branch(repo)
    branch.check_complete()
    _check_config(branch.config_findings)
    config = branch.config
    problems = branch_problems(branch, now)

    records = _approval_records(source, branch)
    judgments = judge_current(branch, records, now)
    problems += judgment_problems(judgments)
    problems += ungated_removals(branch, source, now)
    desired = desired_grants(judgments, now)
    notes = request_notes(judgments, now)

    valid = [
        j.request
        for j in judgments.values()
        if j.request is not None and not any(p.kind == "file" for p in j.problems)
    ]
    former = branch.former_scopes()
    scopes = scopes_to_observe(config, valid, former)
    options: dict[str, Any] = {
        "deployment": deployment(config, repo, env),
        "known_requests": branch.request_paths(),
        **settings.provider_options,
    }
    if settings.concurrency is not None:
        options["concurrency"] = settings.concurrency
    limits = provider_concurrency(config, scopes, settings.concurrency)
    concurrency = max(limits.values(), default=DEFAULT_CONCURRENCY)
    unusable: dict[str, str] = {}
    current = {(r.provider, r.scope) for r in valid}
    adapters = make_providers(config, current, scopes, options, unusable)
    actual, failed, calls, warnings = observe_all(adapters, scopes, now, concurrency)
    for name, message in unusable.items():  # its scopes are unknown, not empty
        failed.update({(name, scope): message for scope in scopes.get(name, ())})
    held = granted_scopes(repo) if failed else set()
    problems += [
        _scope_problem(ref, msg, current, former, now=now, held=held)
        for ref, msg in sorted(failed.items())
    ]
    problems += [Problem("W-PROVIDER", w, severity="warning") for w in warnings]
    observed = [g for found in actual.values() for g in found]
    desired = resolve_all(adapters, desired) | held_grants(judgments, observed, now)
    readable = [g for g in desired if (g.provider, g.scope) not in failed]
    formerly = resolve_all(adapters, untraced_matches(former_grants(judgments, config), observed))
    the_plan = make_plan(readable, observed, now, notes=notes, former=formerly)
    the_plan = replace(the_plan, errors=tuple(str(p) for p in problems if p.severity == "error"))
    outcome = Outcome(now, the_plan, problems, failed_scopes=failed, calls=calls)
    if settings.apply:
        outcome.results = apply_all(adapters, the_plan, now, limits)
        outcome.applied = True
        settled, settle_calls = settle_all(adapters, now)
        outcome.problems += settled
        outcome.calls.update(settle_calls)
        sinks = settings.sinks
        if sinks is None:
            sinks = (
                [LedgerSink(repo, use_github=not settings.trust_git, env=env), HeartbeatSink(repo)]
                if settings.ledger
                else []
            )
            sinks = [*sinks, *notification_sinks(config, env, outcome)]
        report = RunReport(
            now=now,
            head=branch.tip,
            results=tuple(outcome.results),
            judgments=judgments,
            files=source.evidence(),
            succeeded=outcome.exit_code == 0,
            run=env.get("GITHUB_RUN_ID", ""),
            # only the unreadable scopes that are errors: a warning alone sends nothing
            failed_scopes={
                ref: message
                for ref, message in failed.items()
                if any(
                    p.code == "E-SCOPE-UNREADABLE" and (p.provider, p.scope) == ref
                    for p in outcome.problems
                )
            },
        )
        publish_all(sinks, report, outcome)
    return outcome


def ungated_removals(
    branch: history.Branch, source: ApprovalSource, now: datetime
) -> list[Problem]:
    """Request files deleted recently by someone who may not revoke them (neither the
    requester nor an eligible approver of a policy that allows the request): the gate
    refuses such a deletion, so one on the branch went past it. The revocation still
    happens (less access is safe); a person should know."""
    out: list[Problem] = []
    for v in branch.versions:
        removal, request = v.removal, v.request
        if removal is None or not removal.deleted or request is None or v.findings:
            continue
        if removal.at <= now - HISTORY_HORIZON:
            continue
        if removal.at >= compute_window(request, v.committed_at).end:
            continue  # cleaning up after the window ended revokes nothing
        remover = source.remover(removal, v.path)
        if remover.login is None:
            if remover.error:
                out.append(Problem("W-REMOVAL-UNVERIFIED", remover.error, file=v.path, line=1))
            continue
        if may_revoke(remover.login, request, v.path, v.config):
            continue
        via = f"pull request #{remover.pr}" if remover.pr else "a direct push"
        out.append(
            Problem(
                "W-REVOKED-BY-OTHER",
                f"deleted by {remover.login} through {via} in {removal.commit[:12]}, who is "
                f"neither the requester {request.requester} nor an eligible approver of a "
                "policy that allows it; the access is revoked all the same",
                file=v.path,
                line=1,
                severity="warning",
            )
        )
    return out


def branch_problems(branch: history.Branch, now: datetime) -> list[Problem]:
    """What a person should know about the branch itself: policy warnings, entries under
    requests/ that are not request files, and a schedule GitHub may soon disable."""
    problems = [_finding_problem(f) for f in branch.config_findings]
    problems += [_finding_problem(s.finding()) for s in branch.strays]
    return problems + inactivity_warning(branch.repo, now)


# GitHub disables the scheduled workflows of a public repository after 60 days without
# activity; say so well before, while a commit still keeps the revocations running.
INACTIVE_WARNING = timedelta(days=45)


def inactivity_warning(repo: Path, now: datetime) -> list[Problem]:
    stamp = git.text(repo, "log", "-1", "--format=%ct", "HEAD")
    if not stamp.isdigit():
        return []
    idle = now - datetime.fromtimestamp(int(stamp), now.tzinfo)
    if idle < INACTIVE_WARNING:
        return []
    return [
        Problem(
            "W-SCHEDULE-INACTIVE",
            f"no commit on this branch for {idle.days} days: GitHub disables the scheduled "
            "workflows of a public repository after 60 days without activity, and then "
            "nothing revokes expired access on time; push a commit (or re-enable the "
            "workflow) and watch the heartbeat",
            severity="warning",
        )
    ]


def granted_scopes(repo: Path) -> set[ScopeRef]:
    """(provider, scope) where the ledger shows a grant the reconciler never recorded
    revoking: where an unreadable scope may hide access that is still to be taken away."""
    from reconciler import ledger

    try:
        entries = ledger.read(repo)
    except Exception:  # no ledger, unreadable: no evidence of a grant anywhere
        return set()
    open_grants: dict[tuple[str, str, str, str], bool] = {}
    for e in sorted(entries, key=lambda e: e.time):
        if e.ok and e.action in ("grant", "revoke"):
            open_grants[e.key()] = e.action == "grant"
    return {(provider, scope) for (provider, scope, _, _), live in open_grants.items() if live}


def provider_concurrency(config: Config, names: Iterable[str], flag: int | None) -> dict[str, int]:
    """How many scopes of each provider are worked on at once: the --concurrency flag
    when given, else the provider's ``concurrency`` setting in the policies, else 8."""
    out: dict[str, int] = {}
    for name in names:
        configured = (config.providers.get(name) or {}).get("concurrency")
        value = flag if flag is not None else configured
        out[name] = int(value) if isinstance(value, int) and value > 0 else DEFAULT_CONCURRENCY
    return out


def settle_all(
    adapters: Mapping[str, base.Provider], now: datetime
) -> tuple[list[Problem], Counter[str]]:
    """Each provider's upkeep after the run (even an idle one); failures are errors."""
    problems: list[Problem] = []
    calls: Counter[str] = Counter()
    for name in sorted(adapters):
        try:
            obs = adapters[name].settle(now)
        except Exception as exc:  # a provider bug must not hide the others' results
            obs = base.Observation(failures={"settle": f"failed: {exc}"})
        calls.update({f"{name}.{k}": v for k, v in obs.calls.items()})
        problems += [
            Problem("E-SESSIONS", f"{what}: {message}", provider=name)
            for what, message in sorted(obs.failures.items())
        ]
        problems += [
            Problem("W-PROVIDER", f"{name}: {w}", severity="warning") for w in obs.warnings
        ]
        problems += [Problem("N-SESSIONS", f"{name}: {n}", severity="note") for n in obs.notes]
    return problems, calls


def resolve_all(adapters: Mapping[str, base.Provider], grants: Iterable[Grant]) -> set[Grant]:
    """Each provider fills in its own ids of the principals (AWS: user ids)."""
    by_provider: dict[str, list[Grant]] = defaultdict(list)
    for g in grants:
        by_provider[g.provider].append(g)
    out: set[Grant] = set()
    for name, batch in by_provider.items():
        adapter = adapters.get(name)
        out.update(adapter.resolve(batch) if adapter is not None else batch)
    return out


def notification_sinks(config: Config, env: Mapping[str, str], outcome: Outcome) -> list[Sink]:
    """The notifications the policies configure; one that cannot be set up (its variable
    unset, a plain-http URL) is an error of the run, after everything else was done."""
    from reconciler import notify

    notifiers, broken = notify.build(config, env)
    outcome.problems += [Problem("E-NOTIFY-CONFIG", message) for message in broken]
    return [NotificationSink(config, notifiers, env)] if notifiers else []


def publish_all(sinks: Sequence[Sink], report: RunReport, outcome: Outcome) -> None:
    """Hand the run to every sink; a sink that fails is reported, never undoes what was
    applied, and never keeps the other sinks from running. A notification not delivered
    is a warning: it never changes the run's exit code."""
    from reconciler.notify import DeliveryFailed

    for sink in sinks:
        try:
            written = sink.publish(report)
        except DeliveryFailed as exc:
            outcome.problems.append(Problem("W-NOTIFY", str(exc), severity="warning"))
            continue
        except Exception as exc:  # the grants stand; the missing record must be noticed
            outcome.problems.append(Problem(f"E-{sink.name.upper()}", f"{sink.describe}: {exc}"))
            continue
        if sink.name == "ledger":
            outcome.ledger = written
