"""Text from request files (reason, ticket, paths, values) reaching the PR comment, the job
summary, workflow annotations and terminal output must stay inert."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import REPO, World, request

HOSTILE_REASON = (
    "<img src=x onerror=alert(1)> [click](https://evil.example) @dave ![p](https://evil/p.png) "
    "| a | b | </table> <!-- ::error::reason --> %0A::error::encoded `code` **bold**"
)
# Our own workflow commands: a level, optional properties, then the message on one line.
OURS = re.compile(r"^::(error|warning|notice)( [a-z]+=[^:,]*(,[a-z]+=[^:,]*)*)?::[^\n]*$")


# ESC, BEL, CR, C1 (0x9b: a one-byte CSI), bidi overrides/isolates, line separators.
RAW_CONTROLS = set("\x1b\x07\r\x9b\x85\u202e\u2066\u2069\u2028\u2029")


def check_output(text: str) -> None:
    assert not RAW_CONTROLS & set(text), sorted(RAW_CONTROLS & set(text))
    for line in text.splitlines():
        if line.startswith("::"):
            assert OURS.match(line), line
            assert "::error::reason" not in line.split("::", 2)[1]
        else:
            assert "::" not in line.lstrip()[:2], line


def check_markdown(md: str) -> None:
    """Outside code spans (which GitHub renders literally) nothing may take effect."""
    assert "\x1b" not in md
    prose = re.sub(r"`[^`\n]*`", "", md).replace("<!-- accessctl:pr-check -->", "")
    assert "<img" not in prose and "</table>" not in prose and "<!--" not in prose
    assert "](https://evil" not in prose
    assert "@dave" not in prose and "@erin" not in prose  # no mention of a real approver


def test_a_hostile_reason_and_ticket_stay_inert(world: World) -> None:
    body = request(reason=HOSTILE_REASON, extra='ticket: "INC-1 | <b>x</b> @erin"\n')
    number, _ = world.open_pr({"requests/alice/inc-1.yaml": body})
    github = world.pr_check(number, "--format", "github")
    check_output(github.stdout + github.stderr)
    summary = (world.tmp / "summary.md").read_text()
    check_markdown(summary)
    comments = world.github.comments(REPO, number)
    assert len(comments) == 1
    check_markdown(comments[0]["body"])
    # The comment's request table keeps its column count despite pipes in the text.
    row = next(line for line in comments[0]["body"].splitlines() if "inc-1.yaml" in line)
    header = next(line for line in comments[0]["body"].splitlines() if line.startswith("| |"))
    cells = re.split(r"(?<!\\)\|", row)
    assert len(cells) == len(header.split("|"))


@pytest.mark.parametrize(
    "name",
    [
        "x\n::error::pwned\n.yaml",
        "x\x1b[31m.yaml",
        "x`<img src=y>`@dave.yaml",
        "x%0A::error::pct.yaml",
        "x\u202elmy.\x9b.yaml",
    ],
    ids=["newline", "ansi", "backticks-html-mention", "percent", "bidi-c1"],
)
def test_a_hostile_file_name_stays_inert(world: World, name: str) -> None:
    path = f"requests/alice/{name}"
    world.repo.git("checkout", "-q", "-b", "hostile")
    world.repo.commit({path: request()}, "hostile", author="alice")
    head = world.repo.head()
    world.repo.git("checkout", "-q", "main")
    number = world.github.add_pull(
        REPO,
        author="alice",
        head_sha=head,
        base_sha=world.repo.head(),
        files=[{"filename": path, "status": "added"}],
    )
    for fmt in ("github", "text"):
        result = world.pr_check(number, "--format", fmt)
        assert result.code == 1
        check_output(result.stdout + result.stderr)
    check_markdown((world.tmp / "summary.md").read_text())
    check_markdown(world.github.comments(REPO, number)[0]["body"])
    result = world.pr_check(number, "--format", "json")
    assert json.loads(result.stdout)["state"] == "failure"
