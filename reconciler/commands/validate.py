"""``accessctl validate [PATH...]``: offline check of request and policy files."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import click

from reconciler import policytests
from reconciler.commands.common import echo_json, handle_errors, write_step_summary
from reconciler.core.escape import (
    annotation,
    clean_json,
    log_line,
    markdown_cell,
    markdown_text,
    terminal_text,
)
from reconciler.core.models import AccessRequest, Decision
from reconciler.core.validate import check_request_now
from reconciler.errors import ConfigError, Finding
from reconciler.options import at_option, format_option, repo_option
from reconciler.repo import POLICIES, REQUESTS, LoadedRepo, WorkTree, check_stray_file, load_repo

_SUMMARY_ROWS = 200  # a job summary is for people; the annotations carry the rest


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@repo_option
@at_option
@format_option("text", "json", "github")
@handle_errors
def validate_command(paths: tuple[Path, ...], repo: Path, now: datetime, fmt: str) -> None:
    """Check request and policy files offline (default: all of them).

    Every request is judged by the policies as if merged now (--at): schema, layout,
    policy coverage, requester, window, ticket and identity. Approvals are not checked.
    Exit 0 when clean, 1 with findings, 2 on usage errors.
    """
    root = _repo_root(repo, explicit=bool(paths))
    selected, strays = _selected(root, paths) if paths else (None, [])
    loaded = load_repo(WorkTree(root), selected)
    findings = list(loaded.findings)
    for display, path in strays:
        findings.extend(check_stray_file(path, display))
    decisions: list[Decision] = []
    for request in loaded.requests:
        decision, found = check_request_now(request, loaded.config, now)
        decisions.append(decision)
        findings.extend(found)
    policies_ok = not any(
        f.severity == "error" and f.file.startswith(POLICIES + "/") for f in loaded.findings
    )
    if not paths and policies_ok:
        findings.extend(_policy_tests(root, loaded))
    findings.sort(key=lambda f: (f.file, f.line, f.code))
    _report(fmt, loaded, decisions, findings)
    sys.exit(1 if any(f.severity == "error" for f in findings) else 0)


def _policy_tests(root: Path, loaded: LoadedRepo) -> list[Finding]:
    """Where the repository has policy tests: their files' problems, and a warning at each
    policy no case covers (a repository without policies/tests/ is not asked for them)."""
    tree = WorkTree(root)
    if not policytests.has_tests(tree):
        return []
    suite = policytests.load_suite(tree)
    outcomes = policytests.run_all(suite.cases, loaded.config)
    return suite.findings + policytests.untested(loaded.config, outcomes)


def _repo_root(repo: Path, *, explicit: bool) -> Path:
    if not repo.is_dir():
        raise ConfigError(
            f"{terminal_text(repo)}: no such directory (give the access repository with --repo)"
        )
    if not explicit and not (repo / POLICIES).is_dir() and not (repo / REQUESTS).is_dir():
        raise ConfigError(
            f"{terminal_text(repo)}: not an access repository (no {POLICIES}/ or {REQUESTS}/); "
            "use --repo DIR"
        )
    return repo


def _selected(root: Path, paths: Sequence[Path]) -> tuple[list[str], list[tuple[str, Path]]]:
    """Explicit PATHs -> repo-relative paths under requests/ and policies/ (directories
    expand to what they hold), and files elsewhere, checked as requests that are misplaced."""
    tree = WorkTree(root)
    base = root.resolve()
    out: list[str] = []
    strays: list[tuple[str, Path]] = []
    for path in paths:
        absolute = path if path.is_absolute() else Path.cwd() / path
        if not absolute.exists() and not absolute.is_symlink():
            absolute = root / path  # also accept paths relative to --repo
        if not absolute.exists() and not absolute.is_symlink():
            raise ConfigError(f"{terminal_text(path)}: no such file or directory")
        try:
            rel = (absolute.parent.resolve() / absolute.name).relative_to(base).as_posix()
        except ValueError:
            rel = None  # outside the repository
        rel = "" if rel == "." else rel
        if rel is not None and (
            rel in (REQUESTS, POLICIES) or rel.startswith((REQUESTS + "/", POLICIES + "/"))
        ):
            is_dir = absolute.is_dir() and not absolute.is_symlink()
            out.extend(tree.list(rel) if is_dir else [rel])
        elif rel == "":
            out.extend(tree.list(REQUESTS))
        elif absolute.is_dir() and not absolute.is_symlink():
            raise ConfigError(
                f"{terminal_text(path)}: accessctl validates files under {REQUESTS}/ and "
                f"{POLICIES}/"
            )
        else:
            strays.append((rel or str(path), absolute))
    return out, strays


def _request_json(request: AccessRequest, decision: Decision | None) -> dict[str, object]:
    return {
        "file": request.path,
        "requester": request.requester,
        "provider": request.provider,
        "scope": request.scope,
        "role": request.role,
        "policy": decision.policy if decision is not None else None,
    }


def _report(
    fmt: str, loaded: LoadedRepo, decisions: list[Decision], findings: list[Finding]
) -> None:
    ok = not any(f.severity == "error" for f in findings)
    if fmt == "json":
        echo_json(
            clean_json(
                {
                    "ok": ok,
                    "findings": [f.to_json() for f in findings],
                    "requests": [_request_json(d.request, d) for d in decisions],
                }
            )
        )
        return
    if fmt == "github":
        for f in findings:
            level = "error" if f.severity == "error" else "warning"
            click.echo(annotation(level, f.message, file=f.file, line=f.line, title=f.code))
        write_step_summary(_summary(decisions, findings))
    else:
        for f in findings:
            click.echo(log_line(f))
    allowed = sum(1 for d in decisions if d.allowed)
    files = len({f.file for f in findings})
    verdict = "ok" if ok else f"{len(findings)} finding(s) in {files} file(s)"
    click.echo(
        f"{verdict}: {len(decisions)} request(s) checked, {allowed} allowed by policy, "
        f"{len(loaded.config.policies)} policies",
        err=fmt == "github",
    )


def _summary(decisions: list[Decision], findings: list[Finding]) -> str:
    lines = ["## accessctl validate", ""]
    if not findings:
        lines.append(f"All {len(decisions)} request(s) and the policies are valid.")
    else:
        lines += [
            f"**{len(findings)} finding(s)**",
            "",
            "| file | line | code | message |",
            "|---|---|---|---|",
        ]
        for f in findings[:_SUMMARY_ROWS]:
            cells = [markdown_cell(f.file), str(int(f.line)), markdown_cell(f.code)]
            lines.append("| " + " | ".join([*cells, markdown_text(f.message)]) + " |")
        if len(findings) > _SUMMARY_ROWS:
            lines.append(f"\n…and {len(findings) - _SUMMARY_ROWS} more (see the annotations).")
    return "\n".join(lines) + "\n"
