"""Notifications: the events a run produces, and their delivery to Slack, webhooks and a
GitHub issue.

The policies name each sink and the environment variables that hold its URL and secret
(``Config.notifications``); nothing secret is ever read from the repository, and no URL,
secret or token is ever put in a message, an exception or the ledger. Delivery is
retried briefly (``reconciler.retry``) and then given up with a warning: a notification
never fails, undoes or delays the grant or revoke it reports.

```python
notifiers, problems = build(config, os.environ)
warnings = deliver(notifiers, events_of_run(report, tolerance), succeeded=True)
```
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from reconciler.core import providers
from reconciler.core.escape import clean_json, terminal_text
from reconciler.core.models import ChangeKind, Config, Grant, Notification
from reconciler.core.timeutil import format_rfc3339
from reconciler.errors import AccessctlError, ConfigError
from reconciler.retry import Backoff, retrying

if TYPE_CHECKING:
    from reconciler.core.activity import ActivityReport, LogEvent
    from reconciler.core.audit import AuditEntry
    from reconciler.core.prcheck import Report
    from reconciler.github import GitHubClient
    from reconciler.sinks import Decided, RunReport

SIGNATURE_HEADER = "X-Accessctl-Signature-256"
SCHEMA_VERSION = 1
ISSUE_LABEL = "accessctl"
ISSUE_MARKER = "<!-- accessctl:reconciler-alert -->"
ISSUE_TITLE = "accessctl: the reconciler needs attention"
# Short and bounded: a run waits at most a few seconds per sink before moving on.
BACKOFF = Backoff(attempts=3, base=0.5, cap=2.0, max_hint=5.0)
TIMEOUT = 5.0  # seconds per HTTP attempt
ALARMS = frozenset({"failed", "late-revoke", "reconciler-stale"})  # open the GitHub issue


class DeliveryFailed(AccessctlError):
    """A notification could not be delivered (after its retries): a warning, never a
    failure of the run that produced it."""

    exit_code = 1


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One thing people hear about. Request events carry the request; ``message`` says
    what went wrong for ``failed`` and ``late-revoke``, and the review a ``break-glass``
    grant owes."""

    event: str
    time: datetime
    summary: str
    request: str | None = None
    requester: str | None = None
    provider: str | None = None
    scope: str | None = None
    role: str | None = None
    principal: str | None = None
    begin: datetime | None = None
    end: datetime | None = None
    pr: int | None = None
    reason: str | None = None
    ticket: str | None = None
    policy: str | None = None
    message: str | None = None
    context: Mapping[str, str | None] = field(default_factory=dict)  # repository, links

    def body(self) -> dict[str, Any]:
        """The webhook's JSON body (reconciler/schemas/notification.schema.json); text from
        files and clouds with its control and bidi characters shown as escapes."""
        return clean_json(
            {
                "version": SCHEMA_VERSION,
                "event": self.event,
                "time": format_rfc3339(self.time),
                "summary": self.summary,
                "repository": self.context.get("repository"),
                "run_url": self.context.get("run_url"),
                "request": self.request,
                "requester": self.requester,
                "provider": self.provider,
                "scope": self.scope,
                "role": self.role,
                "principal": self.principal,
                "begin": _stamp(self.begin),
                "end": _stamp(self.end),
                "pr": self.pr,
                "pr_url": self.pr_url,
                "reason": self.reason,
                "ticket": self.ticket,
                "policy": self.policy,
                "message": self.message,
            }
        )

    @property
    def pr_url(self) -> str | None:
        repository = self.context.get("repository")
        if self.pr is None or not repository:
            return None
        server = self.context.get("server_url") or "https://github.com"
        return f"{server}/{repository}/pull/{self.pr}"


def _stamp(t: datetime | None) -> str | None:
    return format_rfc3339(t) if t is not None else None


def context_of(env: Mapping[str, str]) -> dict[str, str | None]:
    """Where the run happens, for links (Actions' own variables; nothing secret)."""
    repository = env.get("GITHUB_REPOSITORY") or None
    server = env.get("GITHUB_SERVER_URL") or "https://github.com"
    run = env.get("GITHUB_RUN_ID")
    run_url = f"{server}/{repository}/actions/runs/{run}" if repository and run else None
    return {"repository": repository, "server_url": server, "run_url": run_url}


def _request_fields(grant: Grant) -> dict[str, Any]:
    return {
        "request": grant.request,
        "provider": grant.provider,
        "scope": grant.scope,
        "role": grant.role,
        "principal": grant.principal,
        "begin": grant.begin,
        "end": grant.end,
        "pr": grant.pr,
    }


def _until(end: datetime | None) -> str:
    return f" until {format_rfc3339(end)}" if end is not None else ""


def events_of_run(
    report: RunReport,
    tolerance: timedelta,
    context: Mapping[str, str | None],
    failed_scopes: Mapping[tuple[str, str], str] | None = None,
) -> list[Event]:
    """granted, break-glass (a grant of emergency access, beside its granted), revoked,
    failed (a change or an unreadable scope) and late-revoke."""
    out: list[Event] = []
    for d in report.decided():
        g, ok = d.result.change.grant, d.result.ok
        fields = _request_fields(g) | {"pr": d.pr, "requester": d.requester}
        fields |= {"reason": d.reason, "ticket": d.ticket, "policy": d.policy}
        who = d.requester or g.principal
        what = f"{g.role} on {g.provider} {g.scope}"
        granting = d.result.change.kind is ChangeKind.GRANT
        if ok:
            kind = "granted" if granting else "revoked"
            summary = f"{kind} {what} {'to' if granting else 'from'} {who}"
            summary += _until(g.end) if granting else ""
            out.append(Event(kind, report.now, summary, context=context, **fields))
            if granting and d.break_glass:
                granted = f"{what} to {who}{_until(g.end)}"
                out.append(_break_glass(report.now, d, granted, fields, context))
        else:
            verb = "grant" if granting else "revoke"
            summary = f"could not {verb} {what} for {who}: {d.result.message}"
            out.append(
                Event(
                    "failed",
                    report.now,
                    summary,
                    message=d.result.message,
                    context=context,
                    **fields,
                )
            )
        if not granting and _late(g, report.now, tolerance):
            assert g.end is not None
            late = f"revoke of {what} for {who} {'done' if ok else 'still not done'} "
            late += f"{report.now - g.end} after access had to end at {format_rfc3339(g.end)}"
            out.append(
                Event("late-revoke", report.now, late, message=late, context=context, **fields)
            )
    for (provider, scope), message in sorted((failed_scopes or {}).items()):
        summary = f"could not read {provider} {scope}: {message}"
        out.append(
            Event(
                "failed",
                report.now,
                summary,
                provider=provider,
                scope=scope,
                message=message,
                context=context,
            )
        )
    return out


def _break_glass(
    now: datetime,
    d: Decided,
    granted: str,
    fields: Mapping[str, Any],
    context: Mapping[str, str | None],
) -> Event:
    """Emergency access granted without approval: loud, with the review it owes."""
    pr = f"pull request #{d.pr}" if d.pr is not None else "its pull request"
    due = f" by {format_rfc3339(d.review_due)}" if d.review_due is not None else ""
    review = (
        f"an eligible approver of policy {d.policy or '?'} (not the requester) must approve "
        f"{pr}{due}"
    )
    summary = f"BREAK-GLASS: granted {granted} without approval; {review}"
    return Event("break-glass", now, summary, message=review, context=context, **fields)


def waiting_events(report: Report, now: datetime, context: Mapping[str, str | None]) -> list[Event]:
    """request-waiting: one per request file of the pull request that only waits for
    approvals (pr-check's ``pending``)."""
    out: list[Event] = []
    for v in report.verdicts:
        r = v.request
        if v.kind != "request" or v.state != "pending" or r is None:
            continue
        window = v.decision.window if v.decision is not None else None
        missing = v.approval.missing if v.approval is not None else 0
        summary = f"{r.requester} asks for {r.role} on {r.provider} {r.scope}"
        summary += f"{_until(window.end if window else None)}: waiting for {missing} approval(s)"
        policy = v.approval.policy.name if v.approval is not None else None
        out.append(
            Event(
                "request-waiting",
                now,
                summary,
                request=v.path,
                requester=r.requester,
                provider=r.provider,
                scope=r.scope,
                role=r.role,
                begin=window.begin if window else None,
                end=window.end if window else None,
                pr=report.pr,
                reason=r.reason,
                ticket=r.ticket,
                policy=policy,
                context=context,
            )
        )
    return out


def activity_events(
    report: ActivityReport,
    now: datetime,
    context: Mapping[str, str | None],
    requests: Mapping[tuple[str, str], AuditEntry] | None = None,
) -> list[Event]:
    """``used-after-end`` and ``denied-attempts`` (the audit codes) per grant that raised
    them, and ``unauthorized-attempt`` per principal and scope denied without a grant
    there (one event however many calls). ``requests``: (file, commit) -> its audit
    entry, for the pull request, reason, ticket and policy."""
    from reconciler.core.activity import anomalies_of

    out: list[Event] = []
    for activity in report.grants:
        g = activity.grant
        e = (requests or {}).get((g.request, g.version))
        for code, sentence in anomalies_of(activity):
            out.append(
                Event(
                    code,
                    now,
                    f"{g.request}: {sentence}",
                    request=g.request,
                    requester=g.requester or None,
                    provider=g.provider,
                    scope=g.scope,
                    role=g.role,
                    principal=g.principal,
                    begin=g.begin,
                    end=g.end,
                    pr=e.pr if e else None,
                    reason=e.reason if e else None,
                    ticket=e.ticket if e else None,
                    policy=e.policy if e else None,
                    message=sentence,
                    context=context,
                )
            )
    attempts: dict[tuple[str, str, str], list[LogEvent]] = {}
    for u in report.unauthorized:
        attempts.setdefault((u.provider, u.scope, u.principal), []).append(u)
    for (provider, scope, principal), calls in sorted(attempts.items()):
        first, last = calls[0], calls[-1]
        what = ", ".join(sorted({f"{c.service} {c.action}".strip() for c in calls})[:3])
        sentence = (
            f"{principal} was denied {len(calls)} call(s) on {provider} {scope} without a "
            f"grant there, {format_rfc3339(first.time)} to {format_rfc3339(last.time)} ({what})"
        )
        out.append(
            Event(
                "unauthorized-attempt",
                now,
                sentence,
                provider=provider,
                scope=scope,
                principal=principal,
                begin=first.time,
                end=last.time,
                message=sentence,
                context=context,
            )
        )
    return out


def _late(g: Grant, now: datetime, tolerance: timedelta) -> bool:
    """A revoke past its end plus the tolerance, where the cloud does not end it itself."""
    if g.end is None or now - g.end <= tolerance:
        return False
    return not (providers.known(g.provider) and providers.spec(g.provider).future_start)


# -- sending ----------------------------------------------------------------------------


class Sender(Protocol):
    label: str  # for people, naming the environment variable, never its value

    @property
    def memory_key(self) -> bytes:
        """Secret to the sink (its URL and secret): keys the deliveries pr-check remembers
        in its PR comment, so that nobody without it can write one (``delivery_key``)."""
        ...

    def send(self, events: Sequence[Event], succeeded: bool | None) -> None:
        """Deliver ``events``; ``succeeded`` is whether the apply exited 0 (None outside
        apply). Raise DeliveryFailed when something was not delivered."""
        ...


@dataclass
class Notifier:
    """One configured sink: which events it wants, and how they reach it."""

    entry: Notification
    sender: Sender

    def wanted(self, events: Sequence[Event]) -> list[Event]:
        return [e for e in events if self.entry.wants(e.event)]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead a signed body to another host (or to plain HTTP): refuse."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class _HttpFailure(AccessctlError):
    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def post_json(url: str, body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> None:
    """POST with bounded retries; raise DeliveryFailed with a message free of ``secrets``."""

    def once() -> None:
        # The scheme was checked when the sink was built (_url): https, or loopback http.
        request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
        for name, value in {"Content-Type": "application/json", **headers}.items():
            request.add_header(name, value)
        try:
            with _OPENER.open(request, timeout=TIMEOUT) as answer:
                answer.read()
        except urllib.error.HTTPError as exc:
            retry = exc.code >= 500 or exc.code == 429
            raise _HttpFailure(f"answered HTTP {exc.code}", retry) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _HttpFailure(f"unreachable ({reason})", True) from None

    try:
        retrying(once, policy=BACKOFF, retryable=lambda e: isinstance(e, _HttpFailure) and e.retry)
    except _HttpFailure as exc:
        raise DeliveryFailed(scrub(str(exc), secrets)) from None


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret (and each URL's host and path) replaced by ``***``."""
    for secret in secrets:
        if not secret:
            continue
        parts = urllib.parse.urlsplit(secret)
        for part in (secret, parts.path if len(parts.path) > 1 else "", parts.netloc):
            if part:
                text = text.replace(part, "***")
    return text


def sign(secret: str, body: bytes) -> str:
    """The value of X-Accessctl-Signature-256 for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """JSON (notification.schema.json), one POST per event, signed with HMAC-SHA256."""

    def __init__(self, label: str, url: str, secret: str) -> None:
        self.label, self._url, self._secret = label, url, secret

    @property
    def memory_key(self) -> bytes:
        return f"{self._url}\0{self._secret}".encode()

    def send(self, events: Sequence[Event], succeeded: bool | None) -> None:
        for event in events:
            body = json.dumps(event.body(), sort_keys=True).encode()
            headers = {SIGNATURE_HEADER: sign(self._secret, body)}
            post_json(self._url, body, headers, (self._url, self._secret))


class SlackSender:
    """A Slack incoming webhook: one readable message per event."""

    def __init__(self, label: str, url: str) -> None:
        self.label, self._url = label, url

    @property
    def memory_key(self) -> bytes:
        return self._url.encode()

    def send(self, events: Sequence[Event], succeeded: bool | None) -> None:
        for event in events:
            body = json.dumps({"text": slack_text(event)}).encode()
            post_json(self._url, body, {}, (self._url,))


def _slack_escape(text: str) -> str:
    """Request text is the requester's, log text the principal's: no <!channel>, no
    disguised links, and on one line with control and bidi characters shown as escapes
    (no fake line, no escape sequence, nothing reordered)."""
    text = terminal_text(text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ICONS = {
    "request-waiting": ":hourglass:",
    "granted": ":unlock:",
    "revoked": ":lock:",
    "failed": ":x:",
    "late-revoke": ":warning:",
    "break-glass": ":rotating_light:",
    "reconciler-stale": ":warning:",
    "used-after-end": ":rotating_light:",
    "denied-attempts": ":no_entry:",
    "unauthorized-attempt": ":no_entry:",
}


def slack_text(event: Event) -> str:
    """Who, what, where, until when, and the pull request, for people."""
    lines = [f"{_ICONS.get(event.event, '')} *accessctl {event.event}*: "]
    lines[0] += _slack_escape(event.summary)
    if event.requester:
        lines.append(f"Who: {_slack_escape(event.requester)}")
    if event.role and event.scope:
        lines.append(f"What: {_slack_escape(event.role)} on {_slack_escape(event.scope)}")
    if event.begin or event.end:
        span = f"{format_rfc3339(event.begin) if event.begin else '?'} → "
        lines.append("When: " + span + (format_rfc3339(event.end) if event.end else "?"))
    if event.reason:
        lines.append(f"Why: {_slack_escape(event.reason)}")
    if event.pr_url:
        lines.append(f"<{event.pr_url}|Pull request #{event.pr}>")
    elif event.pr is not None:
        lines.append(f"Pull request #{event.pr}")
    if event.context.get("run_url"):
        lines.append(f"<{event.context['run_url']}|Workflow run>")
    return "\n".join(lines)


class IssueSender:
    """One open issue at a time: opened by an alarm, commented on by the next ones,
    closed by the next apply that exits 0."""

    label = "github-issue (GITHUB_TOKEN, GITHUB_REPOSITORY)"

    def __init__(self, client: Callable[[], GitHubClient], secrets: Sequence[str]) -> None:
        self._client, self._secrets = client, secrets

    @property
    def memory_key(self) -> bytes:
        return "\0".join(self._secrets).encode()

    def send(self, events: Sequence[Event], succeeded: bool | None) -> None:
        alarms = [e for e in events if e.event in ALARMS]
        if not alarms and not succeeded:
            return
        try:
            self._update(alarms)
        except AccessctlError as exc:
            raise DeliveryFailed(scrub(str(exc), self._secrets)) from None

    def _update(self, alarms: Sequence[Event]) -> None:
        client = self._client()
        ours = [i for i in client.open_issues(ISSUE_LABEL) if ISSUE_MARKER in i.body]
        if not alarms:
            for issue in ours:
                client.comment_issue(issue.number, "Resolved: the last apply exited 0.")
                client.close_issue(issue.number)
            return
        text = issue_text(alarms)
        if ours:
            client.comment_issue(ours[0].number, text)
        else:
            client.create_issue(ISSUE_TITLE, f"{ISSUE_MARKER}\n{text}", [ISSUE_LABEL])


def issue_text(alarms: Sequence[Event]) -> str:
    first = alarms[0]
    lines = [f"### {format_rfc3339(first.time)}: {len(alarms)} problem(s)", ""]
    lines += [f"- **{e.event}**: {_md(e.summary)}" for e in alarms]
    if first.context.get("run_url"):
        lines += ["", f"Run: {first.context['run_url']}"]
    lines += ["", "This issue is closed by the next apply that exits 0."]
    return "\n".join(lines)


def _md(text: str) -> str:
    """One line; nothing that mentions people or runs HTML in the issue."""
    return " ".join(text.split()).replace("@", "@\u200b").replace("<", "&lt;")


# -- configuration ----------------------------------------------------------------------


def _where(entry: Notification) -> str:
    return f"{entry.file}:{entry.line}: notifications ({entry.type})"


def _url(entry: Notification, env: Mapping[str, str]) -> str:
    name = entry.url_env or ""
    url = env.get(name, "").strip()
    if not url:
        raise ConfigError(f"{_where(entry)}: the environment variable {name} is not set")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and _loopback(parts.hostname or ""):
        return url
    raise ConfigError(
        f"{_where(entry)}: {name} must hold an https:// URL (plain http:// only to a "
        "loopback address); its value is not shown"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(entry: Notification, env: Mapping[str, str]) -> str:
    name = entry.secret_env or ""
    secret = env.get(name, "")
    if not secret:
        raise ConfigError(f"{_where(entry)}: the environment variable {name} is not set")
    return secret


def build(
    config: Config,
    env: Mapping[str, str] | None = None,
    github: Callable[[], GitHubClient] | None = None,
) -> tuple[list[Notifier], list[str]]:
    """The configured sinks that can deliver, and one message per one that cannot (named
    by its file, line and environment variable; never a value)."""
    env = os.environ if env is None else env
    notifiers: list[Notifier] = []
    problems: list[str] = []
    for entry in config.notifications:
        try:
            notifiers.append(Notifier(entry, _sender(entry, env, github)))
        except ConfigError as exc:
            problems.append(str(exc))
    return notifiers, problems


def _sender(
    entry: Notification, env: Mapping[str, str], github: Callable[[], GitHubClient] | None
) -> Sender:
    if entry.type == "slack":
        return SlackSender(f"slack ({entry.url_env})", _url(entry, env))
    if entry.type == "webhook":
        return WebhookSender(f"webhook ({entry.url_env})", _url(entry, env), _secret(entry, env))
    if entry.type == "github-issue":
        if not (env.get("GITHUB_TOKEN") and env.get("GITHUB_REPOSITORY")):
            raise ConfigError(
                f"{_where(entry)}: needs GITHUB_TOKEN and GITHUB_REPOSITORY in the environment"
            )
        return IssueSender(github or _client_from(env), (env.get("GITHUB_TOKEN", ""),))
    raise ConfigError(f"{_where(entry)}: unknown notification type")


def _client_from(env: Mapping[str, str]) -> Callable[[], GitHubClient]:
    made: list[GitHubClient] = []

    def client() -> GitHubClient:
        if not made:
            from reconciler.github import GitHubClient

            made.append(GitHubClient.from_env(env))
        return made[0]

    return client


def deliver(
    notifiers: Sequence[Notifier], events: Sequence[Event], succeeded: bool | None = None
) -> list[str]:
    """Every notifier its events; one warning per sink that failed (nothing raised)."""
    warnings = []
    for n in notifiers:
        wanted = n.wanted(events)
        if not wanted and not (succeeded and isinstance(n.sender, IssueSender)):
            continue
        problem = _send(n, wanted, succeeded)
        if problem:
            warnings.append(problem)
    return warnings


def _send(n: Notifier, events: Sequence[Event], succeeded: bool | None) -> str | None:
    """Deliver; the warning when it failed (nothing raised)."""
    try:
        n.sender.send(events, succeeded)
    except AccessctlError as exc:
        return f"notification {n.sender.label} not delivered: {exc}"
    except Exception as exc:  # a sink bug never fails the run it reports
        return f"notification {n.sender.label} failed: {type(exc).__name__}"
    return None


# -- request-waiting once per request version ---------------------------------------------
#
# pr-check runs on every push and every review. It remembers which request-waiting it
# delivered in a hidden line of its own PR comment (the second line, right after the
# comment's marker), and believes that line only in a comment whose author is the token's
# identity (GitHubClient.our_comment): not in a file of the pull request, which its author
# writes, nor in anybody else's comment. A key stands for one sink and one version of one
# request file (its path and the blob of its content at the head) in one pull request, so
# an edited request is announced again and a sink that failed gets it at the next run.
# Anyone with write access may edit any comment, the bot's too: keys are HMACs under the
# sink's own URL and secret, so such an edit can make a version be sent again, never pass
# for one that was sent, here or in another pull request.

REMEMBERED = "<!-- accessctl:notified"
MAX_REMEMBERED = 400  # keys kept (16 hex characters each): the newest ones
_REMEMBERED_LINE = re.compile(r"<!-- accessctl:notified((?: [0-9a-f]{16})*) -->")


def delivery_key(sender: Sender, path: str, blob: str, pull: str = "") -> str:
    """One sink, one pull request (``owner/repo#12``), one request path, one content (its
    git blob), keyed by the sink's secret: a key copied from another pull request's
    comment (the same file and content there) stands for nothing here."""
    message = f"{sender.label}\0{pull}\0{path}\0{blob}".encode()
    return hmac.new(sender.memory_key, message, hashlib.sha256).hexdigest()[:16]


def remembered(comment: str, marker: str) -> tuple[str, ...]:
    """The keys our own comment remembers: its second line, exactly as ``remember`` wrote
    it (anything else in the comment, such as request text, is never read)."""
    first, _, rest = comment.partition("\n")
    match = _REMEMBERED_LINE.fullmatch(rest.partition("\n")[0])
    return tuple(match.group(1).split()) if first == marker and match else ()


def remember(keys: Sequence[str]) -> str:
    """The hidden line that carries ``keys`` (the newest MAX_REMEMBERED of them)."""
    kept = list(dict.fromkeys(keys))[-MAX_REMEMBERED:]
    return f"{REMEMBERED} {' '.join(kept)} -->" if kept else f"{REMEMBERED} -->"


@dataclass(frozen=True)
class Once:
    """What ``deliver_once`` did: warnings, the keys delivered now, and (sink, request)
    pairs left out because that version was delivered before."""

    warnings: tuple[str, ...] = ()
    delivered: tuple[str, ...] = ()
    already: tuple[tuple[str, str], ...] = ()


def deliver_once(
    notifiers: Sequence[Notifier],
    events: Sequence[Event],
    versions: Mapping[str, str],
    sent: Sequence[str],
) -> Once:
    """Each request event to each sink that wants it, unless ``sent`` holds its key
    (``versions``: request path -> blob at the head). A sink that fails gets no more
    events this run, and what it missed is not remembered: the next run tries again."""
    warnings: list[str] = []
    delivered: list[str] = []
    already: list[tuple[str, str]] = []
    for n in notifiers:
        for event in n.wanted(events):
            path = event.request or ""
            pull = f"{event.context.get('repository') or ''}#{event.pr or ''}"
            key = delivery_key(n.sender, path, versions.get(path, ""), pull)
            if key in sent:
                already.append((n.sender.label, path))
                continue
            problem = _send(n, [event], None)
            if problem:
                warnings.append(problem)
                break
            delivered.append(key)
    return Once(tuple(warnings), tuple(delivered), tuple(already))
