"""Hostile and malformed files: each gets exit 1, a finding naming it with an integer line,
no traceback, quickly, and nothing in a file ever runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.core.conftest import GOOD_REQUEST, run_validate, run_validate_process, write_files

R = "requests/alice/hostile.yaml"
P = "policies/hostile.yaml"

BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
)
HOSTILE: dict[str, bytes] = {
    "billion-laughs": BILLION_LAUGHS.encode(),
    "deep-flow-nesting": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep-block-nesting": "".join(f"{' ' * i}k{i}:\n" for i in range(200)).encode()
    + b" " * 200
    + b"x: 1\n",
    "unclosed-nesting": b"[" * 60_000,
    "100-KiB": GOOD_REQUEST.encode() + b"# " + b"x" * 100 * 1024 + b"\n",
    "huge-line": b"reason: " + b"A" * 65_530,
    "binary-garbage": bytes(range(256)) * 16,
    "nul-bytes": GOOD_REQUEST.encode() + b"\x00\x00\x00",
    "invalid-utf8": GOOD_REQUEST.encode() + b"reason: caf\xc3\x28\n",
    "utf16": GOOD_REQUEST.encode("utf-16"),
    "python-object": b"requester: !!python/object/apply:os.system ['touch /tmp/accessctl-pwned']\n",
    "python-name": b"requester: !!python/name:os.system\n",
    "local-tag": b"requester: !alice alice\n",
    "tag-directive": b"%TAG !e! tag:example.com,2000:\n--- \nrequester: !e!x alice\n",
    "merge-key": b"base: {role: roles/owner}\n<<: {requester: alice}\n",
    "multiple-documents": GOOD_REQUEST.encode() + b"---\n" + GOOD_REQUEST.encode(),
    "empty": b"",
    "only-comments": b"# nothing here\n",
    "null-document": b"~\n",
    "list-not-mapping": b"- requester: alice\n- provider: gcp\n",
    "scalar-document": b"hello\n",
    "crlf-with-error": GOOD_REQUEST.replace("\n", "\r\n").encode() + b"duraton: 2h\r\n",
    "cr-only": GOOD_REQUEST.replace("\n", "\r").encode() + b"bogus: 1\r",
    "tab-indent": b"requester: alice\nnested:\n\tkey: value\n",
    "complex-key": b"? [a, b]\n: value\n",
    "duplicate-keys": GOOD_REQUEST.encode() + b"requester: mallory\n",
    "many-keys": "".join(f"k{i}: {i}\n" for i in range(5000)).encode(),
    "yaml11-booleans": b"requester: yes\nprovider: on\nscope: off\nrole: no\nreason: y\n",
    "sexagesimal-and-octal": b"requester: 1:30\nprovider: 0o17\nscope: 0x1F\nrole: 2026-12-01\n",
    "bom-then-garbage": b"\xef\xbb\xbf\xff",
    "workflow-command-injection": b'requester: alice\n"::error::x\\n::set-output name=x::y": 1\n',
    "huge-int": b"requester: " + b"9" * 4000 + b"\n",
    "deep-anchors-in-keys": b"&a [1]: *a\n",
    "directive-yaml-11": b"%YAML 1.1\n---\nrequester: yes\n",
    "unicode-line-separator": "requester: alice\u2028provider: gcp\n".encode(),
}


@pytest.mark.parametrize("content", list(HOSTILE.values()), ids=list(HOSTILE))
@pytest.mark.parametrize("where", [R, P], ids=["request", "policy"])
def test_hostile_file(repo: Path, where: str, content: bytes, tmp_path: Path) -> None:
    write_files(repo, {where: content})
    began = time.monotonic()
    # requests as CI runs it (a process); policies in-process, to keep the suite quick
    result = run_validate_process(repo) if where == R else run_validate(repo)
    elapsed = time.monotonic() - began
    assert result.exit_code == 1, (result.output, result.stderr)
    assert "Traceback" not in result.stderr + result.output
    mine = [f for f in result.findings if f["file"] == where]
    assert mine, result.findings
    assert all(isinstance(f["line"], int) and f["line"] >= 1 for f in mine)
    assert all(isinstance(f["code"], str) and f["message"] for f in mine)
    assert elapsed < 10
    assert not Path("/tmp/accessctl-pwned").exists()


def test_valid_crlf_and_bom_files_are_fine(repo: Path) -> None:
    write_files(
        repo,
        {
            "requests/alice/inc-4821.yaml": GOOD_REQUEST.replace("\n", "\r\n").encode(),
            "requests/alice/bom.yaml": b"\xef\xbb\xbf" + GOOD_REQUEST.encode(),
        },
    )
    result = run_validate_process(repo)
    assert result.exit_code == 0, result.findings
    assert len(result.json["requests"]) == 2


def test_crlf_lines_are_counted_right(repo: Path) -> None:
    write_files(repo, {R: GOOD_REQUEST.replace("\n", "\r\n") + "duraton: 2h\r\n"})
    result = run_validate_process(repo)
    assert (R, 8, "E-SCHEMA-UNKNOWN-KEY") in {
        (f["file"], f["line"], f["code"]) for f in result.findings
    }


def test_fifo_is_not_read(repo: Path) -> None:
    import os

    os.mkfifo(repo / "requests/alice/pipe.yaml")
    result = run_validate_process(repo, timeout=20)
    assert result.exit_code == 1
    assert ("requests/alice/pipe.yaml", 1, "E-FILE-READ") in {
        (f["file"], f["line"], f["code"]) for f in result.findings
    }
