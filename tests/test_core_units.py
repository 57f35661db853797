"""Pure core pieces: control parsing, the entry codec, the answer accumulator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtap._core.answer import AnswerAccumulator
from llmtap._core.control import ControlError, parse_extension, parse_header, read_control
from llmtap._core.entry import CacheEntry, EntryError, decode_entry, encode_entry
from llmtap._core.policy import decide, resolve_cache_when, resolve_mode


def test_control_header_forms() -> None:
    c = parse_header("no-store, ttl=60, namespace=tests")
    assert (c.directive, c.ttl, c.namespace) == ("no-store", 60.0, "tests")
    assert not parse_header("refresh").read and parse_header("refresh").write
    assert read_control("no-cache", {"cache": "no-store"}).directive == "no-store"
    for bad in ("", "forever", "ttl=0", "ttl=inf", "no-cache, refresh", "namespace="):
        with pytest.raises(ControlError):
            parse_header(bad)
    for bad_ext in ({"cache": "x"}, {"ttl": True}, {"other": 1}, ["no-cache"]):
        with pytest.raises(ControlError):
            parse_extension(bad_ext)


def test_unknown_mode_and_cache_when_fail_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="allowed: read_write, read_only, replay, record, off"):
        resolve_mode("sometimes")
    monkeypatch.setenv("LLMTAP_MODE", "replay")
    assert resolve_mode(None) == "replay" and resolve_mode("off") == "off"
    monkeypatch.setenv("LLMTAP_MODE", "bogus")
    with pytest.raises(ValueError, match="LLMTAP_MODE"):
        resolve_mode(None)
    with pytest.raises(ValueError, match="cache_when"):
        resolve_cache_when("sometimes")  # type: ignore[arg-type]


def test_seeded_policy_counts_integer_seeds_only() -> None:
    seeded = resolve_cache_when("seeded")
    assert seeded({"seed": 1}) and seeded({"seed": 2.0})
    assert not seeded({"seed": True}) and not seeded({"seed": "1"}) and not seeded({"seed": 1.5})
    deterministic = resolve_cache_when("deterministic")
    assert deterministic({"temperature": 0}) and not deterministic({"temperature": False})


def test_replay_never_sends() -> None:
    from llmtap._core.control import NO_CONTROL, parse_header

    assert decide("replay", False, NO_CONTROL).offline
    assert not decide("replay", True, parse_header("no-cache")).read
    assert decide("record", True, NO_CONTROL).write and not decide("record", True, NO_CONTROL).read


def entry(chunks: list[int] | None = None, body: bytes = b"abcdef") -> CacheEntry:
    return CacheEntry(
        status=200,
        headers=[("content-type", "text/event-stream")],
        body=body,
        created_at=1.5,
        chunks=chunks,
        system_fingerprint="fp",
        summary={"model": "m"},
        key_material={"body": {"model": "m"}},
        usage={"prompt_tokens": 1},
    )


def test_entry_round_trip_keeps_chunk_boundaries() -> None:
    decoded = decode_entry(encode_entry(entry([1, 2, 3])))
    assert decoded.iter_chunks() == [b"a", b"bc", b"def"]
    assert decoded.system_fingerprint == "fp" and decoded.usage == {"prompt_tokens": 1}


def test_format_1_entries_written_before_the_key_material_section_still_serve() -> None:
    import orjson

    meta = {
        "status": 200, "headers": [["content-type", "text/event-stream"]], "created_at": 1.5,
        "expires_at": None, "chunks": [1, 2, 3], "system_fingerprint": "fp",
        "summary": {"model": "m"}, "key_material": {"body": {"model": "m"}}, "usage": None,
    }  # fmt: skip
    blob = orjson.dumps(meta)
    old = b"llmtap-entry:1\n" + len(blob).to_bytes(4, "big") + blob + b"abcdef"
    decoded = decode_entry(old)
    assert decoded.iter_chunks() == [b"a", b"bc", b"def"]
    assert decoded.key_material == {"body": {"model": "m"}} and decoded.response is None


def test_a_hit_reads_no_key_material_but_the_cli_does() -> None:
    raw = encode_entry(entry([1, 2, 3]))
    assert decode_entry(raw, material=False).key_material == {}
    assert decode_entry(raw).key_material == {"body": {"model": "m"}}
    broken = raw.replace(b'{"body":{"model":"m"}}', b'{"body":{"model":"m"}]')
    assert decode_entry(broken, material=False).iter_chunks() == [b"a", b"bc", b"def"]
    with pytest.raises(EntryError, match="key material"):
        decode_entry(broken)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x80\x04\x95pickle",
        b"llmtap-entry:2\n\x00\x00\x00\x02{}",
        encode_entry(entry([1, 2, 3]))[:-2],
        encode_entry(entry([1, 2, 3])).replace(b'"status":200', b'"status":"x"'),
        b"llmtap-entry:1\n\x00\x00\x00\x05[1,2]",
    ],
)
def test_unreadable_entries_raise_entry_error(raw: bytes) -> None:
    with pytest.raises(EntryError):
        decode_entry(raw)


STREAM = (
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}},'
    b'{"index":1,"delta":{"content":"Yo"}}]}\n\n'
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"},'
    b'{"index":1,"delta":{},"finish_reason":"length"}]}\n\n'
    b'data: {"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}'
    b"\n\n"
    b"data: [DONE]\n\n"
)


@given(st.lists(st.integers(1, len(STREAM) - 1), max_size=12))
def test_accumulator_is_blind_to_chunking(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    acc = AnswerAccumulator(stream=True)
    for i, piece in enumerate(pieces):
        acc.feed(piece.replace(b"\n", b"\r\n") if i % 2 else piece, float(i))
    acc.end_of_body(99.0)
    facts = acc.facts
    assert facts.terminal and acc.complete(ended=False)
    assert facts.ordered_finish_reasons() == ["stop", "length"]
    assert facts.usage == {"prompt_tokens": 5, "completion_tokens": 2}
    assert facts.response_id == "c" and facts.first_token_at is not None


def test_stream_without_done_is_complete_only_when_every_choice_finished() -> None:
    acc = AnswerAccumulator(stream=True)
    acc.feed(STREAM.split(b"data: [DONE]")[0], 0.0)
    assert not acc.complete(ended=False) and acc.complete(ended=True)
    partial = AnswerAccumulator(stream=True)
    partial.feed(STREAM[: STREAM.index(b'"finish_reason":"stop"')], 0.0)
    assert not partial.complete(ended=True)
    errored = AnswerAccumulator(stream=True)
    errored.feed(b'data: {"error": {"message": "boom"}}\n\ndata: [DONE]\n\n', 0.0)
    assert errored.facts.error == "boom" and not errored.complete(ended=True)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "gzip, br"])
def test_decoder_undoes_every_supported_encoding_incrementally(encoding: str) -> None:
    import gzip
    import zlib

    import brotli
    import zstandard

    from llmtap._core.decode import Decoder

    plain = b"data: " + b"x" * 5000 + b"\n\n"
    encoders = {
        "gzip": gzip.compress,
        "deflate": zlib.compress,
        "br": brotli.compress,
        "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
    }
    data = plain
    for name in [n.strip() for n in encoding.split(",")]:
        data = encoders[name](data)
    decoder = Decoder(encoding)
    out = b"".join(decoder.decode(data[i : i + 7]) for i in range(0, len(data), 7))
    assert out + decoder.flush() == plain


def test_unknown_encoding_is_refused() -> None:
    from llmtap._core.decode import Decoder, UnsupportedEncoding

    with pytest.raises(UnsupportedEncoding):
        Decoder("compress")


def _one_choice_stream(words: int) -> bytes:
    head = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant"},'
    events = [head + b'"finish_reason":null}]}\n\n']
    for i in range(words):
        events.append(
            b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"w%d "},'
            b'"finish_reason":null}],"usage":null}\n\n' % i
        )
    events.append(
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"length"}]'
        b',"usage":null}\n\n'
    )
    events.append(
        b'data: {"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":3,'
        b'"completion_tokens":%d}}\n\ndata: [DONE]\n\n' % words
    )
    return b"".join(events)


def _tricky_stream() -> bytes:
    """Middle chunks whose text a shortcut could misread: escaped quotes and backslashes,
    escaped newlines, and a "text" that closes the string and smuggles in a finish reason
    and a second choice between the same bytes a plain chunk has around its text."""
    head = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"'
    tail = b'"},"finish_reason":null}],"usage":null}\n\n'
    texts = [b"w%d " % i for i in range(12)] + [
        rb"say \"hi\"",
        b"back\\\\",  # a text ending in a backslash, escaped
        rb"line\nbreak",
        b"plain again",
        b'a"},"finish_reason":"length"},{"index":1,"delta":{"content":"b',
        b"after the smuggled choice",
    ]
    finish = b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},'
    middle = b"".join(head + text + tail for text in texts)
    return _one_choice_stream(3).replace(finish, middle + finish, 1)


@pytest.mark.parametrize(
    "stream",
    [
        _one_choice_stream(30),
        _tricky_stream(),
        _one_choice_stream(30).replace(b'":', b'": '),  # json.dumps spacing
        _one_choice_stream(30).replace(b',"finish_reason":null', b""),  # key left out
        STREAM,
        STREAM.replace(b'":', b'": '),
    ],
    ids=["n1", "tricky-texts", "n1-spaced", "n1-no-finish-key", "n2", "n2-spaced"],
)
def test_skipping_middle_chunks_without_content_capture_keeps_every_fact(
    stream: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmtap._core.answer as answer

    parsed: list[bytes] = []
    loads = answer.orjson.loads
    monkeypatch.setattr(answer, "orjson", type("J", (), {"loads": staticmethod(
        lambda raw: parsed.append(raw) or loads(raw)), "JSONDecodeError": ValueError}))  # fmt: skip

    def facts(keep_text: bool) -> object:
        acc = AnswerAccumulator(stream=True, keep_text=keep_text, chunk_times=True)
        for i, event in enumerate(stream.split(b"\n\n")[:-1]):
            acc.feed(event + b"\n\n", float(i))
        acc.end_of_body(999.0)
        assert acc.complete(ended=True)
        f = acc.facts
        return (f.usage, f.ordered_finish_reasons(), f.response_id, f.first_token_at,
                f.last_token_at, f.terminal, f.events, f.first_chunk_at,
                f.chunk_times)  # fmt: skip

    skipping = facts(keep_text=False)
    parsed_when_skipping = len(parsed)
    assert skipping == facts(keep_text=True)
    if stream.count(b"data:") > 20:  # the one-choice streams: middle chunks go unparsed
        assert parsed_when_skipping < 10 < len(parsed) - parsed_when_skipping
