"""The supply chain: run-time dependencies only what the reconciler needs, the sandbox an
extra, locks with hashes in step with pyproject.toml, every action pinned to a commit."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from .conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
SANDBOX_ONLY = {"moto", "flask", "docker", "werkzeug"}


def names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower() for r in requirements}


def in_file(path: Path) -> list[str]:
    """The requirements a requirements/*.in file names (its -r includes followed)."""
    out: list[str] = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out += in_file(path.parent / line[3:].strip())
        elif line:
            out.append(line)
    return out


def test_the_sandbox_is_an_extra_not_a_run_time_dependency() -> None:
    assert not names(PROJECT["dependencies"]) & SANDBOX_ONLY
    (moto,) = PROJECT["optional-dependencies"]["sandbox"]
    assert Requirement(moto) == Requirement("moto[server]>=5.2.5,<6")  # 5.2.1 broke the demo


def test_the_wheel_carries_the_schemas_and_templates() -> None:
    data = PYPROJECT["tool"]["setuptools"]["package-data"]["reconciler"]
    assert "schemas/*.json" in data and "scaffold/templates/*" in data


def test_the_lock_inputs_are_the_pyproject_dependencies() -> None:
    reconcile = in_file(ROOT / "requirements/reconcile.in")
    declared = {Requirement(r) for r in PROJECT["dependencies"]}
    assert {Requirement(r) for r in reconcile} == declared | {Requirement("setuptools>=77")}
    build = PYPROJECT["build-system"]["requires"]
    assert build == ["setuptools>=77"]  # what the action builds accessctl with, from the lock
    dev = {Requirement(r) for r in in_file(ROOT / "requirements/dev.in")}
    extras = PROJECT["optional-dependencies"]
    assert dev == {Requirement(r) for r in reconcile + extras["sandbox"] + extras["dev"]}


def test_every_locked_requirement_is_pinned_with_hashes() -> None:
    for name in ("reconcile", "dev"):
        lock = (ROOT / f"requirements/{name}.txt").read_text()
        entries = re.split(r"\n(?=\S)", lock)
        pins = [e for e in entries if not e.startswith("#")]
        assert pins, name
        for entry in pins:
            assert re.match(r"[A-Za-z0-9._-]+==\S+ \\", entry), entry[:80]
            assert "--hash=sha256:" in entry, entry[:80]
        assert "--index-url" not in lock and "--find-links" not in lock and "file://" not in lock
        locked = {re.match(r"([A-Za-z0-9._-]+)==", e).group(1).lower() for e in pins}  # type: ignore[union-attr]
        wanted = {Requirement(r).name.lower() for r in in_file(ROOT / f"requirements/{name}.in")}
        assert wanted <= {n.replace("_", "-") for n in locked} | locked, wanted - locked
    reconcile = (ROOT / "requirements/reconcile.txt").read_text()
    assert not {n for n in SANDBOX_ONLY if re.search(rf"^{n}==", reconcile, re.M | re.I)}


def test_every_action_is_pinned_to_a_full_commit_sha() -> None:
    files = [*(ROOT / ".github/workflows").glob("*.yml"), ROOT / "action.yml"]
    files += sorted((ROOT / "reconciler/scaffold/templates").glob("*.yml"))
    for path in files:
        for uses in re.findall(r"^\s*(?:- )?uses: (\S+)", path.read_text(), re.M):
            if uses.startswith("./") or uses == "__ACTION__":
                continue
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), f"{path.name}: {uses}"


def test_the_action_installs_the_hash_checked_lock_and_nothing_from_the_caller() -> None:
    action = (ROOT / "action.yml").read_text()
    assert "--require-hashes" in action and "--only-binary=:all:" in action
    assert 'requirements/reconcile.txt"' in action
    assert "--no-deps --no-index --no-build-isolation" in action
    # inputs reach the scripts through env only: no expression is spliced into a script
    steps = yaml.safe_load(action)["runs"]["steps"]
    assert all("${{" not in step.get("run", "") for step in steps)


def test_the_workflows_install_from_locks() -> None:
    ci = (ROOT / ".github/workflows/ci.yml").read_text()
    assert "make test LOCKED=1" in ci and "cache-dependency-path: requirements/dev.txt" in ci
    for name in ("access-check.yml", "access-reconcile.yml"):
        steps = yaml.safe_load((ROOT / ".github/workflows" / name).read_text())["jobs"]
        scripts = [s.get("run", "") for job in steps.values() for s in job["steps"]]
        assert not any("pip" in s for s in scripts)  # the action installs, from its lock
    assert (ROOT / ".github/dependabot.yml").is_file()


def test_make_demo_installs_the_sandbox_and_make_test_the_dev_tools_too() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q -e '.[sandbox]'" in makefile
    assert "pip install -q -e '.[dev,sandbox]'" in makefile
    assert re.search(r"^lock:", makefile, re.M) and "--generate-hashes" in makefile


def test_the_quickstart_is_still_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]


def test_the_demo_without_the_sandbox_extra_names_it_and_exits_2() -> None:
    code = (
        "import sys\n"
        "sys.modules['moto'] = None  # as if the sandbox extra were not installed\n"
        "from reconciler.cli import main\n"
        "main(['demo'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'accessctl[sandbox]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_pre_commit_hooks_run_validate_and_test() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert hooks["accessctl-validate"]["entry"] == "accessctl validate"
    assert hooks["accessctl-test"]["entry"] == "accessctl test"
    assert hooks["accessctl-test"]["pass_filenames"] is False
    assert all(h["language"] == "python" for h in hooks.values())
