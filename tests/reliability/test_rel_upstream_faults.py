"""Upstream faults: with llmtap in the transport the caller sees exactly what it sees
without it (same exception type and text, same status, headers and bytes), and no
faulty answer is stored. Plain httpx / httpx2 clients (sync and async) and the
openai SDK, against loopback servers only."""

from __future__ import annotations

import asyncio
import gzip
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import orjson
import pytest
from rawserver import FullBacklog, RawServer, Unanswered, http_response
from relsupport import SECRET, chat

import llmtap.httpx2
from llmtap import MemoryCache
from llmtap.testing import FakeUpstream

VOLATILE = {"date", "x-request-id", "x-llmtap-cache", "x-llmtap-cache-key"}
TIMEOUT = 0.5


def _huge_answer() -> bytes:
    content = "x" * (20 * 1024 * 1024)
    return orjson.dumps(
        {
            "id": "chatcmpl-huge",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


@dataclass
class Scenario:
    base_url: str
    arm: Callable[[], None]
    body: dict[str, Any]
    stored: bool = False  # a complete 2xx answer: stored, and the next call is a hit


@contextmanager
def scenario(name: str) -> Iterator[Scenario]:
    """The named fault, armed before each call by ``arm``."""
    plain, streamed = chat(1), chat(1, stream=True)
    if name in ("429", "500", "503", "drop", "error_event", "gzip", "br", "gzip_stream"):
        encoding = {"gzip": "gzip", "gzip_stream": "gzip", "br": "br"}.get(name)
        with FakeUpstream(content_encoding=encoding) as fake:
            arms: dict[str, Callable[[], None]] = {
                "429": lambda: fake.fail_next(429, retry_after=2),
                "500": lambda: fake.fail_next(500),
                "503": lambda: fake.fail_next(503),
                "drop": lambda: fake.drop_stream_after(3),
                "error_event": lambda: fake.error_event_after(2),
            }
            body = streamed if name in ("drop", "error_event", "gzip_stream") else plain
            yield Scenario(fake.base_url, arms.get(name, lambda: None), body,
                           stored=encoding is not None)  # fmt: skip
        return
    if name in ("read_timeout", "malformed_sse", "non_json_200", "huge", "gzip_garbage"):
        response = {
            "read_timeout": None,
            "malformed_sse": http_response(
                b'data: {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
                b"data: {not json at all\n\nretry: x\n\nevent\n\ndata: [DONE]\n\n",
                content_type="text/event-stream",
                chunked=True,
            ),
            "non_json_200": http_response(b"<html>upstream proxy says hello</html>"),
            "huge": http_response(_huge_answer()),
            "gzip_garbage": http_response(
                gzip.compress(b'{"ok": 1}')[:12] + b"garbage!",
                extra=[("content-encoding", "gzip")],
            ),
        }[name]
        server = RawServer(response)
        try:
            body = streamed if name == "malformed_sse" else plain
            yield Scenario(server.base_url, lambda: None, body, stored=name == "huge")
        finally:
            server.close()
        return
    target = FullBacklog() if name == "connect_timeout" else Unanswered()
    try:
        yield Scenario(target.base_url, lambda: None, plain)
    finally:
        target.close()


FAULTS = ["429", "500", "503", "drop", "error_event", "malformed_sse", "non_json_200",
          "read_timeout", "connect_timeout", "refused", "gzip_garbage"]  # fmt: skip
SUCCESSES = ["gzip", "gzip_stream", "br", "huge"]


@dataclass
class Seen:
    status: int | None
    headers: list[tuple[str, str]] | None
    raw: bytes
    error: tuple[type, str] | None
    cache: str | None = None

    def same_as(self, other: Seen) -> None:
        assert self.error == other.error
        assert self.status == other.status
        assert self.headers == other.headers
        assert self.raw == other.raw


def _client(lib_name: str, io: str, cache: Any) -> Any:
    lib = importlib.import_module(lib_name)
    kw: dict[str, Any] = {"timeout": lib.Timeout(TIMEOUT)}
    if cache is not None:
        shells = importlib.import_module(f"llmtap.{lib_name}")
        cls = shells.Transport if io == "sync" else shells.AsyncTransport
        kw["transport"] = cls(cache=cache, cache_when="always", metrics=None)
    return (lib.Client if io == "sync" else lib.AsyncClient)(**kw)


def _seen(response: Any, chunks: list[bytes], error: BaseException | None) -> Seen:
    headers = None
    if response is not None:
        headers = [(k, v) for k, v in response.headers.multi_items() if k not in VOLATILE]
    return Seen(
        response.status_code if response is not None else None,
        headers,
        b"".join(chunks),
        (type(error), str(error)) if error is not None else None,
        response.headers.get("x-llmtap-cache") if response is not None else None,
    )


def call(lib_name: str, io: str, url: str, body: dict[str, Any], cache: Any = None) -> Seen:
    client = _client(lib_name, io, cache)
    headers = {"authorization": f"Bearer {SECRET}"}
    if io == "async":
        return asyncio.run(_acall(client, url, body, headers))
    response, chunks, error = None, [], None
    with client:
        try:
            with client.stream("POST", url, json=body, headers=headers) as response:
                for chunk in response.iter_raw():
                    chunks.append(chunk)
        except Exception as exc:
            error = exc
    return _seen(response, chunks, error)


async def _acall(client: Any, url: str, body: dict[str, Any], headers: dict[str, str]) -> Seen:
    response, chunks, error = None, [], None
    async with client:
        try:
            async with client.stream("POST", url, json=body, headers=headers) as response:
                async for chunk in response.aiter_raw():
                    chunks.append(chunk)
        except Exception as exc:
            error = exc
    return _seen(response, chunks, error)


@pytest.mark.parametrize("io", ["sync", "async"])
@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
@pytest.mark.parametrize("name", FAULTS)
def test_fault_is_seen_as_without_llmtap_and_never_stored(
    lib_name: str, io: str, name: str
) -> None:
    with scenario(name) as s:
        url = s.base_url + "/chat/completions"
        s.arm()
        without = call(lib_name, io, url, s.body)
        cache = MemoryCache()
        s.arm()
        with_llmtap = call(lib_name, io, url, s.body, cache)
        with_llmtap.same_as(without)
        assert with_llmtap.cache in (None, "miss")
        assert len(cache) == 0, f"{name}: a faulty answer was stored"


# the 20 MB answer runs once per library, not four times, to keep the suite fast
SUCCESS_CASES = [
    *[(n, lib, io) for n in SUCCESSES if n != "huge" for lib in ("httpx", "httpx2")
      for io in ("sync", "async")],
    ("huge", "httpx", "async"),
    ("huge", "httpx2", "sync"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "lib_name", "io"), SUCCESS_CASES)
def test_encoded_and_huge_answers_pass_through_then_hit(lib_name: str, io: str, name: str) -> None:
    with scenario(name) as s:
        url = s.base_url + "/chat/completions"
        without = call(lib_name, io, url, s.body)
        cache = MemoryCache()
        first = call(lib_name, io, url, s.body, cache)
        first.same_as(without)  # raw (still compressed) bytes, unchanged
        assert first.cache == "miss"
        assert len(cache) == 1
        hit = call(lib_name, io, url, s.body, cache)
        assert hit.cache == "hit" and hit.status == without.status
        # a hit serves the decoded body, without content-encoding
        assert hit.raw == _decoded(lib_name, without)
        assert hit.headers is not None
        assert not any(k == "content-encoding" for k, _ in hit.headers)


def _decoded(lib_name: str, seen: Seen) -> bytes:
    lib = importlib.import_module(lib_name)
    response = lib.Response(seen.status or 0, headers=seen.headers or [], content=seen.raw)
    return bytes(response.content)


# -- the openai SDK ------------------------------------------------------------


def _sdk_outcome(s: Scenario, with_llmtap: bool, is_async: bool, cache: Any) -> Any:
    transport_kw: dict[str, Any] = {}
    if with_llmtap:
        cls = llmtap.httpx2.AsyncTransport if is_async else llmtap.httpx2.Transport
        transport_kw["transport"] = cls(cache=cache, cache_when="always", metrics=None)
    kw = {"api_key": SECRET, "base_url": s.base_url, "max_retries": 0, "timeout": TIMEOUT}
    body = dict(s.body)
    stream = bool(body.pop("stream", False))
    body.pop("stream_options", None)
    s.arm()
    if is_async:
        return asyncio.run(_async_sdk(kw, transport_kw, body, stream))
    client = openai.OpenAI(http_client=httpx2.Client(**transport_kw), **kw)
    try:
        if stream:
            return [
                c.model_dump_json() for c in client.chat.completions.create(stream=True, **body)
            ]
        return client.chat.completions.create(**body).model_dump_json()
    except Exception as exc:  # APIError, or e.g. the JSONDecodeError of a bad SSE line
        return _sdk_error(exc)
    finally:
        client.close()


async def _async_sdk(kw: dict[str, Any], tkw: dict[str, Any], body: Any, stream: bool) -> Any:
    client = openai.AsyncOpenAI(http_client=httpx2.AsyncClient(**tkw), **kw)
    try:
        if stream:
            chunks = await client.chat.completions.create(stream=True, **body)
            return [c.model_dump_json() async for c in chunks]
        return (await client.chat.completions.create(**body)).model_dump_json()
    except Exception as exc:
        return _sdk_error(exc)
    finally:
        await client.close()


def _sdk_error(exc: Exception) -> tuple[Any, ...]:
    response = getattr(exc, "response", None)
    return (
        type(exc),
        str(exc),
        getattr(exc, "status_code", None),
        getattr(exc, "body", None),
        None if response is None else response.headers.get("retry-after"),
        None if response is None else response.headers.get("x-should-retry"),
    )


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name", [*FAULTS, "gzip_stream", "br"])
def test_openai_sdk_sees_the_same(name: str, is_async: bool) -> None:
    with scenario(name) as s:
        without = _sdk_outcome(s, False, is_async, None)
        cache = MemoryCache()
        with_llmtap = _sdk_outcome(s, True, is_async, cache)
        assert with_llmtap == without
        assert len(cache) == (1 if s.stored else 0)
