"""``accessctl pr-check``: the pull request gate (SPEC §4), run by access-check.yml.

Reads the PR number from the event, and everything that matters (author, head, base,
changed files, reviews) from the API. Policies come from the BASE commit, request files
from the HEAD commit, both read from git objects, never from the work tree, so the PR
cannot loosen the policy that judges it. Sets the ``accessctl/approval`` status, keeps
one PR comment, writes the job summary and annotations; exit 0 only when it may merge.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click

from reconciler.commands.common import echo_json, handle_errors, write_step_summary
from reconciler.core.escape import annotation
from reconciler.core.models import AccessRequest, Approvals, Config
from reconciler.core.policy import evaluate
from reconciler.core.prcheck import (
    MARKER,
    STATUS_CONTEXT,
    FileVerdict,
    PathChange,
    Report,
    approval_state,
    is_request_path,
    judge_request,
    judge_revocation,
    render_markdown,
    split_changes,
    status_description,
)
from reconciler.core.reviews import Review, approvers
from reconciler.core.timeutil import format_rfc3339
from reconciler.core.validate import check_request_now
from reconciler.errors import ConfigError, Finding, GitHubError
from reconciler.git import Tree as GitTree
from reconciler.git import commit_exists
from reconciler.github import GitHubClient
from reconciler.options import at_option, format_option, repo_option
from reconciler.repo import POLICIES, load_config, load_requests

MIXED = (
    "this pull request changes requests/ together with other files ({others}); an access "
    "request must be reviewed on its own: move the other changes to a separate pull request"
)

GITHUB_MAX_FILES = 3000  # what GET /pulls/{n}/files lists at most
TOO_MANY_FILES = (
    "GitHub lists {n} changed files, its maximum: the rest cannot be checked; split this pull "
    "request (access requests go in a pull request of their own)"
)
NOT_DEFAULT_BRANCH = (
    "this pull request targets {base}, not {default}: access requests are only checked "
    "against the policies of {default}; open it against {default}"
)
NO_REQUESTS_NOTE = "no access request files changed; nothing for accessctl to check"
POLICY_NOTE = (
    "policy files changed: checked as they are at the head commit; the security team "
    "reviews them (CODEOWNERS)"
)


@click.command("pr-check")
@repo_option
@format_option("text", "json", "github")
@at_option
@click.option("--pr", "pr_number", type=int, help="Pull request number (default: from the event).")
@click.option(
    "--no-comment", is_flag=True, help="Do not write the PR comment or the commit status."
)
@handle_errors
def pr_check_command(
    repo: Path, fmt: str, now: datetime, pr_number: int | None, no_comment: bool
) -> None:
    """The pull request gate: changed paths, author, schema, policy and approvals.

    Runs inside a pull_request or pull_request_review workflow (GITHUB_EVENT_PATH,
    GITHUB_API_URL, GITHUB_TOKEN, GITHUB_REPOSITORY). Policies are read from the PR's base
    commit, requests from its head commit; both must be in the clone (fetch-depth: 0).
    Sets the accessctl/approval commit status and updates one PR comment.
    Exit 0 when the PR may merge, 1 when it may not (yet), 2 on configuration errors.
    """
    number = pr_number if pr_number is not None else _event_pr_number()
    client = GitHubClient.from_env()
    report = check_pull_request(client, repo, number, now)
    markdown = render_markdown(report, now)
    if not no_comment:
        _publish(client, report, markdown)
    write_step_summary(markdown)
    _output(fmt, report, client.calls)
    sys.exit(0 if report.state == "success" else 1)


# ------------------------------------------------------------------------ gathering
def _event_pr_number() -> int:
    path = os.environ.get("GITHUB_EVENT_PATH")
    if not path:
        raise ConfigError(
            "GITHUB_EVENT_PATH is not set: pr-check runs in a pull_request or "
            "pull_request_review workflow (or pass --pr N)"
        )
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the event payload {path}: {exc}") from None
    pull = event.get("pull_request") if isinstance(event, dict) else None
    number = pull.get("number") if isinstance(pull, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        raise ConfigError(
            f"{path}: not a pull_request or pull_request_review event (no pull_request.number)"
        )
    return number


def check_pull_request(client: GitHubClient, repo: Path, number: int, now: datetime) -> Report:
    """Everything the gate decides about pull request ``number``."""
    pull = client.pull(number)
    ids = {"pr": number, "head": pull.head_sha, "base": pull.base_sha, "author": pull.author}
    files = client.pull_files(number)
    if len(files) >= GITHUB_MAX_FILES:
        # GitHub lists at most 3000 files: a request file past them would go unchecked.
        problem = TOO_MANY_FILES.format(n=len(files))
        return Report(**ids, problems=(problem,))  # type: ignore[arg-type]
    changes = split_changes((f.path, f.status, f.previous) for f in files)
    in_requests = [c for c in changes if is_request_path(c.path)]
    others = tuple(sorted({c.path for c in changes if not is_request_path(c.path)}))
    if not in_requests:
        checked = _policy_verdicts(repo, pull.head_sha, others)
        note = POLICY_NOTE if checked else NO_REQUESTS_NOTE
        return Report(**ids, verdicts=checked, notes=(note,), other_paths=others)  # type: ignore[arg-type]
    if pull.base_default_branch and pull.base_ref != pull.base_default_branch:
        # Requests are judged by the base branch's policies: a branch the author controls
        # would judge them by policies nobody reviewed (and the status is per commit).
        problem = NOT_DEFAULT_BRANCH.format(base=pull.base_ref, default=pull.base_default_branch)
        return Report(**ids, problems=(problem,), other_paths=others)  # type: ignore[arg-type]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        problem = MIXED.format(others=shown)
        return Report(**ids, problems=(problem,), other_paths=others)  # type: ignore[arg-type]
    _require_commits(repo, pull.base_sha, pull.head_sha)
    with GitTree(repo, pull.base_sha) as base_tree, GitTree(repo, pull.head_sha) as head_tree:
        config, config_findings = load_config(base_tree)
        if any(f.severity == "error" for f in config_findings):
            raise ConfigError(
                f"the policies at the base commit {pull.base_sha[:12]} are invalid; fix them on "
                "the base branch first",
                tuple(config_findings),
            )
        gate = _Gate(client, config, number, pull.author, pull.head_sha, now)
        verdicts = gate.requests(head_tree, in_requests)
        verdicts += gate.removals(base_tree, head_tree, in_requests)
    return Report(**ids, verdicts=tuple(verdicts))  # type: ignore[arg-type]


def _policy_verdicts(repo: Path, head_sha: str, paths: Sequence[str]) -> tuple[FileVerdict, ...]:
    """A PR that changes policies/ must leave them valid (they judge every request)."""
    changed = [p for p in paths if p.startswith(POLICIES + "/")]
    if not changed:
        return ()
    _require_commits(repo, head_sha)
    with GitTree(repo, head_sha) as head_tree:
        _, findings = load_config(head_tree)
    files = sorted(set(changed) | {f.file for f in findings})
    return tuple(
        FileVerdict(
            path,
            "policy",
            "failure" if any(f.severity == "error" for f in own) else "success",
            findings=own,
        )
        for path in files
        if (own := tuple(f for f in findings if f.file == path)) or path in changed
    )


def _require_commits(repo: Path, *shas: str) -> None:
    for sha in shas:
        if not commit_exists(repo, sha):
            raise ConfigError(
                f"commit {sha} is not in the clone at {repo}: check out with `fetch-depth: 0` "
                "(or fetch the pull request's base and head) before running pr-check"
            )


@dataclass
class _Gate:
    """One pull request judged under the base commit's policies."""

    client: GitHubClient
    config: Config
    number: int
    author: str
    head_sha: str
    now: datetime
    _reviews: list[Review] | None = None

    def reviews(self) -> list[Review]:
        if self._reviews is None:  # only fetched when a request needs them
            self._reviews = self.client.pull_reviews(self.number)
        return self._reviews

    def requests(self, head_tree: GitTree, changes: Sequence[PathChange]) -> list[FileVerdict]:
        """Added and modified request files, as they are at the head commit."""
        present = set(head_tree.list("requests"))
        paths = [c.path for c in changes if c.kind != "removed" and c.path in present]
        requests, findings = load_requests(head_tree, self.config, paths)
        verdicts = [self.request(r, [f for f in findings if f.file == r.path]) for r in requests]
        parsed = {r.path for r in requests}
        for path in sorted({f.file for f in findings} - parsed):
            own = tuple(f for f in findings if f.file == path)
            verdicts.append(FileVerdict(path, "request", "failure", findings=own))
        return verdicts

    def request(self, request: AccessRequest, own: list[Finding]) -> FileVerdict:
        if request.requester.lower() != self.author.lower():
            own.append(
                Finding(
                    request.path,
                    request.line_of("requester"),
                    "E-PR-AUTHOR",
                    f"requester {request.requester} is not the pull request's author "
                    f"{self.author}: a request must be opened by the person who gets the access",
                )
            )
        static, found = check_request_now(request, self.config, self.now)
        own += [f for f in found if f not in own]
        reviewers = approvers(
            self.reviews(), self.head_sha, pr_author=self.author, requester=request.requester
        )
        with_approvals = evaluate(
            request,
            self.config,
            approved_at=self.now,
            approvals=Approvals(reviewers, pr_author=self.author, pr_number=self.number),
        )
        policy = with_approvals.policy or static.policy
        approval = (
            approval_state(request, self.config, policy, reviewers, self.author) if policy else None
        )
        return judge_request(request, own, static, with_approvals, approval)

    def removals(
        self, base_tree: GitTree, head_tree: GitTree, changes: Sequence[PathChange]
    ) -> list[FileVerdict]:
        """Deleted request files (early revocation), read from the base commit."""
        at_base = set(base_tree.list("requests"))
        still_there = set(head_tree.list("requests"))
        removed = [
            c.path
            for c in changes
            if c.kind == "removed"
            and c.path in at_base
            and c.path not in still_there
            and c.path.endswith((".yaml", ".yml"))
        ]
        verdicts = []
        for path in removed:
            requests, _ = load_requests(base_tree, self.config, [path])
            request = requests[0] if requests else None
            verdicts.append(judge_revocation(path, request, self.config, self.author))
        return verdicts


# ------------------------------------------------------------------------ reporting
def _publish(client: GitHubClient, report: Report, markdown: str) -> None:
    """The commit status first (it gates the merge), then the one comment. Neither failing
    changes the verdict (the exit code): a status that cannot be set leaves a required
    check missing, which blocks the merge anyway (e.g. a fork's read-only token)."""
    state = report.state
    try:
        client.create_status(
            report.head, state, status_description(report), STATUS_CONTEXT, _run_url()
        )
    except GitHubError as exc:
        click.echo(f"warning: could not set the {STATUS_CONTEXT} status: {exc}", err=True)
    try:
        client.upsert_comment(report.pr, MARKER, markdown)
    except GitHubError as exc:
        click.echo(f"warning: could not write the PR comment: {exc}", err=True)


def _run_url() -> str | None:
    server, repository, run = (
        os.environ.get("GITHUB_SERVER_URL"),
        os.environ.get("GITHUB_REPOSITORY"),
        os.environ.get("GITHUB_RUN_ID"),
    )
    if server and repository and run and run.isdigit():
        return f"{server.rstrip('/')}/{repository}/actions/runs/{run}"
    return None


def _oneline(text: str) -> str:
    """File text on one log line: no newline can start a workflow command."""
    return " ".join(str(text).replace("\r", " ").replace("\n", " ").split())


def _output(fmt: str, report: Report, calls: int) -> None:
    if fmt == "json":
        echo_json(_json(report, calls))
        return
    if fmt == "github":
        for f in report.findings:
            click.echo(annotation("error", f"{f.code}: {f.message}", file=f.file, line=f.line))
        for p in report.problems:
            click.echo(annotation("error", p))
        for v in report.verdicts:
            if v.state == "pending" and v.approval:
                at = v.request.line_of("requester") if v.request else 1
                message = f"waiting for approvals: {_needs_text(v)}"
                click.echo(annotation("notice", message, file=v.path, line=at))
    for line in _text_lines(report):
        click.echo(line)


def _needs_text(v: FileVerdict) -> str:
    a = v.approval
    if a is None:
        return ""
    who = ", ".join(a.policy.approvers)
    names = f" ({', '.join(a.eligible)})" if a.eligible else ""
    return f"{a.missing} more from {who}{names}; counted: {', '.join(a.counted) or 'none'}"


def _text_lines(report: Report) -> list[str]:
    out = [
        f"pull request #{report.pr} by {_oneline(report.author)} at {report.head[:12]}: {report.state}"
    ]
    out += [f"  problem: {_oneline(p)}" for p in report.problems]
    out += [f"  note: {_oneline(n)}" for n in report.notes]
    for v in report.verdicts:
        line = f"  {v.state:8} {_oneline(v.path)}"
        if v.approval:
            a = v.approval
            line += f" (policy {_oneline(a.policy.name)}; approvals {len(a.counted)}/{a.needed}"
            line += f": {', '.join(a.counted)})" if a.counted else ")"
        if v.note:
            line += f" {_oneline(v.note)}"
        out.append(line)
        out += [f"    {_oneline(str(f))}" for f in v.findings]
    out.append(f"  status {STATUS_CONTEXT}: {report.state}: {status_description(report)}")
    return out


def _json(report: Report, calls: int) -> dict[str, object]:
    return {
        "ok": report.state == "success",
        "state": report.state,
        "pr": report.pr,
        "head": report.head,
        "base": report.base,
        "author": report.author,
        "status": {
            "context": STATUS_CONTEXT,
            "state": report.state,
            "description": status_description(report),
        },
        "problems": list(report.problems),
        "notes": list(report.notes),
        "files": [_verdict_json(v) for v in report.verdicts],
        "findings": [f.to_json() for f in report.findings],
        "github_calls": calls,
    }


def _verdict_json(v: FileVerdict) -> dict[str, object]:
    r, d, a = v.request, v.decision, v.approval
    return {
        "file": v.path,
        "kind": v.kind,
        "state": v.state,
        "requester": r.requester if r else None,
        "provider": r.provider if r else None,
        "scope": r.scope if r else None,
        "role": r.role if r else None,
        "policy": a.policy.name if a else (d.policy if d else None),
        "begin": format_rfc3339(d.window.begin) if d and d.window else None,
        "end": format_rfc3339(d.window.end) if d and d.window else None,
        "approvals": {
            "needed": a.needed,
            "present": list(a.counted),
            "missing": a.missing,
            "eligible": list(a.eligible),
        }
        if a
        else None,
        "note": v.note or None,
        "findings": [f.to_json() for f in v.findings],
    }
