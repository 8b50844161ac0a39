"""``accessctl test [PATH...]``: run the policy test cases under policies/tests/."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from reconciler.commands.common import echo_json, handle_errors, write_step_summary
from reconciler.core.escape import annotation, clean_json, log_line, markdown_cell, markdown_text
from reconciler.errors import ConfigError, Finding
from reconciler.options import format_option, repo_option
from reconciler.policytests import TESTS_DIR, Outcome, Suite, load_suite, run_all
from reconciler.repo import WorkTree, load_config


@click.command("test")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="List passing cases too.")
@repo_option
@format_option("text", "json", "github")
@handle_errors
def test_command(paths: tuple[Path, ...], verbose: bool, repo: Path, fmt: str) -> None:
    """Run the policy test cases (policies/tests/*.yaml, default: all of them).

    Each case is a request, who approved it and when, and the expected verdict: 'allowed
    by <policy>', 'refused [E-CODE...]' or 'needs <N> approval(s) from <approvers>'. Cases
    are judged exactly as pr-check and apply judge a request. Exit 0 when every case
    passes, 1 when one fails, 2 on a malformed test file or invalid policies.
    """
    tree = WorkTree(repo)
    selected = _selected(repo, paths) if paths else None
    suite = load_suite(tree, selected)
    if not suite.files:
        raise ConfigError(
            f"no test cases: write them in {TESTS_DIR}/*.yaml (see `accessctl test --help`)"
        )
    config, config_findings = load_config(tree)
    broken = tuple(f for f in config_findings if f.severity == "error")
    if broken:
        raise ConfigError("the policies are invalid (run `accessctl validate`)", broken)
    outcomes = run_all(suite.cases, config)
    _report(fmt, suite, outcomes, verbose)
    if suite.findings:
        sys.exit(2)
    sys.exit(0 if all(o.passed for o in outcomes) else 1)


def _selected(repo: Path, paths: Sequence[Path]) -> list[str]:
    base = repo.resolve()
    out = []
    for path in paths:
        absolute = path if path.is_absolute() else Path.cwd() / path
        if not absolute.exists():
            absolute = repo / path
        try:
            rel = absolute.resolve().relative_to(base).as_posix()
        except ValueError:
            rel = ""
        if not rel.startswith(TESTS_DIR + "/") or not absolute.is_file():
            raise ConfigError(f"{path}: not a test file under {TESTS_DIR}/")
        out.append(rel)
    return out


def _line(o: Outcome) -> str:
    c = o.case
    verdict = "ok" if o.passed else "FAIL"
    text = f"{c.file}:{c.line}: {verdict}: {c.name}"
    if not o.passed:
        text += f": expected {c.expect.text!r}, got {o.got!r}"
        if o.problems:
            text += " (" + "; ".join(o.problems) + ")"
    return text


def _report(fmt: str, suite: Suite, outcomes: list[Outcome], verbose: bool) -> None:
    failed = [o for o in outcomes if not o.passed]
    if fmt == "json":
        echo_json(clean_json(_json(suite, outcomes)))
        return
    for f in suite.findings:
        if fmt == "github":
            click.echo(annotation("error", f.message, file=f.file, line=f.line, title=f.code))
        else:
            click.echo(log_line(f))
    for o in outcomes if verbose else failed:
        if fmt == "github" and not o.passed:
            message = _line(o).split(": ", 2)[2]
            click.echo(annotation("error", message, file=o.case.file, line=o.case.line))
        else:
            click.echo(log_line(_line(o)))
    summary = (
        f"{len(outcomes) - len(failed)} passed, {len(failed)} failed"
        f" ({len(suite.files)} file(s) in {TESTS_DIR}/)"
    )
    if suite.findings:
        summary += f"; {len(suite.findings)} problem(s) in the test files"
    click.echo(summary, err=fmt == "github")
    if fmt == "github":
        write_step_summary(_markdown(suite.findings, failed, summary))


def _json(suite: Suite, outcomes: list[Outcome]) -> dict[str, object]:
    return {
        "ok": not suite.findings and all(o.passed for o in outcomes),
        "findings": [f.to_json() for f in suite.findings],
        "cases": [
            {
                "file": o.case.file,
                "line": o.case.line,
                "name": o.case.name,
                "expected": o.case.expect.text,
                "got": o.got,
                "passed": o.passed,
                "problems": list(o.problems),
            }
            for o in outcomes
        ],
    }


def _markdown(findings: list[Finding], failed: list[Outcome], summary: str) -> str:
    lines = ["## accessctl test", "", summary, ""]
    if findings or failed:
        lines += ["| file | line | case | expected | got |", "|---|---|---|---|---|"]
    for f in findings:
        cells = [
            markdown_cell(f.file),
            str(f.line),
            markdown_cell(f.code),
            "",
            markdown_text(f.message),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for o in failed:
        c = o.case
        cells = [markdown_cell(c.file), str(c.line), markdown_cell(c.name)]
        cells += [markdown_cell(c.expect.text), markdown_cell(o.got)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
