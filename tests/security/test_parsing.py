"""Attacks through file content: values that slip past patterns, identities that widen a
grant, time values at the edges. Run as ``accessctl validate`` does for a user."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import NOW, POLICY, GitRepo, request, run_cli

MINE = "requests/alice/inc-1.yaml"


def validate(tmp_path: Path, files: dict[str, str]) -> tuple[int, dict]:
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"policies/p.yaml": POLICY, **files})
    result = run_cli("validate", "--repo", str(repo.root), "--format", "json", "--at", NOW)
    return result.code, result.json


def codes(out: dict, path: str = MINE) -> set[str]:
    return {f["code"] for f in out["findings"] if f["file"] == path}


@pytest.mark.parametrize(
    "field, value",
    [
        ("scope", '"projects/payments-prod\\n"'),  # glob policy scopes would match it
        ("requester", '"alice\\n"'),
        ("duration", '"2h\\n"'),
        ("role", '"roles/cloudsql.viewer\\n"'),
    ],
)
def test_a_trailing_newline_never_passes_a_pattern(tmp_path: Path, field: str, value: str) -> None:
    # Python's `$` matches before a final newline; JSON Schema's does not.
    lines = [
        line if not line.startswith(f"{field}:") else f"{field}: {value}"
        for line in request().splitlines()
    ]
    code, out = validate(tmp_path, {MINE: "\n".join(lines) + "\n"})
    assert code == 1
    assert codes(out), out
    assert not any(r["policy"] for r in out["requests"] if r["file"] == MINE)


@pytest.mark.parametrize(
    "member",
    [
        "allUsers",
        "allAuthenticatedUsers",
        "domain:example.com",
        "user:alice@example.com,user:eve@evil.com",
        "user:alice@example.com user:eve@evil.com",
        "user:alice@example.com\\nuser:eve@evil.com",
        "user:alice@example.com\\n",
    ],
)
def test_an_identity_can_only_name_one_user_group_or_service_account(
    tmp_path: Path, member: str
) -> None:
    policy = POLICY.replace('alice: {gcp: "user:alice@example.com"}', f'alice: {{gcp: "{member}"}}')
    assert policy != POLICY
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"policies/p.yaml": policy, MINE: request()})
    result = run_cli("validate", "--repo", str(repo.root), "--format", "json", "--at", NOW)
    assert result.code in (1, 2)
    assert "E-CONFIG-IDENTITY" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "extra, duration",
    [
        ("start: 2026-12-01T09:00:00+14:00\n", "2h"),  # 2026-11-30T19:00Z: in the past, fine
        ("start: 2026-12-01T09:00:00-12:00\n", "2h"),
        ("start: 2026-12-01T23:59:60Z\n", "2h"),  # leap second
        ("start: 9999-12-31T23:59:59Z\n", "2h"),  # begin + duration overflows
        ("expires: 9999-12-31T23:59:59-12:00\n", "2h"),
        ("start: 0001-01-01T00:00:00+14:00\n", "2h"),  # before datetime.min in UTC
        ("start: 2026-12-02T00:00:00Z\nexpires: 2026-12-01T00:00:00Z\n", "2h"),  # expires first
        ("start: 2027-12-01T00:00:00Z\n", "2h"),  # a year ahead: policy decides
        ("", "P0D"),
        ("", "0m"),
        ("", "PT0S"),
        ("", "P"),
        ("", "PT"),
        ("", "999999d"),
        ("", "99999999d"),
        ("", "999999w"),
        ("", "P999999W999999D"),
        ("", "-2h"),
        ("", "2H"),
        ("", "\u0662h"),  # an Arabic-Indic digit
    ],
)
def test_time_edges_are_refused_or_bounded_never_a_crash(
    tmp_path: Path, extra: str, duration: str
) -> None:
    code, out = validate(tmp_path, {MINE: request(duration=duration, extra=extra)})
    assert code in (0, 1)
    for r in out["requests"]:
        if r["policy"]:  # allowed: then the window fits the policy's 8h
            assert r["file"] == MINE
    if duration in ("P0D", "0m", "PT0S", "P", "PT", "-2h", "2H", "\u0662h") or "9999" in extra:
        assert code == 1 and codes(out)
    if "99999" in duration or "999999" in duration:
        assert code == 1 and codes(out)


def test_yml_and_yaml_twins_are_two_requests_each_judged(tmp_path: Path) -> None:
    twin = MINE.replace(".yaml", ".yml")
    code, out = validate(tmp_path, {MINE: request(), twin: request(role="roles/cloudsql.admin")})
    assert code == 1
    assert codes(out, twin)  # the twin is judged on its own (here: no policy for the role)


def test_many_request_files_are_checked_without_a_crash(tmp_path: Path) -> None:
    files = {f"requests/alice/r-{i}.yaml": request() for i in range(2000)}
    files["requests/alice/r-7.yaml"] = request(role="roles/owner")
    code, out = validate(tmp_path, files)
    assert code == 1
    assert {f["file"] for f in out["findings"]} == {"requests/alice/r-7.yaml"}


BODY = (
    "provider: gcp\nscope: projects/payments-prod\nrole: roles/cloudsql.viewer\n"
    "reason: Investigate INC-4821 slow\nduration: 2h\n"
)


@pytest.mark.parametrize(
    "head",
    [
        "requester: bob\nrequester: alice\n",
        "requester: alice\nrequester : bob\n",
        '"requester": alice\nrequester: bob\n',
        '"req\\u0075ester": bob\nrequester: alice\n',
        "requester: alice\n---\nrequester: bob\n",
        "requester: alice\n...\n---\nrequester: bob\n",
        "requester: alice\n%YAML 1.1\n",
        "requester: alice\x00\n",
        "requester: !!str alice\n",
        "requester: &a alice\nticket: *a\n",
    ],
    ids=[
        "dup",
        "dup-space",
        "dup-quoted",
        "dup-escaped",
        "multidoc",
        "docend",
        "directive",
        "nul",
        "tag",
        "alias",
    ],
)
def test_yaml_tricks_that_could_change_who_asks_are_errors(tmp_path: Path, head: str) -> None:
    code, out = validate(tmp_path, {MINE: head + BODY})
    assert code == 1
    assert codes(out)
    assert not any(r["policy"] for r in out["requests"])
