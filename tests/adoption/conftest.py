"""Fixtures for adopting accessctl without a fork: `accessctl init` scaffolds, the CLI runs
as an installed program, and nothing here reads the project's example policies/ or
requests/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCESSCTL = str(Path(sys.executable).parent / "accessctl")
SHA = "0123456789abcdef0123456789abcdef01234567"  # a commit the scaffold pins the action to
ACTION = f"accessctl/accessctl@{SHA}"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout)


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, exe: str = ACCESSCTL
) -> Result:
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    proc = subprocess.run(
        [exe, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.fixture
def scaffold(tmp_path: Path) -> Path:
    """A freshly scaffolded access repository, its action pinned to ``SHA``."""
    root = tmp_path / "access"
    result = run_cli("init", str(root), "--action", ACTION)
    assert result.code == 0, result.stderr
    return root
