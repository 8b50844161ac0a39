"""The one history reader (reconciler.history.load_branch) on real repositories."""

from __future__ import annotations

import subprocess

import pytest

from reconciler import history
from reconciler.errors import ConfigError

from .conftest import POLICY, T0, GitRepo, H, request_yaml


@pytest.fixture
def repo(tmp_path) -> GitRepo:
    return GitRepo(tmp_path / "r")


def test_empty_repository_and_no_requests(repo) -> None:
    assert history.load_branch(repo.root).current() == []
    repo.write("policies/p.yaml", POLICY)
    repo.commit("policies", at=T0)
    branch = history.load_branch(repo.root)
    assert branch.changes() == {}
    assert branch.former_scopes() == {}
    assert [p.name for p in branch.config.policies] == ["gcp-read"]


def test_not_a_repository(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not a git repository"):
        history.load_branch(tmp_path)


def test_unknown_ref_is_an_error(repo) -> None:
    repo.write("policies/p.yaml", POLICY)
    repo.commit("policies", at=T0)
    with pytest.raises(ConfigError, match="'nope' is not a branch"):
        history.load_branch(repo.root, "nope")


def test_last_change_is_the_latest_first_parent_commit(repo) -> None:
    repo.write("policies/p.yaml", POLICY)
    repo.write("requests/alice/a.yaml", request_yaml(scope="projects/app-prod-a"))
    repo.write("requests/alice/b.yaml", request_yaml(scope="projects/app-prod-b"))
    first = repo.commit("two requests", at=T0)
    repo.write("requests/alice/a.yaml", request_yaml(scope="projects/app-prod-c"))
    second = repo.commit("edit a", at=T0 + H)
    repo.write("other.txt", "x")
    repo.commit("unrelated", at=T0 + 2 * H)

    changes = history.load_branch(repo.root).changes()
    assert set(changes) == {"requests/alice/a.yaml", "requests/alice/b.yaml"}
    assert changes["requests/alice/a.yaml"].commit == second
    assert changes["requests/alice/a.yaml"].committed_at == T0 + H
    assert changes["requests/alice/b.yaml"].commit == first
    blob = repo.git("rev-parse", "HEAD:requests/alice/a.yaml").strip()
    assert changes["requests/alice/a.yaml"].blob == blob
    assert set(history.load_branch(repo.root).former_scopes()) == {("gcp", "projects/app-prod-a")}


def test_merge_commit_time_is_the_approval_time(repo) -> None:
    repo.write("README.md", "x")
    repo.commit("init", at=T0)
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("requests/bob/x.yaml", request_yaml(requester="bob"))
    repo.commit("request on a branch", at=T0 + H)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "feature", "-m", "merge", at=T0 + 5 * H)
    merge = repo.git("rev-parse", "HEAD").strip()

    change = history.load_branch(repo.root).changes()["requests/bob/x.yaml"]
    assert change.commit == merge
    assert change.committed_at == T0 + 5 * H


def test_deleted_files_leave_their_scopes(repo) -> None:
    name = "requests/alice/gone.yaml"
    repo.write(name, request_yaml(scope="folders/123"))
    repo.commit("add", at=T0)
    repo.remove(name)
    repo.commit("delete", at=T0 + H)

    branch = history.load_branch(repo.root)
    assert branch.changes() == {}
    assert [v.removal.deleted for v in branch.versions if v.removal] == [True]
    assert branch.former_scopes() == {("gcp", "folders/123"): T0 + H}


def test_invalid_old_versions_name_no_scope(repo) -> None:
    repo.write("requests/alice/a.yaml", "provider: gcp\nscope: projects/only-in-garbage\n")
    repo.commit("garbage that names a scope", at=T0)
    repo.write("requests/alice/a.yaml", request_yaml(scope="projects/app-prod-b"))
    repo.commit("fixed", at=T0 + H)
    repo.remove("requests/alice/a.yaml")
    repo.commit("gone", at=T0 + 2 * H)
    assert set(history.load_branch(repo.root).former_scopes()) == {("gcp", "projects/app-prod-b")}


def test_non_request_entries_are_never_versions(repo) -> None:
    """Notes, gitlinks, symlinks and executables under requests/ are strays: never parsed,
    never a scope, reported; a request replaced by a gitlink ends like a deletion."""
    repo.write("requests/alice/a.yaml", request_yaml(scope="projects/app-prod-a"))
    repo.write("requests/alice/note.txt", "provider: gcp\nscope: projects/evil\n")
    repo.write("requests/README.md", "how to ask")
    base = repo.commit("a request and notes", at=T0)
    repo.git("rm", "-q", "--cached", "requests/alice/a.yaml")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{base},requests/alice/sub")
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{base},requests/alice/a.yaml")
    repo.commit_staged("gitlinks", date=T0 + H)
    branch = history.load_branch(repo.root)
    assert branch.current() == []
    assert [v.removal.deleted for v in branch.versions if v.removal] == [True]
    assert {(s.path, s.mode) for s in branch.strays} == {
        ("requests/alice/note.txt", "100644"),
        ("requests/alice/sub", "160000"),
        ("requests/alice/a.yaml", "160000"),
    }
    assert set(branch.former_scopes()) == {("gcp", "projects/app-prod-a")}


def test_case_variant_directory_is_a_stray(repo) -> None:
    repo.write("Requests/alice/a.yaml", request_yaml())
    repo.commit("case variant", at=T0)
    branch = history.load_branch(repo.root)
    assert branch.versions == []
    assert [s.path for s in branch.strays] == ["Requests/alice/a.yaml"]


def test_shallow_clone_is_reported(repo, tmp_path) -> None:
    repo.write("requests/alice/a.yaml", request_yaml())
    repo.commit("old request", at=T0)
    repo.write("requests/bob/b.yaml", request_yaml(requester="bob"))
    repo.commit("new request", at=T0 + H)
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True
    )
    with pytest.raises(ConfigError, match="shallow"):
        history.load_branch(clone).check_complete()
