"""The tests never depend on the project's example content: its policies/ and requests/ can
be replaced (an organisation's own, one policy, no requests) and the suite stays green.

An architecture-style check over tests/: no path into the repository's own example
directories, and the demo (which reads them) only ever runs on its embedded policies."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from .conftest import ROOT

TESTS = ROOT / "tests"
EXAMPLE_DIRS = ("policies", "requests")
# An expression that names the repository's own checkout rather than a tmp directory.
REPO_ROOT = re.compile(r"\bROOT\b|\bREPO_ROOT\b|__file__|parents\[")


def example_reads(source: str) -> list[tuple[int, str]]:
    """(line, code) of every path built from the repository root into an example dir, and
    of every file opened by a relative path into one (tests run from the checkout)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        parts: list[ast.expr] = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts = [node.left, node.right]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) in OPENERS:
            if node.args and _into_example(node.args[0], relative=True):
                found.append((node.lineno, ast.unparse(node)))
            parts = list(node.args)
        if len(parts) < 2 or not REPO_ROOT.search(ast.unparse(parts[0])):
            continue
        if any(_into_example(part) for part in parts[1:]):
            found.append((node.lineno, ast.unparse(node)))
    return sorted(found)


OPENERS = ("os.path.join", "Path", "pathlib.Path", "open")


def _into_example(node: ast.expr, *, relative: bool = False) -> bool:
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
        return False
    text = node.value
    if relative:
        if not text.startswith(("./", "../")) and text.split("/")[0] not in EXAMPLE_DIRS:
            return False
        text = text.replace("../", "").replace("./", "")
    return text.strip("/").split("/")[0] in EXAMPLE_DIRS


def runs_the_demo_on_example_policies(source: str) -> bool:
    """A test that runs `accessctl demo` must hand it the embedded policies (the demo
    otherwise reads the checkout's policies/)."""
    starts_demo = "main(['demo'])" in source or any(
        isinstance(n, ast.List | ast.Tuple)
        and any(isinstance(e, ast.Constant) and e.value == "demo" for e in n.elts)
        and any(re.search(r"accessctl|ACCESSCTL|reconciler\.cli", ast.unparse(e)) for e in n.elts)
        for n in ast.walk(ast.parse(source))
    )
    # handed the embedded policies, or stopped before it starts (no sandbox installed)
    safe = "FALLBACK_POLICIES" in source or "sys.modules['moto'] = None" in source
    return starts_demo and not safe


def test_the_detector_finds_reads_of_the_example_dirs() -> None:
    bad = (
        "ROOT = Path(__file__).resolve().parents[2]\n"
        'a = ROOT / "policies"\n'
        'b = (ROOT / "requests").rglob("*.yaml")\n'
        'c = Path(__file__).parents[1] / "policies/payments.yaml"\n'
        'd = os.path.join(ROOT, "requests")\n'
        'e = open("../../policies/teams.yaml")\n'
    )
    assert [line for line, _ in example_reads(bad)] == [2, 3, 4, 5, 6]
    fine = 'a = tmp_path / "policies"\nb = repo.root / "requests/alice/x.yaml"\nc = ROOT / "reconciler"\n'
    assert example_reads(fine) == []
    assert runs_the_demo_on_example_policies('subprocess.run([ACCESSCTL, "demo"], cwd=ROOT)\n')
    assert not runs_the_demo_on_example_policies('COMMANDS = ["validate", "demo"]\n')
    symlink = 'os.symlink("../../policies/p.yaml", tmp_path / "requests/alice/x.yaml")\n'
    assert example_reads(symlink) == []


@pytest.mark.parametrize(
    "path", sorted(TESTS.rglob("*.py")), ids=lambda p: p.relative_to(TESTS).as_posix()
)
def test_no_test_reads_the_example_policies_or_requests(path: Path) -> None:
    if path == Path(__file__):
        return
    source = path.read_text(encoding="utf-8")
    reads = example_reads(source)
    assert not reads, (
        f"{path.relative_to(ROOT)} reads the example content: {reads}; build a fixture instead"
    )
    assert not runs_the_demo_on_example_policies(source), (
        f"{path.relative_to(ROOT)} runs the demo on the checkout's example policies/"
    )
