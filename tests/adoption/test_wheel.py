"""The tool is installed, not copied: the wheel, built from the committed files and
installed without extras exactly as the accessctl action installs it (the hash-checked
lock, then the wheel), scaffolds, validates and tests an access repository, and carries
no sandbox."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, run_cli


def sh(*args: str | Path, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.mark.slow
def test_the_wheel_installed_without_extras_runs_an_access_repository(tmp_path: Path) -> None:
    # the files git would commit (tracked, and new ones not ignored), nothing of .venv
    source = tmp_path / "src"
    listed = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for rel in filter(None, listed.split("\0")):
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)

    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", venv)
    pip = [venv / "bin/python", "-m", "pip", "--disable-pip-version-check", "-q"]
    sh(*pip, "install", "--require-hashes", "-r", ROOT / "requirements/reconcile.txt")
    dist = tmp_path / "dist"
    sh(*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, source)
    (wheel,) = dist.glob("accessctl-*.whl")
    contents = set(zipfile.ZipFile(wheel).namelist())
    for data in (
        "reconciler/schemas/request.schema.json",
        "reconciler/schemas/policy.schema.json",
        "reconciler/schemas/policy-test.schema.json",
        "reconciler/scaffold/templates/access-check.yml",
        "reconciler/py.typed",
    ):
        assert data in contents, data
    assert not any(n.startswith(("policies/", "requests/", "tests/")) for n in contents)
    sh(*pip, "install", "--no-deps", "--no-index", wheel)

    installed = {p["name"].lower() for p in json.loads(sh(*pip[:-1], "list", "--format", "json"))}
    assert "accessctl" in installed
    assert not installed & {"moto", "flask", "docker", "werkzeug"}, installed

    exe = str(venv / "bin/accessctl")
    assert "init" in run_cli("--help", exe=exe).stdout
    access = tmp_path / "access"
    init = run_cli("init", str(access), exe=exe)
    assert init.code == 0, init.stderr
    assert "accessctl/accessctl@v0.1.0" in init.stdout  # the wheel's Source URL and version
    assert run_cli("validate", "--repo", str(access), exe=exe).code == 0
    tested = run_cli("test", "--repo", str(access), exe=exe)
    assert tested.code == 0 and "0 failed" in tested.stdout, tested.stdout + tested.stderr
    demo = run_cli("demo", exe=exe)
    assert demo.code == 2 and "pip install 'accessctl[sandbox]'" in demo.stderr
