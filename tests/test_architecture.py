"""Architecture: every module imports on its own; the core stays pure; validate stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reconciler"
FORBIDDEN_IN_CORE = {
    "boto3",
    "botocore",
    "google",
    "github",
    "click",
    "subprocess",
    "socket",
    "requests",
    "urllib",
    "http",
    "os",
    "pathlib",
    "shutil",
    "tempfile",
    "threading",
    "concurrent",
    "time",
    "random",
    "multiprocessing",
    "io",
}


def _modules() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", _modules())
def test_module_imports_on_its_own(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").rglob("*.py")), ids=lambda p: p.name)
def test_core_is_pure(path: Path) -> None:
    bad = _imports(path) & FORBIDDEN_IN_CORE
    assert not bad, f"{path.name} imports {sorted(bad)}: reconciler/core must stay pure"
    text = path.read_text(encoding="utf-8")
    for call in ("open(", "datetime.now(", "datetime.utcnow(", "time.time("):
        assert call not in text, f"{path.name} calls {call}: no I/O or clock in the core"


def test_validate_does_not_load_cloud_sdks() -> None:
    code = (
        "import sys\n"
        "from reconciler.cli import cli\n"
        "import reconciler.commands.validate\n"
        "heavy = [m for m in ('boto3', 'botocore', 'google.cloud', 'github') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"validate imports {proc.stdout.strip()}"


def test_every_command_has_help() -> None:
    from click.testing import CliRunner

    from reconciler.cli import COMMANDS, cli

    runner = CliRunner()
    for name in COMMANDS:
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, f"{name} --help: {result.output}"
        assert "Usage:" in result.output


def test_unknown_command_is_usage_error() -> None:
    from click.testing import CliRunner

    from reconciler.cli import cli

    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
