"""accessctl validate as a user runs it: JSON shape, hostile files, exit codes."""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import pytest

from tests.e2e.conftest import POLICIES, GitRepo, request_yaml

FINDING_KEYS = {"file", "line", "code", "message"}
REQUEST_KEYS = {"file", "requester", "provider", "scope", "role", "policy"}
AT = "2026-12-01T08:00:00Z"

BASE = request_yaml()


def _validate(repo: GitRepo, *paths: str) -> dict:
    start = time.monotonic()
    res = repo.run("validate", "--format", "json", "--at", AT, *paths)
    assert time.monotonic() - start < 10
    data = res.json()
    assert set(data) == {"ok", "findings", "requests"}
    for f in data["findings"]:
        assert set(f) == FINDING_KEYS, f
        assert isinstance(f["line"], int) and not isinstance(f["line"], bool)
        assert isinstance(f["code"], str) and f["code"]
        assert isinstance(f["message"], str) and f["message"]
    for r in data["requests"]:
        assert set(r) == REQUEST_KEYS, r
    data["_code"] = res.code
    return data


def test_valid_repo_json_shape(repo: GitRepo) -> None:
    repo.write("requests/alice/inc-4821.yaml", BASE)
    data = _validate(repo)
    assert data["_code"] == 0
    assert data["ok"] is True and data["findings"] == []
    assert data["requests"] == [
        {
            "file": "requests/alice/inc-4821.yaml",
            "requester": "alice",
            "provider": "gcp",
            "scope": "projects/payments-prod",
            "role": "roles/cloudsql.viewer",
            "policy": "payments-db-read",
        }
    ]


# (name, file path, content) -> expect exit 1, a finding on that file with an int line >= 1
HOSTILE: list[tuple[str, str, str | bytes]] = [
    (
        "tag",
        "requests/alice/a.yaml",
        BASE.replace(
            "role: roles/cloudsql.viewer", "role: !!python/object/apply:os.system ['touch PWNED']"
        ),
    ),
    ("custom-tag", "requests/alice/a.yaml", BASE.replace("scope: ", "scope: !Ref ")),
    ("str-tag", "requests/alice/a.yaml", BASE.replace("scope: ", "scope: !!str ")),
    (
        "anchor-alias",
        "requests/alice/a.yaml",
        BASE.replace("reason: Investigate", "reason: &r Investigate") + "ticket2: *r\n",
    ),
    (
        "alias-only",
        "requests/alice/a.yaml",
        "x: &a [1]\n" + BASE.replace("requester: alice", "requester: *a"),
    ),
    ("merge-key", "requests/alice/a.yaml", "base: &b {provider: gcp}\n<<: *b\n" + BASE),
    (
        "merge-key-plain",
        "requests/alice/a.yaml",
        "<<: {provider: gcp}\n" + BASE.replace("provider: gcp\n", ""),
    ),
    (
        "billion-laughs",
        "requests/alice/a.yaml",
        "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        + BASE,
    ),
    ("too-big", "requests/alice/a.yaml", BASE + "# " + "x" * (65 * 1024) + "\n"),
    (
        "too-big-value",
        "requests/alice/a.yaml",
        BASE.replace("reason: Investigate", "reason: " + "y" * (65 * 1024) + " Investigate"),
    ),
    ("deep-nesting", "requests/alice/a.yaml", BASE + "extra: " + "[" * 5000 + "]" * 5000 + "\n"),
    (
        "deep-nesting-block",
        "requests/alice/a.yaml",
        BASE
        + "extra:\n"
        + "".join("  " * i + f"k{i}:\n" for i in range(1, 400))
        + "  " * 400
        + "v: 1\n",
    ),
    (
        "nul-byte",
        "requests/alice/a.yaml",
        BASE.encode().replace(b"slow checkout", b"slow\x00checkout"),
    ),
    ("invalid-utf8", "requests/alice/a.yaml", BASE.encode().replace(b"slow", b"sl\xff\xfew")),
    ("utf16-bom", "requests/alice/a.yaml", BASE.encode("utf-16")),
    ("yaml11-no", "requests/alice/a.yaml", BASE.replace("requester: alice", "requester: no")),
    ("yaml11-on-bool", "requests/alice/a.yaml", BASE.replace("provider: gcp", "provider: on")),
    (
        "sexagesimal-duration",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "duration: 1:30"),
    ),
    ("int-duration", "requests/alice/a.yaml", BASE.replace("duration: 2h", "duration: 90")),
    (
        "timestamp-no-offset",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "duration: 2h\nexpires: 2026-12-01T18:00:00"),
    ),
    (
        "date-only",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "duration: 2h\nstart: 2026-12-01"),
    ),
    (
        "space-timestamp",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "duration: 2h\nstart: 2026-12-01 09:00:00"),
    ),
    ("duplicate-key", "requests/alice/a.yaml", BASE + "role: roles/logging.viewer\n"),
    ("unknown-key", "requests/alice/a.yaml", BASE + "approved: true\n"),
    ("multi-doc", "requests/alice/a.yaml", BASE + "---\n" + BASE),
    ("not-a-mapping", "requests/alice/a.yaml", "- requester: alice\n"),
    ("scalar-doc", "requests/alice/a.yaml", "just a string\n"),
    ("empty-file", "requests/alice/a.yaml", ""),
    ("syntax-error", "requests/alice/a.yaml", BASE + "reason: [unclosed\n"),
    ("tab-indent", "requests/alice/a.yaml", BASE + "x:\n\t- 1\n"),
    ("someone-else", "requests/alice/a.yaml", BASE.replace("requester: alice", "requester: carol")),
    ("wrong-directory", "requests/bob/a.yaml", BASE),
    ("bad-slug-upper", "requests/alice/Inc-1.yaml", BASE),
    ("bad-slug-underscore", "requests/alice/inc_1.yaml", BASE),
    ("yml-ext-bad-slug", "requests/alice/-x.yml", BASE),
    ("too-deep", "requests/alice/sub/a.yaml", BASE),
    ("top-level", "requests/a.yaml", BASE),
    (
        "past-expires",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "expires: 2025-01-01T00:00:00Z"),
    ),
    (
        "end-before-start",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "start: 2026-12-02T10:00:00Z\nexpires: 2026-12-02T09:00:00Z"),
    ),
    ("over-max-duration", "requests/alice/a.yaml", BASE.replace("duration: 2h", "duration: 5h")),
    ("no-duration", "requests/alice/a.yaml", BASE.replace("duration: 2h\n", "")),
    (
        "short-reason",
        "requests/alice/a.yaml",
        BASE.replace("Investigate INC-4821, slow checkout queries", "short"),
    ),
    ("bad-ticket", "requests/alice/a.yaml", BASE.replace("ticket: INC-4821", "ticket: XINC-4821")),
    (
        "ticket-newline",
        "requests/alice/a.yaml",
        BASE.replace("ticket: INC-4821", 'ticket: "INC-4821\\n"'),
    ),
    ("no-ticket", "requests/alice/a.yaml", BASE.replace("ticket: INC-4821\n", "")),
    ("basic-role", "requests/alice/a.yaml", BASE.replace("roles/cloudsql.viewer", "roles/owner")),
    (
        "uncovered-scope",
        "requests/alice/a.yaml",
        BASE.replace("projects/payments-prod", "projects/other-prod"),
    ),
    ("bad-provider", "requests/alice/a.yaml", BASE.replace("provider: gcp", "provider: azure")),
    (
        "number-scope",
        "requests/alice/a.yaml",
        BASE.replace("scope: projects/payments-prod", "scope: 111122223333"),
    ),
    ("null-role", "requests/alice/a.yaml", BASE.replace("role: roles/cloudsql.viewer", "role:")),
    ("bad-duration", "requests/alice/a.yaml", BASE.replace("duration: 2h", "duration: 2 hours")),
    ("zero-duration", "requests/alice/a.yaml", BASE.replace("duration: 2h", "duration: 0m")),
    ("negative-duration", "requests/alice/a.yaml", BASE.replace("duration: 2h", "duration: -2h")),
    (
        "huge-duration",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "duration: 99999999999999999999d"),
    ),
    ("iso-huge", "requests/alice/a.yaml", BASE.replace("duration: 2h", "duration: P99999999999Y")),
    (
        "year-10000",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "duration: 2h\nexpires: 10000-01-01T00:00:00Z"),
    ),
    (
        "bad-offset",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "duration: 2h\nstart: 2026-12-01T09:00:00+25:00"),
    ),
    ("complex-key", "requests/alice/a.yaml", "? [a, b]\n: c\n" + BASE),
    ("int-key", "requests/alice/a.yaml", "1: x\n" + BASE),
    ("null-key", "requests/alice/a.yaml", "~: x\n" + BASE),
    (
        "bom-then-yaml",
        "requests/alice/a.yaml",
        b"\xef\xbb\xbf" + BASE.encode() + b"approved: yes\n",
    ),
    (
        "bidi-reason",
        "requests/alice/a.yaml",
        BASE.replace("duration: 2h", "duration: 2h\nnote: \u202e"),
    ),
    (
        "login-injection",
        "requests/alice/a.yaml",
        BASE.replace("requester: alice", "requester: 'alice\n::error::x'"),
    ),
    ("workflow-command", "requests/alice/a.yaml", BASE + "x: '::set-output name=a::b'\n"),
    (
        "policy-dup-name",
        "policies/extra.yaml",
        "policies:\n  - name: payments-db-read\n    description: dup\n    provider: gcp\n    scopes: [projects/x]\n    roles: [roles/logging.viewer]\n    requesters: [alice]\n    approvers: [dave]\n    approvals: 1\n    max_duration: 1h\n",
    ),
    (
        "policy-bad-regex",
        "policies/extra.yaml",
        "policies:\n  - name: other\n    description: d\n    provider: gcp\n    scopes: [projects/x]\n    roles: [roles/logging.viewer]\n    requesters: [alice]\n    approvers: [dave]\n    approvals: 1\n    max_duration: 1h\n    ticket: '(['\n",
    ),
    (
        "policy-unknown-team",
        "policies/extra.yaml",
        "policies:\n  - name: other\n    description: d\n    provider: gcp\n    scopes: [projects/x]\n    roles: [roles/logging.viewer]\n    requesters: [team:nope]\n    approvers: [dave]\n    approvals: 1\n    max_duration: 1h\n",
    ),
    (
        "policy-basic-role",
        "policies/extra.yaml",
        "policies:\n  - name: other\n    description: d\n    provider: gcp\n    scopes: [projects/x]\n    roles: [roles/editor]\n    requesters: [alice]\n    approvers: [dave]\n    approvals: 1\n    max_duration: 1h\n",
    ),
    ("policy-unknown-key", "policies/extra.yaml", "teams:\n  x: [a]\nsurprise: 1\n"),
    ("policy-tag", "policies/extra.yaml", "teams: !!python/name:os.system\n"),
    ("policy-dup-team", "policies/extra.yaml", "teams:\n  payments-leads: [zed]\n"),
    (
        "policy-yaml11",
        "policies/extra.yaml",
        "policies:\n  - name: other\n    description: d\n    provider: gcp\n    scopes: [projects/x]\n    roles: [roles/logging.viewer]\n    requesters: [alice]\n    approvers: [dave]\n    approvals: on\n    max_duration: 1h\n",
    ),
    ("policy-invalid-utf8", "policies/extra.yaml", b"teams:\n  x: [\xff]\n"),
]


def _batched_path(name: str, path: str) -> str:
    return f"requests/alice/{name}.yaml" if path == "requests/alice/a.yaml" else path


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every hostile request file side by side in one repo, validated once (fast, and it
    shows one bad file never hides another)."""
    root = tmp_path_factory.mktemp("batch") / "access"
    repo = GitRepo(root)
    repo.write("policies/main.yaml", POLICIES)
    repo.write("requests/alice/good.yaml", BASE)
    for name, path, content in HOSTILE:
        if path.startswith("requests/"):
            repo.write(_batched_path(name, path), content)
    data = _validate(repo)
    data["_root"] = root
    return data


@pytest.mark.parametrize(("name", "path", "content"), HOSTILE, ids=[n for n, _, _ in HOSTILE])
def test_hostile_file_is_a_finding(
    batch: dict, tmp_path: Path, name: str, path: str, content: str | bytes
) -> None:
    if path.startswith("requests/"):
        target = _batched_path(name, path)
        assert batch["_code"] == 1 and batch["ok"] is False
        mine = [f for f in batch["findings"] if f["file"] == target]
        assert mine, (target, batch["findings"])
        assert all(f["line"] >= 1 for f in mine), mine
        assert not list(batch["_root"].rglob("PWNED"))
        assert any(r["file"] == "requests/alice/good.yaml" for r in batch["requests"])
        # sampled: the file alone in a repo, whole-repo and given as a path (as a PR check)
        if zlib.crc32(path.encode() + repr(content).encode()) % 4:
            return
    repo = GitRepo(tmp_path)
    repo.write("policies/main.yaml", POLICIES)
    repo.write("requests/alice/good.yaml", BASE)
    repo.write(path, content)
    same_dir = path.split("/", maxsplit=1)[0]

    def on_it(f: dict) -> bool:
        # a duplicate definition may be reported on either of the two policy files
        return f["file"] == path or (same_dir == "policies" and f["file"].startswith("policies/"))

    for data in (_validate(repo), _validate(repo, path)):
        assert data["_code"] == 1 and data["ok"] is False, data
        mine = [f for f in data["findings"] if on_it(f)]
        assert mine and all(f["line"] >= 1 for f in mine), data["findings"]
    assert not list(tmp_path.rglob("PWNED"))


def test_symlinked_request_is_refused(repo: GitRepo, tmp_path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text(BASE)
    (repo.path / "requests" / "alice").mkdir(parents=True)
    os.symlink(outside, repo.path / "requests" / "alice" / "link.yaml")
    data = _validate(repo)
    assert data["_code"] == 1
    assert any(f["file"] == "requests/alice/link.yaml" for f in data["findings"]), data


def test_symlinked_directory_is_refused(repo: GitRepo, tmp_path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "a.yaml").write_text(BASE)
    os.symlink(outside, repo.path / "requests" / "alice")
    data = _validate(repo)
    assert data["_code"] == 1
    assert any(f["file"].startswith("requests/alice") for f in data["findings"]), data


def test_symlink_to_etc_passwd_not_read(repo: GitRepo) -> None:
    (repo.path / "requests" / "alice").mkdir(parents=True)
    os.symlink("/etc/passwd", repo.path / "requests" / "alice" / "pw.yaml")
    data = _validate(repo)
    assert data["_code"] == 1
    assert "root:" not in str(data)


def test_fifo_does_not_hang(repo: GitRepo) -> None:
    (repo.path / "requests" / "alice").mkdir(parents=True)
    os.mkfifo(repo.path / "requests" / "alice" / "fifo.yaml")
    data = _validate(repo)
    assert data["_code"] == 1
    assert any(f["file"] == "requests/alice/fifo.yaml" for f in data["findings"]), data


def test_readme_is_fine(repo: GitRepo) -> None:
    repo.write("requests/alice/README.md", "notes\n")
    repo.write("requests/alice/good.yaml", BASE)
    assert _validate(repo)["_code"] == 0


def test_missing_path_argument_is_not_a_traceback(repo: GitRepo) -> None:
    res = repo.run("validate", "--format", "json", "requests/alice/nope.yaml")
    assert res.code in (1, 2)


def test_github_format_escapes(repo: GitRepo) -> None:
    repo.write("requests/alice/a.yaml", BASE + 'x: "%0A::error::injected"\n')
    res = repo.run("validate", "--format", "github", "--at", AT)
    assert res.code == 1
    lines = res.out.splitlines() + res.err.splitlines()
    assert not any(line.startswith("::error::injected") for line in lines)
    assert any(line.startswith("::error file=requests/alice/a.yaml,line=") for line in lines), res


def test_text_format_names_file_and_line(repo: GitRepo) -> None:
    repo.write("requests/alice/a.yaml", BASE + "surprise: 1\n")
    res = repo.run("validate", "--at", AT)
    assert res.code == 1
    assert "requests/alice/a.yaml:8" in res.out + res.err


def test_repo_without_policies_is_usage_or_finding(tmp_path) -> None:
    r = GitRepo(tmp_path)
    r.write("requests/alice/a.yaml", BASE)
    res = r.run("validate", "--format", "json")
    assert res.code in (1, 2)
