"""Loading a repo from the work tree and from a git commit gives the same answer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler.repo import GitTree, WorkTree, load_repo
from tests.core.conftest import GOOD_REQUEST, write_files


def git(root: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


@pytest.fixture
def git_repo(repo: Path) -> tuple[Path, str]:
    write_files(repo, {"requests/bob/x.yaml": GOOD_REQUEST.replace("alice", "bob")})
    os.symlink("../alice/inc-4821.yaml", repo / "requests/bob/link.yaml")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo, git(repo, "rev-parse", "HEAD")


def summary(loaded: object) -> tuple[object, ...]:
    return (
        sorted(r.path for r in loaded.requests),  # type: ignore[attr-defined]
        sorted((f.file, f.line, f.code) for f in loaded.findings),  # type: ignore[attr-defined]
        [p.name for p in loaded.config.policies],  # type: ignore[attr-defined]
    )


def test_git_tree_equals_work_tree(git_repo: tuple[Path, str]) -> None:
    root, head = git_repo
    with GitTree(root, head) as tree:
        from_git = load_repo(tree)
        assert tree.is_symlink("requests/bob/link.yaml")
        assert tree.read("requests/alice/inc-4821.yaml") == GOOD_REQUEST.encode()
    from_disk = load_repo(WorkTree(root))
    assert summary(from_git) == summary(from_disk)
    assert ("requests/bob/link.yaml", 1, "E-FILE-SYMLINK") in summary(from_git)[1]


def test_git_tree_reads_the_commit_not_the_disk(git_repo: tuple[Path, str]) -> None:
    root, head = git_repo
    (root / "requests/alice/inc-4821.yaml").write_text("broken: [")
    with GitTree(root, head) as tree:
        assert load_repo(tree).ok is False  # only the symlink finding
        assert [f.code for f in load_repo(tree).findings] == ["E-FILE-SYMLINK"]
    assert any(f.code == "E-YAML-SYNTAX" for f in load_repo(WorkTree(root)).findings)


def test_git_tree_many_files_one_process(repo: Path) -> None:
    files = {
        f"requests/alice/r-{i:04d}.yaml": GOOD_REQUEST.replace("2h", f"{i % 3 + 1}h")
        for i in range(600)
    }
    write_files(repo, files)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "many")
    with GitTree(repo, "HEAD") as tree:
        loaded = load_repo(tree)
    assert loaded.ok, loaded.findings[:3]
    assert len(loaded.requests) == 601
    assert {r.duration.total_seconds() for r in loaded.requests if r.duration} == {
        3600,
        7200,
        10800,
    }


def test_only_given_paths_are_loaded(repo: Path) -> None:
    write_files(repo, {"requests/bob/broken.yaml": "requester: [", "README.md": "# hi\n"})
    loaded = load_repo(WorkTree(repo), ["requests/alice/inc-4821.yaml", "README.md"])
    assert loaded.ok
    assert [r.path for r in loaded.requests] == ["requests/alice/inc-4821.yaml"]
    missing = load_repo(WorkTree(repo), ["requests/alice/deleted.yaml"])
    assert [f.code for f in missing.findings] == ["E-FILE-READ"]


def test_parallel_and_serial_loading_agree(repo: Path) -> None:
    files: dict[str, str | bytes | None] = {}
    for i in range(500):
        text = GOOD_REQUEST if i % 7 else GOOD_REQUEST + "bogus: 1\n"
        files[f"requests/alice/r-{i:04d}.yaml"] = text
    write_files(repo, files)
    loaded = load_repo(WorkTree(repo))
    assert len(loaded.requests) == 501 - len(range(0, 500, 7))
    assert len(loaded.findings) == len(range(0, 500, 7))
    assert all(f.code == "E-SCHEMA-UNKNOWN-KEY" and f.line == 8 for f in loaded.findings)


def test_requests_readme_and_gitkeep_are_fine(repo: Path) -> None:
    write_files(repo, {"requests/alice/NOTES.md": "x", "requests/.gitkeep": ""})
    assert load_repo(WorkTree(repo)).ok


def test_git_tree_submodule_and_missing_paths(git_repo: tuple[Path, str]) -> None:
    root, head = git_repo
    blob = git(root, "rev-parse", "HEAD:requests/alice/inc-4821.yaml")
    # a gitlink (submodule) entry where a request should be
    git(root, "update-index", "--add", "--cacheinfo", f"160000,{head},requests/alice/sub.yaml")
    git(root, "commit", "-q", "-m", "gitlink")
    with GitTree(root, "HEAD") as tree:
        loaded = load_repo(tree)
        found = {(f.file, f.code) for f in loaded.findings}
        assert ("requests/alice/sub.yaml", "E-FILE-MODE") in found
        missing = load_repo(tree, ["requests/alice/gone.yaml"])
        assert [f.code for f in missing.findings] == ["E-FILE-READ"]
        assert tree.read("requests/alice/inc-4821.yaml") == GOOD_REQUEST.encode()
    assert blob
