"""Property-based tests: the SSE accumulator, the canonical key and the entry codec."""

from __future__ import annotations

import itertools
import random
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtap._core.answer import AnswerAccumulator
from llmtap._core.entry import MAGIC, CacheEntry, EntryError, decode_entry, encode_entry
from llmtap._core.key import canonical_body, hash_material, key_material
from llmtap._core.request import LLMCall, RequestFacts

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the SSE accumulator -----------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12)


@st.composite
def chat_streams(draw: Any) -> tuple[bytes, int]:
    """A chat stream: n choices, content and tool-call deltas, finish reasons, optional
    usage chunk, optional [DONE], LF or CRLF line ends, optional event/comment lines."""
    n = draw(st.integers(1, 4))
    events: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 6))):
        index = draw(st.integers(0, n - 1))
        if draw(st.booleans()):
            delta: dict[str, Any] = {"content": draw(text)}
        else:
            delta = {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": draw(text)},
                    }
                ]
            }
        events.append({"id": "c1", "model": "m", "choices": [{"index": index, "delta": delta}]})
    reasons = st.sampled_from(["stop", "length", "tool_calls", "content_filter"])
    for index in range(n):
        if draw(st.booleans()) or index == 0:
            choice = {"index": index, "delta": {}, "finish_reason": draw(reasons)}
            events.append({"id": "c1", "choices": [choice]})
    if draw(st.booleans()):
        events.append(
            {
                "id": "c1",
                "choices": [],
                "usage": {
                    "prompt_tokens": draw(st.integers(0, 10**6)),
                    "completion_tokens": draw(st.integers(0, 10**6)),
                },
            }
        )
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    out = []
    for event in events:
        lines = [b"data: " + orjson.dumps(event)]
        if draw(st.booleans()):
            lines.insert(0, b": keep-alive comment")
        out.append(eol.join(lines) + eol + eol)
    if draw(st.booleans()):
        out.append(b"data: [DONE]" + eol + eol)
    return b"".join(out), n


def _facts(chunks: list[bytes]) -> tuple[Any, ...]:
    acc = AnswerAccumulator(stream=True)
    for chunk in chunks:
        acc.feed(chunk, 1.0)
    acc.end_of_body(1.0)
    f = acc.facts
    return (
        f.events,
        f.usage,
        f.ordered_finish_reasons(),
        sorted(f.choices),
        f.terminal,
        f.error,
        {k: "".join(v) for k, v in f.outputs.items()},
        f.response_id,
        f.response_model,
        acc.complete(True),
    )


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for p in points:
        pieces.append(data[start:p])
        start = p
    pieces.append(data[start:])
    return pieces


@FAST
@given(chat_streams(), st.lists(st.integers(0, 10**6), max_size=40))
def test_accumulator_ignores_chunking(stream: tuple[bytes, int], cuts: list[int]) -> None:
    data, _ = stream
    whole = _facts([data])
    assert _facts(_split(data, cuts)) == whole
    assert _facts([bytes([b]) for b in data]) == whole  # one byte at a time


@FAST
@given(chat_streams())
def test_accumulator_sees_every_choice_and_usage(stream: tuple[bytes, int]) -> None:
    data, _ = stream
    _, usage, reasons, _, terminal, error, *_ = _facts([data])
    assert error is None
    assert terminal == data.rstrip().endswith(b"[DONE]")
    assert reasons[0] != "error"
    assert (usage is not None) == (b'"usage"' in data)


# -- the canonical key ------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=25,
)
bodies = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


def _call(body: dict[str, Any]) -> LLMCall:
    facts = RequestFacts(
        "POST", "https", "api.openai.com", 443, "/v1/chat/completions", [], {}, orjson.dumps(body)
    )
    return LLMCall("chat", facts, body)


def _key(body: dict[str, Any]) -> str:
    return hash_material(key_material(_call(body), "", ()))


def _reorder(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _reorder(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_reorder(v, rng) for v in value]
    return value


def _floatify(value: Any) -> Any:
    """Every int within float precision written as a float (1 -> 1.0)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int) and abs(value) <= 2**53:
        return float(value)
    if isinstance(value, dict):
        return {k: _floatify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floatify(v) for v in value]
    return value


@FAST
@given(bodies, st.integers(0, 2**32))
def test_key_ignores_member_order(body: dict[str, Any], seed: int) -> None:
    assert _key(_reorder(body, random.Random(seed))) == _key(body)
    # and the body's JSON text form (spacing, member order) does not matter either
    assert _key(orjson.loads(orjson.dumps(_reorder(body, random.Random(seed + 1))))) == _key(body)


@FAST
@given(bodies)
def test_key_ignores_number_form(body: dict[str, Any]) -> None:
    assert _key(_floatify(body)) == _key(body)


@FAST
@given(bodies)
def test_stream_false_is_absent_and_ignored_fields_do_not_count(body: dict[str, Any]) -> None:
    body.pop("stream", None)
    assert _key({**body, "stream": False}) == _key(body)
    assert _key({**body, "stream": True}) != _key(body)
    ignored = {**body, "user": "someone", "metadata": {"a": 1}}
    material = key_material(_call(ignored), "", ("user", "metadata"))
    assert material["body"] == canonical_body(body, ("user", "metadata"))


@FAST
@given(bodies, bodies)
def test_different_canonical_bodies_give_different_keys(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    same = orjson.dumps(canonical_body(a, ()), option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        canonical_body(b, ()), option=orjson.OPT_SORT_KEYS
    )
    assert (_key(a) == _key(b)) == same


# -- the entry codec --------------------------------------------------------------


@st.composite
def entries(draw: Any) -> CacheEntry:
    body = draw(st.binary(max_size=300))
    chunks = None
    if draw(st.booleans()):
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
        edges = [0, *cuts, len(body)]
        chunks = [b - a for a, b in itertools.pairwise(edges)]
    created = draw(st.floats(0, 4e9, allow_nan=False))
    return CacheEntry(
        status=draw(st.integers(200, 299)),
        headers=draw(
            st.lists(
                st.tuples(st.sampled_from(["content-type", "x-request-id"]), st.text(max_size=10)),
                max_size=3,
            )
        ),
        body=body,
        created_at=created,
        chunks=chunks,
        expires_at=draw(st.one_of(st.none(), st.floats(0, 4e9, allow_nan=False))),
        system_fingerprint=draw(st.one_of(st.none(), st.text(max_size=10))),
        summary=draw(st.dictionaries(st.text(max_size=6), json_leaf, max_size=4)),
        key_material=draw(st.dictionaries(st.text(max_size=6), json_values, max_size=4)),
        usage=draw(
            st.one_of(
                st.none(), st.dictionaries(st.text(max_size=6), st.integers(0, 10**9), max_size=3)
            )
        ),
    )


@FAST
@given(entries())
def test_entry_round_trip(entry: CacheEntry) -> None:
    decoded = decode_entry(encode_entry(entry))
    assert decoded == entry
    assert b"".join(decoded.iter_chunks()) == entry.body
    assert encode_entry(decoded) == encode_entry(entry)


def _only_entry_error(data: bytes) -> None:
    try:
        entry = decode_entry(data)
    except EntryError:
        return
    # whatever decodes must be usable by the transport without raising
    entry.expired(1.0)
    entry.iter_chunks()
    assert isinstance(entry.status, int) and 100 <= entry.status <= 599
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in entry.headers)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_raises_only_entry_error(data: bytes) -> None:
    _only_entry_error(data)
    _only_entry_error(MAGIC + data)
    _only_entry_error(MAGIC + b"1\n" + data)


meta_values = st.one_of(
    json_leaf,
    st.lists(json_leaf, max_size=3),
    st.dictionaries(st.text(max_size=4), json_leaf, max_size=3),
)
META_FIELDS = [
    "status",
    "headers",
    "created_at",
    "expires_at",
    "chunks",
    "system_fingerprint",
    "summary",
    "key_material",
    "usage",
]


@settings(max_examples=200, deadline=None)
@given(
    entries(),
    st.dictionaries(st.sampled_from(META_FIELDS), meta_values, max_size=3),
    st.lists(st.sampled_from(META_FIELDS), max_size=2),
)
def test_decode_tampered_metadata_raises_only_entry_error(
    entry: CacheEntry, changes: dict[str, Any], dropped: list[str]
) -> None:
    """Well-framed entries whose metadata fields hold the wrong types."""
    raw = encode_entry(entry)
    header_end = raw.index(b"\n") + 1
    length = int.from_bytes(raw[header_end : header_end + 4], "big")
    meta = orjson.loads(raw[header_end + 4 : header_end + 4 + length])
    meta.update(changes)
    for name in dropped:
        meta.pop(name, None)
    blob = orjson.dumps(meta)
    tampered = raw[:header_end] + len(blob).to_bytes(4, "big") + blob + entry.body
    _only_entry_error(tampered)
