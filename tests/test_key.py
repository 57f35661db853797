"""The cache key: canonical over what changes the answer, blind to what does not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtap._core.explain import differing_fields
from llmtap._core.key import DEFAULT_KEY_IGNORE, canonical_body, hash_material, key_material
from llmtap._core.request import LLMCall, RequestFacts, classify, parse_body


def key(
    body: dict[str, Any],
    host: str = "api.openai.com",
    path: str = "/v1/chat/completions",
    namespace: str = "",
    query: list[tuple[str, str]] | None = None,
) -> str:
    raw = orjson.dumps(body)  # what was sent, as the key may read it again
    facts = RequestFacts("POST", "https", host, 443, path, query or [], {}, raw)
    call = LLMCall("chat", facts, body)
    return hash_material(key_material(call, namespace, DEFAULT_KEY_IGNORE))


BASE = {"model": "gpt-4o-mini", "seed": 1, "temperature": 0.5, "messages": [{"role": "user"}]}


def test_equivalent_requests_share_one_key() -> None:
    reordered = {
        "messages": [{"role": "user"}],
        "temperature": 0.5,
        "seed": 1.0,
        "model": "gpt-4o-mini",
    }
    assert key(reordered) == key(BASE)
    assert key({**BASE, "stream": False}) == key(BASE)
    assert key({**BASE, "user": "alice", "metadata": {"a": "b"}, "store": True}) == key(BASE)
    assert key(BASE, host="API.OpenAI.com") == key(BASE)
    assert key(BASE, query=[("b", "2"), ("a", "1")]) == key(BASE, query=[("a", "1"), ("b", "2")])


@pytest.mark.parametrize(
    "change",
    [
        {"host": "api.groq.com"},
        {"path": "/v1/v1/chat/completions"},
        {"namespace": "tenant-b"},
        {"body": {**BASE, "model": "gpt-4o"}},
        {"body": {**BASE, "stream": True}},
        {"body": {**BASE, "seed": 2}},
        {"body": {**BASE, "temperature": 0.51}},
        {"query": [("api-version", "2024-10-21")]},
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(change: dict[str, Any]) -> None:
    body = change.pop("body", BASE)
    assert key(body, **change) != key(BASE)


def test_interception_by_path_suffix() -> None:
    assert classify("POST", "/v1/chat/completions") == "chat"
    assert classify("POST", "/api/v1/v1/chat/completions") == "chat"
    assert classify("POST", "/openai/deployments/gpt/chat/completions") == "chat"
    assert classify("POST", "/v1/completions") == "text_completion"
    assert classify("POST", "/v1/embeddings") == "embeddings"
    assert classify("POST", "/v1/responses") == "chat"
    assert classify("GET", "/v1/chat/completions") is None
    assert classify("POST", "/v1/models") is None
    assert classify("POST", "/v1/responses/abc/cancel") is None


@pytest.mark.parametrize(
    "raw", [b"", b"[1]", b"\xff\xfe", b'{"a": NaN}', b"{" * 10_000, b'"text"', b"{bad json"]
)
def test_bodies_that_are_not_json_objects_are_not_parsed(raw: bytes) -> None:
    assert parse_body(raw) is None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6))
def test_key_ignores_order_and_number_form(body: dict[str, Any]) -> None:
    reversed_body = dict(reversed(list(body.items())))
    assert key(reversed_body) == key(body)
    as_floats = {k: float(v) if type(v) is int and abs(v) < 2**53 else v for k, v in body.items()}
    assert key(as_floats) == key(body)
    assert canonical_body(body, ()) == canonical_body(canonical_body(body, ()), ())


def test_query_pairs_read_back_from_a_recording_differ_in_nothing() -> None:
    """A live key material holds the query as pairs, one read from JSON as lists: the
    replay-miss explanation must not list query fields that did not change."""
    live = {"query": [("api-version", "1")], "body": {"a": 1}}
    stored = {"query": [["api-version", "1"]], "body": {"a": 2}}
    assert differing_fields(live, stored) == ["body.a"]
