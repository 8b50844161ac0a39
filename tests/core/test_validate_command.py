"""`accessctl validate` as a person and as CI see it: formats, paths, exit codes."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

from tests.core.conftest import (
    GOOD_REQUEST,
    POLICIES,
    ROOT,
    run_validate,
    run_validate_process,
    write_files,
)


def test_clean_repo_json_shape(repo: Path) -> None:
    result = run_validate(repo)
    assert result.exit_code == 0
    assert result.json == {
        "ok": True,
        "findings": [],
        "requests": [
            {
                "file": "requests/alice/inc-4821.yaml",
                "requester": "alice",
                "provider": "gcp",
                "scope": "projects/payments-prod",
                "role": "roles/cloudsql.viewer",
                "policy": "payments-db-read",
            }
        ],
    }


def test_text_format(repo: Path) -> None:
    write_files(repo, {"requests/alice/inc-4821.yaml": GOOD_REQUEST + "bogus: 1\n"})
    result = run_validate(repo, fmt="text")
    assert result.exit_code == 1
    assert (
        "requests/alice/inc-4821.yaml:8: E-SCHEMA-UNKNOWN-KEY: unknown key 'bogus'" in result.output
    )


def test_github_format_escapes_and_writes_summary(
    repo: Path, tmp_path: Path, monkeypatch: object
) -> None:
    summary = tmp_path / "summary.md"
    name = "requests/alice/inc-4821.yaml"
    write_files(repo, {name: GOOD_REQUEST + '"x\\n::error::pwned %0A": 1\n'})
    from click.testing import CliRunner

    from reconciler.cli import cli

    result = CliRunner().invoke(
        cli,
        ["validate", "--repo", str(repo), "--at", "2026-11-30T00:00:00Z", "--format", "github"],
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert result.exit_code == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert len(lines) == 1
    assert lines[0].startswith(f"::error file={name},line=8,title=E-SCHEMA-UNKNOWN-KEY::")
    assert "pwned %250A" in lines[0]  # the newline (shown as \\n) and the % are inert
    text = summary.read_text()
    assert "accessctl validate" in text and "E-SCHEMA-UNKNOWN-KEY" in text
    assert "<" not in text.replace("&lt;", "")


def test_explicit_paths_only_check_those(repo: Path) -> None:
    write_files(repo, {"requests/bob/broken.yaml": "requester: ["})
    result = run_validate(repo, str(repo / "requests/alice/inc-4821.yaml"))
    assert result.exit_code == 0
    assert [r["file"] for r in result.json["requests"]] == ["requests/alice/inc-4821.yaml"]
    result = run_validate(repo, str(repo / "requests/bob"))
    assert result.exit_code == 1
    assert {f["file"] for f in result.findings} == {"requests/bob/broken.yaml"}


def test_repo_relative_path_arguments(repo: Path) -> None:
    result = run_validate(repo, "requests/alice/inc-4821.yaml")
    assert result.exit_code == 0, result.output


def test_usage_errors_exit_2(repo: Path, tmp_path: Path) -> None:
    assert run_validate(tmp_path / "nowhere").exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_validate(empty).exit_code == 2
    assert run_validate(repo, str(tmp_path / "outside.yaml")).exit_code == 2
    assert run_validate(repo, "requests/alice/missing.yaml").exit_code == 2
    assert run_validate(repo, str(tmp_path)).exit_code == 2  # a directory elsewhere
    bad_at = run_validate_process(repo, "--at", "yesterday")
    assert bad_at.exit_code == 2 and "Traceback" not in bad_at.stderr


def test_broken_policy_file_is_a_finding_not_a_crash(repo: Path) -> None:
    write_files(repo, {"policies/base.yaml": "policies: [\n"})
    result = run_validate(repo)
    assert result.exit_code == 1
    codes = {(f["file"], f["code"]) for f in result.findings}
    assert ("policies/base.yaml", "E-YAML-SYNTAX") in codes
    assert ("requests/alice/inc-4821.yaml", "E-POLICY-NONE") in codes


def test_a_request_with_the_editor_modeline_is_valid_and_points_at_the_shipped_schema(
    tmp_path: Path,
) -> None:
    """The yaml-language-server modeline is a comment to validate, and the relative path
    the example requests use reaches the package's schema (no example content read)."""
    modeline = "# yaml-language-server: $schema=../../reconciler/schemas/request.schema.json"
    copy = tmp_path / "starter"
    write_files(
        copy,
        {
            "policies/p.yaml": POLICIES,
            "requests/alice/inc-4821.yaml": f"{modeline}\n{GOOD_REQUEST}",
        },
    )
    result = run_validate(copy)
    assert result.exit_code == 0, result.output
    assert [r["file"] for r in result.json["requests"]] == ["requests/alice/inc-4821.yaml"]
    target = modeline.split("$schema=", 1)[1]
    where = posixpath.normpath(posixpath.join("requests/alice", target))
    assert where == "reconciler/schemas/request.schema.json"
    schema = json.loads((ROOT / where).read_text())
    assert schema["additionalProperties"] is False


def test_text_output_keeps_one_finding_per_line(repo: Path) -> None:
    write_files(repo, {"requests/alice/x\n::error::pwned.yaml": "x: 1\n"})
    result = run_validate(repo, fmt="text")
    assert result.exit_code == 1
    assert not any(line.startswith("::") for line in result.output.splitlines())
    assert "x\\n::error::pwned.yaml" in result.output


def test_a_file_outside_requests_is_checked_and_told_where_it_belongs(
    repo: Path, tmp_path: Path
) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text("requester: alice\nrequester: bob\n")
    result = run_validate(repo, str(draft))
    assert result.exit_code == 1
    found = {(f["file"], f["line"], f["code"]) for f in result.findings}
    assert found == {(str(draft), 1, "E-FILE-LAYOUT"), (str(draft), 2, "E-YAML-DUPKEY")}
    write_files(repo, {"notes/x.yaml": GOOD_REQUEST})
    result = run_validate(repo, "notes/x.yaml")
    assert result.exit_code == 1
    assert [(f["file"], f["code"]) for f in result.findings] == [("notes/x.yaml", "E-FILE-LAYOUT")]


def test_a_repo_without_policies_still_checks_requests(tmp_path: Path) -> None:
    write_files(tmp_path, {"requests/alice/x.yaml": "a: !!python/object:os.system x\n"})
    result = run_validate_process(tmp_path)
    assert result.exit_code == 1
    assert [(f["file"], f["code"]) for f in result.findings] == [
        ("requests/alice/x.yaml", "E-YAML-TAG")
    ]
