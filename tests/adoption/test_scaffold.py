"""`accessctl init`: an access repository that is valid, tested, pinned and least-privileged,
and that never loses a file that was already there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from reconciler.scaffold import FILES, Pin

from .conftest import ACTION, ROOT, SHA, run_cli, write

WORKFLOWS = ("access-check.yml", "access-reconcile.yml", "access-ci.yml", "access-heartbeat.yml")


def workflow(root: Path, name: str) -> dict:
    return yaml.safe_load((root / ".github/workflows" / name).read_text())


def test_the_scaffold_holds_only_what_an_access_repository_holds(scaffold: Path) -> None:
    files = sorted(p.relative_to(scaffold).as_posix() for p in scaffold.rglob("*") if p.is_file())
    assert files == sorted(FILES.values())
    assert {f.split("/")[0] for f in files} == {"policies", "requests", ".github"}


def test_validate_and_test_pass_in_the_scaffold(scaffold: Path) -> None:
    validated = run_cli("validate", "--repo", str(scaffold), "--format", "json")
    assert validated.code == 0, validated.stdout + validated.stderr
    assert validated.json["findings"] == []  # no warning either: every policy has a case
    tested = run_cli("test", "--repo", str(scaffold), "--format", "json")
    assert tested.code == 0, tested.stdout + tested.stderr
    verdicts = {c["expected"].split()[0] for c in tested.json["cases"]}
    assert verdicts == {"allowed", "refused", "needs"}


def test_the_example_policy_explains_its_settings(scaffold: Path) -> None:
    text = (scaffold / "policies/access.yaml").read_text()
    for key in ("scopes:", "roles:", "requesters:", "approvers:", "approvals:", "max_duration:"):
        line = next(line for line in text.splitlines() if line.strip().startswith(key))
        assert "#" in line or key in ("scopes:", "roles:"), line
    assert "teams:" in text and "identities:" in text and "providers:" in text
    assert (
        "requests/<your-github-login>/<slug>.yaml" in (scaffold / "requests/README.md").read_text()
    )


def test_every_workflow_runs_the_action_at_the_pinned_commit(scaffold: Path) -> None:
    for name in WORKFLOWS:
        text = (scaffold / ".github/workflows" / name).read_text()
        uses = re.findall(r"^\s*(?:- )?uses: (\S+)(.*)", text, re.M)
        ours = [(u, rest) for u, rest in uses if u.startswith("accessctl/")]
        assert ours, name
        assert all(
            u == ACTION and rest.strip() == f"# v{Pin('x/y', SHA).version}" for u, rest in ours
        )
        # every other action is pinned to a full commit SHA as well
        assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u, _ in uses), uses


def test_the_check_runs_on_pull_request_never_pull_request_target(scaffold: Path) -> None:
    check = workflow(scaffold, "access-check.yml")
    triggers = check[True]  # YAML 1.1 reads `on` as true
    assert set(triggers) == {"pull_request", "pull_request_review"}
    for name in WORKFLOWS:
        assert "pull_request_target" not in (scaffold / ".github/workflows" / name).read_text()
    steps = check["jobs"]["check"]["steps"]
    assert all(
        s.get("with", {}).get("persist-credentials") is False
        for s in steps
        if "checkout" in s.get("uses", "")
    )


def test_only_the_reconciler_gets_oidc_and_write_access(scaffold: Path) -> None:
    for name in WORKFLOWS:
        flow = workflow(scaffold, name)
        assert flow["permissions"] == {}, name  # nothing by default; each job asks
        for job_name, job in flow["jobs"].items():
            perms = job["permissions"]
            if name == "access-reconcile.yml":
                assert perms == {
                    "id-token": "write",
                    "contents": "write",
                    "pull-requests": "read",
                    "statuses": "write",  # anchors each ledger head (append-only)
                    "actions": "read",  # the previous successful run: the activity span
                }
                assert job["environment"] == "accessctl"
            else:
                assert "id-token" not in perms, (name, job_name)
                assert perms.get("contents") == "read", (name, job_name)


def test_a_request_waiting_for_approvals_keeps_the_check_green(scaffold: Path) -> None:
    """The check job decides from pr-check's JSON state: only "failure" (cannot merge as it
    stands) or no report at all fails it; "pending" (waiting) does not."""
    steps = workflow(scaffold, "access-check.yml")["jobs"]["check"]["steps"]
    [gate] = [s for s in steps if s.get("with", {}).get("command") == "pr-check"]
    assert gate["continue-on-error"] is True
    assert "--json-out" in gate["with"]["args"]
    decide = steps[steps.index(gate) + 1]["run"]
    assert "pending)" in decide and "failure)" in decide and "exit 1" in decide


def test_ci_runs_validate_and_test(scaffold: Path) -> None:
    steps = workflow(scaffold, "access-ci.yml")["jobs"]["validate"]["steps"]
    commands = [s["with"]["command"] for s in steps if s.get("uses", "").startswith("accessctl/")]
    assert commands == ["validate", "test"]


def test_the_workflows_pass_actionlint_and_zizmor(scaffold: Path) -> None:
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    flows = sorted(str(p) for p in (scaffold / ".github/workflows").glob("*.yml"))
    lint = subprocess.run(
        [str(bin_dir / "actionlint"), "-color=false", *flows], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    audit = subprocess.run(
        [str(bin_dir / "zizmor"), "--offline", "--no-progress", str(scaffold / ".github")],
        capture_output=True,
        text=True,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_third_party_actions_are_the_ones_this_project_pins(scaffold: Path) -> None:
    """The scaffold's pins move with the project's own (which Dependabot keeps fresh)."""
    ours = set()
    for path in [*(ROOT / ".github/workflows").glob("*.yml"), ROOT / "action.yml"]:
        ours |= set(re.findall(r"uses: ([\w.-]+/[\w.-]+@[0-9a-f]{40} # \S+)", path.read_text()))
    for name in WORKFLOWS:
        text = (scaffold / ".github/workflows" / name).read_text()
        theirs = set(re.findall(r"uses: ([\w.-]+/[\w.-]+@[0-9a-f]{40} # \S+)", text))
        assert {t for t in theirs if not t.startswith("accessctl/")} <= ours, name


def test_files_point_editors_at_the_schemas_of_the_pinned_version(scaffold: Path) -> None:
    base = f"https://raw.githubusercontent.com/accessctl/accessctl/{SHA}/reconciler/schemas"
    expected = {
        "policies/access.yaml": f"{base}/policy.schema.json",
        "policies/tests/access.yaml": f"{base}/policy-test.schema.json",
    }
    for rel, url in expected.items():
        first = (scaffold / rel).read_text().splitlines()[0]
        assert first == f"# yaml-language-server: $schema={url}"
        assert (ROOT / "reconciler/schemas" / url.rsplit("/", 1)[1]).is_file()
    assert f"$schema={base}/request.schema.json" in (scaffold / "requests/README.md").read_text()


def test_a_directory_that_is_not_empty_is_refused_without_force(tmp_path: Path) -> None:
    root = tmp_path / "access"
    write(root, {"README.md": "ours\n"})
    result = run_cli("init", str(root), "--action", ACTION)
    assert result.code == 2
    assert "not empty" in result.stderr and "--force" in result.stderr
    assert sorted(p.name for p in root.iterdir()) == ["README.md"]


def test_force_keeps_every_existing_file_and_lists_it(tmp_path: Path) -> None:
    root = tmp_path / "access"
    mine = {"policies/access.yaml": "policies: []\n", ".github/CODEOWNERS": "* @me\n"}
    write(root, {**mine, "README.md": "ours\n"})
    result = run_cli("init", str(root), "--force", "--action", ACTION)
    assert result.code == 0, result.stderr
    for rel, text in mine.items():
        assert (root / rel).read_text() == text
        assert f"kept   {rel}" in result.stdout
    assert "wrote  .github/workflows/access-check.yml" in result.stdout
    again = run_cli("init", str(root), "--force", "--action", ACTION)
    assert "wrote" not in again.stdout  # a second run changes nothing


def test_force_never_writes_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "access"
    root.mkdir()
    (root / "policies").symlink_to(outside, target_is_directory=True)
    result = run_cli("init", str(root), "--force", "--action", ACTION)
    assert result.code == 0, result.stderr
    assert list(outside.iterdir()) == []
    assert "kept   policies/access.yaml" in result.stdout


@pytest.mark.parametrize("action", ["not a repo", "owner/name@bad ref", "@abc"])
def test_a_bad_action_is_a_usage_error(tmp_path: Path, action: str) -> None:
    result = run_cli("init", str(tmp_path / "a"), "--action", action)
    assert result.code == 2 and "--action" in result.stderr


def test_next_steps_name_the_ruleset_oidc_and_doctor(tmp_path: Path) -> None:
    out = run_cli("init", str(tmp_path / "a"), "--action", ACTION).stdout
    for words in ("ruleset", "OIDC", "accessctl doctor", "accessctl/approval", "CODEOWNERS"):
        assert words in out, words
    assert "a tag" not in out  # pinned to a commit: nothing to warn about


def test_a_tag_pin_is_pointed_out(tmp_path: Path) -> None:
    out = run_cli("init", str(tmp_path / "a"), "--action", "acme/accessctl@v9.9.9").stdout
    assert "a tag" in out and "git ls-remote https://github.com/acme/accessctl v9.9.9" in out


def test_the_default_pin_is_the_installed_commit_or_release_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reconciler import __version__, scaffold

    class Dist:
        def __init__(self, text: str | None) -> None:
            self.text = text

        def read_text(self, name: str) -> str | None:
            return self.text

    git = '{"url": "https://github.com/acme/accessctl", "vcs_info": {"vcs": "git", "commit_id": "%s"}}'
    monkeypatch.setattr(scaffold.metadata, "distribution", lambda _: Dist(git % SHA))
    assert scaffold.installed_ref() == SHA
    monkeypatch.setattr(scaffold.metadata, "distribution", lambda _: Dist('{"dir_info": {}}'))
    assert scaffold.installed_ref() == f"v{__version__}"
    assert Pin.installed().repository == "accessctl/accessctl"  # pyproject's Source URL
