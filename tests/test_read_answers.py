"""Answers that arrive already read (MockTransport handlers returning ``content=``),
and a transport with nothing to do: what the caller reads and what is stored."""

from __future__ import annotations

import asyncio
import gzip
import importlib
from typing import Any

import orjson
import pytest
from opentelemetry.trace import NoOpTracerProvider

from llmtap import MemoryCache

ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
)
SSE = (
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}'
    b"\n\n"
    b"data: [DONE]\n\n"
)
BODY = {"model": "gpt-4o-mini", "seed": 1, "messages": [{"role": "user", "content": "hi"}]}


def calls(
    lib_name: str, io: str, handler: Any, n: int, body: dict[str, Any] = BODY, **kw: Any
) -> list[Any]:
    """``n`` identical POSTs through an llmtap transport; each response, read."""
    lib = importlib.import_module(lib_name)
    shells = importlib.import_module(f"llmtap.{lib_name}")
    kw.setdefault("cache", MemoryCache())
    kw.setdefault("metrics", None)
    url = "https://api.openai.com/v1/chat/completions"
    if io == "sync":
        transport = shells.Transport(transport=lib.MockTransport(handler), **kw)
        with lib.Client(transport=transport) as client:
            return [client.post(url, json=body) for _ in range(n)]

    async def run() -> list[Any]:
        transport = shells.AsyncTransport(transport=lib.MockTransport(handler), **kw)
        async with lib.AsyncClient(transport=transport) as client:
            return [await client.post(url, json=body) for _ in range(n)]

    return asyncio.run(run())


def handler_of(lib_name: str, content: bytes, **headers: str) -> Any:
    lib = importlib.import_module(lib_name)
    sent: list[bytes] = []

    def handle(request: Any) -> Any:
        sent.append(request.read())
        return lib.Response(200, headers=headers, content=content)

    handle.sent = sent  # type: ignore[attr-defined]
    return handle


def test_an_already_read_answer_is_stored_and_replayed(lib_name: str, io: str) -> None:
    handler = handler_of(lib_name, ANSWER, **{"content-type": "application/json"})
    first, second = calls(lib_name, io, handler, 2)
    assert [r.headers["x-llmtap-cache"] for r in (first, second)] == ["miss", "hit"]
    assert first.content == second.content == ANSWER
    assert len(handler.sent) == 1


def test_an_already_read_gzip_answer_is_stored_decoded(lib_name: str, io: str) -> None:
    """The library decoded the body while reading it: llmtap must not decode it again."""
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    handler = handler_of(lib_name, gzip.compress(ANSWER), **headers)
    first, second = calls(lib_name, io, handler, 2)
    assert first.content == second.content == ANSWER
    assert second.headers["x-llmtap-cache"] == "hit"
    assert "content-encoding" not in second.headers


def test_an_already_read_stream_hides_the_injected_usage_chunk(lib_name: str, io: str) -> None:
    handler = handler_of(lib_name, SSE, **{"content-type": "text/event-stream"})
    body = {**BODY, "stream": True}
    (response,) = calls(lib_name, io, handler, 1, body=body, ensure_stream_usage=True)
    assert b'"usage"' not in response.content and response.content.endswith(b"[DONE]\n\n")
    assert b'"include_usage":true' in handler.sent[0]


def test_a_transport_with_nothing_to_do_only_labels(lib_name: str, io: str) -> None:
    handler = handler_of(lib_name, ANSWER, **{"content-type": "application/json"})
    off = {"cache": None, "tracer_provider": NoOpTracerProvider(), "metrics": None}
    responses = calls(lib_name, io, handler, 2, **off)
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["bypass", "bypass"]
    assert all(r.extensions["llmtap_cache"] == "bypass" for r in responses)
    assert "x-llmtap-cache-key" not in responses[0].headers
    assert [orjson.loads(sent) for sent in handler.sent] == [BODY, BODY]
    assert all(r.content == ANSWER for r in responses)


@pytest.fixture(params=["httpx", "httpx2"])
def lib_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["sync", "async"])
def io(request: pytest.FixtureRequest) -> str:
    return str(request.param)
