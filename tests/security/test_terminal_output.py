"""File text from the branch (paths, multi-line reasons) in the text and ``github`` output of
the commands a scheduled job runs: no workflow command and no terminal escape may leak."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import POLICY, GitRepo, request, run_cli
from .test_injection import check_output

HOSTILE_NAME = "requests/alice/x\x1b[31m\n::error::name.yaml"
BIDI_NAME = "requests/alice/x\u202elmy.\x9b\u2028.yaml"  # bidi override, C1 CSI, separator
HOSTILE_REASON = "Investigate slow queries\n::error::reason\x1b]0;t\x07"  # ESC: schema error
MULTILINE = "Investigate slow queries\n::error::second-line of the reason"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = GitRepo(tmp_path_factory.mktemp("term") / "repo")
    repo.commit(
        {
            "policies/p.yaml": POLICY,
            HOSTILE_NAME: request(),
            BIDI_NAME: request(),
            "requests/alice/esc.yaml": request(reason=HOSTILE_REASON),
            "requests/alice/multi.yaml": request(reason=MULTILINE),
        },
        "direct push",
        author="alice",
    )
    return repo.root


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["audit", "--no-ledger"],
        ["audit", "--no-ledger", "--format", "github"],
        ["plan", "--trust-git"],
        ["plan", "--trust-git", "--format", "github"],
        ["validate"],
        ["validate", "--format", "github"],
    ],
    ids=lambda c: "-".join(a.strip("-") for a in c if a not in ("--format", "--no-ledger")),
)
def test_no_command_or_escape_leaks_from_file_text(repo: Path, command: list[str]) -> None:
    result = run_cli(*command, "--repo", str(repo), env={"GITHUB_STEP_SUMMARY": "/dev/null"})
    assert result.code in (0, 1), result.stderr
    check_output(result.stdout + result.stderr)
