"""``ensure_stream_usage``: every stream is metered, and the caller sees the same stream."""

from __future__ import annotations

from typing import Any

import httpx
import httpx2
import openai
import orjson
import pytest
from prometheus_client import CollectorRegistry

import llmtap.httpx
import llmtap.httpx2
from conftest import metric_sum
from llmtap import MemoryCache, Metrics
from llmtap.testing import FakeUpstream

MESSAGES = [{"role": "user", "content": "Count the tokens, please."}]


def _client(fake: FakeUpstream, ensure: bool, registry: CollectorRegistry) -> openai.OpenAI:
    transport = llmtap.httpx2.Transport(
        transport=httpx2.MockTransport(fake),
        cache=MemoryCache(),
        metrics=Metrics(registry=registry),
        ensure_stream_usage=ensure,
    )
    return openai.OpenAI(
        api_key="sk-test",
        base_url="https://api.openai.com/v1",
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


def _tokens(registry: CollectorRegistry) -> float:
    return metric_sum(registry, "llmtap_tokens_total")


def _missing(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value(
        "llmtap_stream_usage_missing_total",
        {"operation": "chat", "provider": "openai", "model": "gpt-4o-mini"},
    )
    return value or 0.0


@pytest.mark.parametrize("seed", [1, None], ids=["cached", "uncached"])
def test_caller_parses_the_same_stream_and_tokens_are_counted(seed: int | None) -> None:
    runs: dict[bool, list[dict[str, Any]]] = {}
    registries = {True: CollectorRegistry(), False: CollectorRegistry()}
    for ensure in (False, True):
        fake = FakeUpstream()
        with _client(fake, ensure, registries[ensure]) as client:
            extra: dict[str, Any] = {} if seed is None else {"seed": seed}
            for _ in range(2):  # the second is a hit when seeded
                stream = client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True, **extra
                )
                runs[ensure] = [chunk.model_dump() for chunk in stream]
        sent = fake.requests[0].json
        assert sent is not None
        assert ("stream_options" in sent) is ensure
    assert runs[True] == runs[False]
    assert all(chunk["choices"] for chunk in runs[True])  # no usage-only chunk reached the caller
    assert _tokens(registries[False]) == 0 and _missing(registries[False]) >= 1
    assert _tokens(registries[True]) > 0 and _missing(registries[True]) == 0


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
async def test_bytes_match_a_stream_that_never_asked(lib_name: str) -> None:
    lib: Any = httpx if lib_name == "httpx" else httpx2
    shells: Any = llmtap.httpx if lib_name == "httpx" else llmtap.httpx2
    fake = FakeUpstream()
    body = {"model": "m", "seed": 3, "messages": MESSAGES, "stream": True}
    url = "https://api.openai.com/v1/chat/completions"
    plain = fake(lib.Request("POST", url, json=body)).read()
    transport = shells.AsyncTransport(
        transport=lib.MockTransport(fake),
        cache=MemoryCache(),
        metrics=None,
        ensure_stream_usage=True,
    )
    async with lib.AsyncClient(transport=transport) as client:
        seen = []
        for _ in range(2):
            async with client.stream("POST", url, json=body) as response:
                seen.append(b"".join([c async for c in response.aiter_raw()]))
    # Byte for byte: no usage-only chunk, and no "usage":null that asking added to each.
    assert seen[0] == plain
    assert seen[1] == seen[0]  # the stored answer is what the caller saw
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}  # injected


def test_a_request_that_asked_for_usage_is_sent_byte_for_byte() -> None:
    fake = FakeUpstream()
    transport = llmtap.httpx2.Transport(
        transport=httpx2.MockTransport(fake), cache=None, metrics=None, ensure_stream_usage=True
    )
    raw = b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'
    with httpx2.Client(transport=transport) as client:
        response = client.post("https://api.openai.com/v1/chat/completions", content=raw)
    assert b'"choices":[]' in response.content  # the caller asked for it: not hidden
    assert fake.requests[0].body == raw


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_compressed_stream_hides_the_usage_chunk_too(make_harness: Any, encoding: str) -> None:
    """Providers compress event streams when the client accepts it (httpx always
    does): the injected usage chunk must stay hidden there as well, from the caller
    and from the stored entry a transport without the option later replays."""
    registry = CollectorRegistry()
    cache = MemoryCache()
    tapped = make_harness(cache=cache, metrics=Metrics(registry=registry), ensure_stream_usage=True)
    tapped.fake.content_encoding = encoding
    body = {"model": "gpt-4o-mini", "seed": 3, "messages": MESSAGES, "stream": True}
    first = tapped.post(body)
    # handed over decoded, so the header that would make the client decode again is gone
    assert "content-encoding" not in first.headers
    assert first.headers["x-llmtap-cache"] == "miss"
    events = [e for e in b"".join(first.chunks).split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert all(orjson.loads(e[6:])["choices"] for e in events[:-1])  # no usage-only chunk
    assert tapped.fake.requests[-1].json["stream_options"] == {"include_usage": True}
    assert _tokens(registry) > 0
    replayed = make_harness(cache=cache).post(body)
    assert replayed.headers["x-llmtap-cache"] == "hit"
    assert b"".join(replayed.chunks) == b"".join(first.chunks)


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_corrupt_compressed_stream_fails_as_the_library_would(
    lib_name: str, is_async: bool
) -> None:
    """Decoded for the caller, a corrupt gzip stream cannot fall back to passing the raw
    bytes through: the caller gets the library's own DecodingError, nothing is stored,
    and the call is reported as an interrupted stream."""
    lib: Any = httpx if lib_name == "httpx" else httpx2
    shells: Any = llmtap.httpx if lib_name == "httpx" else llmtap.httpx2
    garbage = [b"\x1f\x8b\x08\x00 this is not gzip at all", b"\x00" * 32]
    headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}

    def handler(request: Any) -> Any:
        stream = lib.AsyncByteStream if is_async else lib.SyncByteStream

        class Body(stream):  # type: ignore[misc,valid-type]
            def __iter__(self) -> Any:
                yield from garbage

            async def __aiter__(self) -> Any:
                for chunk in garbage:
                    yield chunk

        return lib.Response(200, headers=headers, stream=Body())

    registry = CollectorRegistry()
    cache = MemoryCache()
    cls = shells.AsyncTransport if is_async else shells.Transport
    transport = cls(
        transport=lib.MockTransport(handler),
        cache=cache,
        metrics=Metrics(registry=registry),
        ensure_stream_usage=True,
    )
    body = {"model": "m", "seed": 3, "messages": MESSAGES, "stream": True}
    url = "https://api.openai.com/v1/chat/completions"
    with pytest.raises(lib.DecodingError, match="could not decode"):
        if is_async:
            async with lib.AsyncClient(transport=transport) as client:
                await client.post(url, json=body)
        else:
            with lib.Client(transport=transport) as client:
                client.post(url, json=body)
    assert len(cache) == 0
    labels = {"operation": "chat", "provider": "openai", "model": "m"}
    interrupted = {**labels, "error_type": "stream_interrupted"}
    assert registry.get_sample_value("llmtap_request_errors_total", interrupted) == 1
