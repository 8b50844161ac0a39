"""Regular expressions from policy text never backtrack: a hostile ``ticket`` pattern or scope
glob costs time linear in the input, so it cannot stall pr-check, validate or apply."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.core.models import AccessRequest, Config, Policy
from reconciler.core.policy import TicketPattern, evaluate

from .conftest import NOW, POLICY, GitRepo, request, run_cli

MINE = "requests/alice/inc-1.yaml"
HOSTILE = [
    ("^(a+)+$", "a" * 60 + "!"),
    ("(x+x+)+y", "x" * 60),
    ("^(a|a)*$", "a" * 60 + "!"),
    ("^([a-z]+)*[0-9]$", "a" * 60 + "!"),
]


def with_ticket(pattern: str) -> str:
    line = "    max_duration: 8h\n"
    return POLICY.replace(line, f"{line}    ticket: '{pattern}'\n")


@pytest.mark.parametrize(("pattern", "ticket"), HOSTILE, ids=[p for p, _ in HOSTILE])
def test_a_nested_quantifier_ticket_pattern_does_not_stall_validate(
    tmp_path: Path, pattern: str, ticket: str
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        {"policies/p.yaml": with_ticket(pattern), MINE: request(extra=f"ticket: '{ticket}'\n")}
    )
    started = time.monotonic()
    result = run_cli(
        "validate", "--repo", str(repo.root), "--format", "json", "--at", NOW, timeout=20
    )
    elapsed = time.monotonic() - started
    assert result.code == 1, result.stderr
    found = {(f["file"], f["line"], f["code"]) for f in result.json["findings"]}
    assert (MINE, 7, "E-POLICY-TICKET-MISMATCH") in found, found
    # The whole CLI (interpreter start included) in a few seconds on a loaded CI runner;
    # Python's `re` took minutes on this input.
    assert elapsed < 5, f"validate took {elapsed:.1f}s"


@pytest.mark.parametrize(("pattern", "ticket"), HOSTILE, ids=[p for p, _ in HOSTILE])
def test_matching_a_hostile_ticket_pattern_is_linear(pattern: str, ticket: str) -> None:
    compiled = TicketPattern.compile(pattern)
    started = time.perf_counter()
    for text in (ticket, ticket * 100):
        assert not compiled.fullmatch(text)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    "pattern",
    [r"^(INC)-\1$", r"^(?=INC)[A-Z]+-[0-9]+$", r"^(?!CHG)[A-Z]+$", r"(?<=x)y"],
    ids=["backreference", "lookahead", "negative-lookahead", "lookbehind"],
)
def test_a_pattern_re2_cannot_run_is_refused_at_load(tmp_path: Path, pattern: str) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit({"policies/p.yaml": with_ticket(pattern), MINE: request()})
    result = run_cli("validate", "--repo", str(repo.root), "--format", "json", "--at", NOW)
    assert result.code == 1, result.stderr
    refused = [f for f in result.json["findings"] if f["code"] == "E-CONFIG-REGEX"]
    assert [(f["file"], f["line"]) for f in refused] == [("policies/p.yaml", 10)]
    assert "policies[0].ticket" in refused[0]["message"]
    assert "RE2" in refused[0]["message"]


def test_the_whole_ticket_must_match_as_before() -> None:
    compiled = TicketPattern.compile("(INC|CHG)-[0-9]+")
    assert compiled.fullmatch("INC-12")
    assert not compiled.fullmatch("INC-12 and more")
    assert not compiled.fullmatch("xINC-12")
    assert not TicketPattern.compile("^INC-[0-9]+$").fullmatch("INC-12\n")
    assert compiled == TicketPattern.compile("(INC|CHG)-[0-9]+")  # compares by pattern


@pytest.mark.parametrize(
    "glob",
    ["*a" * 400 + "b", "*" * 800, "?*" * 400 + "b", "[a-z]*" * 200 + "b"],
    ids=["star-literal", "stars", "question-star", "class-star"],
)
def test_a_hostile_scope_glob_matches_in_linear_time(glob: str) -> None:
    # fnmatch.translate turns each * into an atomic group on Python >= 3.11: no
    # backtracking between stars, whatever a plug-in provider's scope shape allows.
    policy = Policy(
        name="wide",
        provider="gcp",
        scopes=(glob,),
        roles=("roles/logging.viewer",),
        requesters=("alice",),
        approvers=(),
        approvals=0,
        max_duration=timedelta(hours=8),
    )
    config = Config(policies=(policy,), identities={"alice": {"gcp": "user:alice@example.com"}})
    scope = "a" * 100
    req = AccessRequest(
        path="requests/alice/x.yaml",
        requester="alice",
        provider="gcp",
        scope=scope,
        role="roles/logging.viewer",
        reason="Investigate INC-1 in depth",
        duration=timedelta(hours=1),
    )
    started = time.perf_counter()
    evaluate(req, config, approved_at=datetime(2026, 12, 1, tzinfo=UTC), approvals=None)
    assert time.perf_counter() - started < 0.5
