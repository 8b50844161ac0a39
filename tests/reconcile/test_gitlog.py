"""The one-pass git history reader, on real repositories with crafted history."""

from __future__ import annotations

import subprocess

import pytest

from reconciler import gitlog

from .conftest import T0, GitRepo, H


@pytest.fixture
def repo(tmp_path) -> GitRepo:
    return GitRepo(tmp_path / "r")


def test_empty_repository_and_no_requests(repo) -> None:
    assert gitlog.last_changes(repo.root) == {}
    repo.write("policies/p.yaml", "policies: []\n")
    repo.commit("policies", at=T0)
    assert gitlog.last_changes(repo.root) == {}
    assert gitlog.historical_scopes(repo.root) == set()


def test_not_a_repository(tmp_path) -> None:
    with pytest.raises(gitlog.HistoryError, match="not a git repository"):
        gitlog.read_history(tmp_path)


def test_last_change_is_the_latest_first_parent_commit(repo) -> None:
    repo.write("requests/alice/a.yaml", "provider: gcp\nscope: projects/one\n")
    repo.write("requests/alice/b.yaml", "provider: gcp\nscope: projects/two\n")
    first = repo.commit("two requests", at=T0)
    repo.write("requests/alice/a.yaml", "provider: gcp\nscope: projects/three\n")
    second = repo.commit("edit a", at=T0 + H)
    repo.write("other.txt", "x")
    repo.commit("unrelated", at=T0 + 2 * H)

    changes = gitlog.last_changes(repo.root)
    assert set(changes) == {"requests/alice/a.yaml", "requests/alice/b.yaml"}
    assert changes["requests/alice/a.yaml"].commit == second
    assert changes["requests/alice/a.yaml"].committed_at == T0 + H
    assert changes["requests/alice/b.yaml"].commit == first
    blob = repo.git("rev-parse", "HEAD:requests/alice/a.yaml").strip()
    assert changes["requests/alice/a.yaml"].blob == blob
    assert gitlog.historical_scopes(repo.root) == {("gcp", "projects/one")}


def test_merge_commit_time_is_the_approval_time(repo) -> None:
    repo.write("README.md", "x")
    repo.commit("init", at=T0)
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("requests/bob/x.yaml", "provider: gcp\nscope: projects/p\n")
    repo.commit("request on a branch", at=T0 + H)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "feature", "-m", "merge", at=T0 + 5 * H)
    merge = repo.git("rev-parse", "HEAD").strip()

    change = gitlog.last_changes(repo.root)["requests/bob/x.yaml"]
    assert change.commit == merge
    assert change.committed_at == T0 + 5 * H


def test_deleted_files_leave_their_scopes(repo) -> None:
    name = "requests/alice/späce ünicode.yaml"
    repo.write(name, "provider: 'gcp'\nscope: \"folders/123\"  # old\n")
    repo.commit("add", at=T0)
    repo.remove(name)
    repo.commit("delete", at=T0 + H)

    history = gitlog.read_history(repo.root)
    assert history.changes == {}
    assert set(history.deleted) == {name}
    assert gitlog.historical_scopes(repo.root) == {("gcp", "folders/123")}


def test_unparseable_old_versions_are_skipped(repo) -> None:
    repo.write("requests/alice/a.yaml", "{{{ not yaml\n")
    repo.commit("garbage", at=T0)
    repo.write("requests/alice/a.yaml", "provider: aws\nscope: '123456789012'\n")
    repo.commit("fixed", at=T0 + H)
    repo.remove("requests/alice/a.yaml")
    repo.commit("gone", at=T0 + 2 * H)
    assert gitlog.historical_scopes(repo.root) == {("aws", "123456789012")}


def test_shallow_clone_is_reported(repo, tmp_path) -> None:
    repo.write("requests/alice/a.yaml", "provider: gcp\nscope: projects/one\n")
    repo.commit("old request", at=T0)
    repo.write("requests/bob/b.yaml", "provider: gcp\nscope: projects/two\n")
    repo.commit("new request", at=T0 + H)
    clone = tmp_path / "clone"
    subprocess.run(
        ["git", "clone", "-q", "--depth", "1", f"file://{repo.root}", str(clone)], check=True
    )
    with pytest.raises(gitlog.HistoryError, match="shallow"):
        gitlog.last_changes(clone)
