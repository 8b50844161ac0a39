"""The fast schema path agrees with jsonschema on both schemas, for valid and invalid data."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from reconciler.core.fastschema import compile_fast
from reconciler.repo import schema

KEYS = [
    "requester",
    "provider",
    "scope",
    "role",
    "reason",
    "ticket",
    "duration",
    "start",
    "expires",
    "extra",
]
SAMPLES = {
    "requester": ["alice", "-bob", "a" * 40, "Carol-1"],
    "provider": ["gcp", "aws", "azure", ""],
    "scope": [
        "projects/payments-prod",
        "111122223333",
        "folders/12",
        "organizations/x",
        "11112222333",
    ],
    "role": [
        "roles/cloudsql.viewer",
        "ReadOnlyAccess",
        "roles/*",
        "projects/payments-prod/roles/x",
        "a" * 33,
    ],
    "reason": ["Investigate INC-1 slow", "short", "          ", "bad \x1b reason here"],
    "ticket": ["INC-1", "", "x\ny"],
    "duration": ["2h", "PT2H", "P", "2 hours", "P1DT"],
    "start": ["2026-12-01T09:00:00Z", "2026-12-01", "2026-12-01T09:00:00"],
    "expires": ["2026-12-01T18:00:00+01:00", "tomorrow"],
    "extra": ["x"],
}
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=6),
    st.lists(st.text(max_size=3), max_size=2),
)


@st.composite
def request_like(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True)):
        out[key] = draw(st.sampled_from(SAMPLES[key]) | values)
    return out


@settings(max_examples=400)
@given(request_like())
def test_request_fast_path_agrees(data: dict[str, Any]) -> None:
    s = schema("request")
    fast = compile_fast(s)
    assert fast is not None
    assert fast(data) == Draft202012Validator(s).is_valid(data)


POLICY_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-2, 30),
        st.sampled_from(
            [
                "gcp",
                "aws",
                "alice",
                "team:x",
                "2h",
                "roles/x",
                "projects/a-*",
                "111122223333",
                "us-east-1",
                "d-1",
                "user:a@example.com",
            ]
        ),
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "name",
                    "provider",
                    "scopes",
                    "roles",
                    "requesters",
                    "approvers",
                    "approvals",
                    "max_duration",
                    "ticket",
                    "gcp",
                    "aws",
                    "x",
                ]
            ),
            inner,
            max_size=9,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["policies", "teams", "identities", "providers", "other"]),
        POLICY_VALUES,
        max_size=4,
    )
)
def test_policy_fast_path_agrees(data: dict[str, Any]) -> None:
    s = schema("policy")
    fast = compile_fast(s)
    assert fast is not None
    assert fast(data) == Draft202012Validator(s).is_valid(data)


def test_valid_policy_document_passes_both(tmp_path: Any) -> None:
    doc = {
        "policies": [
            {
                "name": "p",
                "provider": "aws",
                "scopes": ["111122223333"],
                "roles": ["ReadOnlyAccess"],
                "requesters": ["alice", "team:t"],
                "approvals": 0,
                "max_duration": "1h",
            }
        ],
        "teams": {"t": ["bob"]},
        "identities": {"alice": {"aws": "alice@example.com"}},
        "providers": {
            "aws": {
                "instance_arn": "arn:aws:sso:::instance/ssoins-1",
                "identity_store_id": "d-1",
                "region": "us-east-1",
            }
        },
    }
    fast = compile_fast(schema("policy"))
    assert fast is not None and fast(doc)
    assert Draft202012Validator(schema("policy")).is_valid(doc)


def test_unknown_keyword_disables_the_fast_path() -> None:
    assert compile_fast({"type": "object", "patternProperties": {}}) is None
    assert compile_fast({"type": "string", "format": "email"}) is None
