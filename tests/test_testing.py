"""Tests for ``llmtap.testing.FakeUpstream``: the real openai SDK, httpx and httpx2 against it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import httpx2
import openai
import pytest

from llmtap.testing import FakeUpstream, ReceivedRequest

MODES = ["mock", "server"]
CHAT = "http://fake.test/v1/chat/completions"
HELLO = [{"role": "user", "content": "Say hello to the fake upstream."}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        },
    },
}


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "seed": 7, "messages": HELLO, **extra}


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fake(mode: str) -> Iterator[FakeUpstream]:
    upstream = FakeUpstream()
    if mode == "server":
        with upstream:
            yield upstream
    else:
        yield upstream


def _base_url(fake: FakeUpstream, mode: str) -> str:
    return fake.base_url if mode == "server" else "http://fake.test/v1"


@pytest.fixture
def client(fake: FakeUpstream, mode: str) -> Iterator[openai.OpenAI]:
    transport = httpx2.MockTransport(fake) if mode == "mock" else httpx2.HTTPTransport()
    with (
        httpx2.Client(transport=transport) as http,
        openai.OpenAI(
            api_key="sk-test", base_url=_base_url(fake, mode), http_client=http, max_retries=0
        ) as sdk,
    ):
        yield sdk


@pytest.fixture
async def aclient(fake: FakeUpstream, mode: str) -> AsyncIterator[openai.AsyncOpenAI]:
    transport = httpx2.MockTransport(fake) if mode == "mock" else httpx2.AsyncHTTPTransport()
    async with (
        httpx2.AsyncClient(transport=transport) as http,
        openai.AsyncOpenAI(
            api_key="sk-test", base_url=_base_url(fake, mode), http_client=http, max_retries=0
        ) as sdk,
    ):
        yield sdk


def serving(fake: FakeUpstream, mode: str) -> contextlib.AbstractContextManager[object]:
    return fake if mode == "server" else contextlib.nullcontext()


def sse_data(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]


# ---------------------------------------------------------------- chat completions


def test_chat_non_stream_is_a_complete_openai_answer(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(**chat_body())
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.system_fingerprint == "fp_llmtap_fake"
    assert r.model == "gpt-4o-mini"
    [choice] = r.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.refusal is None
    words = (choice.message.content or "").split()
    assert 12 <= len(words) <= 30
    assert r.usage is not None
    assert r.usage.completion_tokens == len(words)
    assert r.usage.prompt_tokens == 6 + 3  # six words, one message
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details is not None
    assert r.usage.completion_tokens_details.reasoning_tokens == 0


def test_chat_stream_spells_the_non_stream_answer(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(**chat_body()).choices[0].message.content
    with client.chat.completions.create(**chat_body(), stream=True) as stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" and c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == full
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert len(chunks) == len(text.split()) + 2  # role chunk, one per word, finish chunk
    assert len({c.id for c in chunks}) == 1


def test_n_gives_distinct_deterministic_choices(client: openai.OpenAI) -> None:
    one = client.chat.completions.create(**chat_body())
    two = client.chat.completions.create(**chat_body(n=2))
    assert [c.index for c in two.choices] == [0, 1]
    assert two.choices[0].message.content == one.choices[0].message.content
    assert two.choices[1].message.content != two.choices[0].message.content
    assert two.usage is not None
    assert two.usage.completion_tokens == sum(
        len((c.message.content or "").split()) for c in two.choices
    )
    with client.chat.completions.create(**chat_body(n=2), stream=True) as stream:
        texts = ["", ""]
        for chunk in stream:
            for c in chunk.choices:
                texts[c.index] += c.delta.content or ""
    assert texts == [c.message.content for c in two.choices]


@pytest.mark.parametrize("limit", ["max_tokens", "max_completion_tokens"])
def test_token_limit_truncates_with_finish_reason_length(client: openai.OpenAI, limit: str) -> None:
    full = client.chat.completions.create(**chat_body()).choices[0].message.content or ""
    cut = client.chat.completions.create(**chat_body(**{limit: 3}))
    assert cut.choices[0].finish_reason == "length"
    assert (cut.choices[0].message.content or "").split() == full.split()[:3]
    assert cut.usage is not None and cut.usage.completion_tokens == 3
    with client.chat.completions.create(**chat_body(**{limit: 3}), stream=True) as stream:
        reasons = [c.choices[0].finish_reason for c in stream if c.choices]
    assert reasons[-1] == "length"


def test_tools_give_one_tool_call(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(**chat_body(tools=[WEATHER_TOOL]))
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "days"}
    assert isinstance(args["city"], str) and isinstance(args["days"], int)

    with client.chat.completions.create(**chat_body(tools=[WEATHER_TOOL]), stream=True) as s:
        chunks = [c for c in s if c.choices]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id == call.id
    assert deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert len(deltas) > 2  # arguments arrive in fragments
    assert "".join((d.function.arguments or "") for d in deltas if d.function) == (
        call.function.arguments
    )
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_include_usage_adds_a_final_usage_chunk(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(**chat_body())
    with client.chat.completions.create(
        **chat_body(), stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    *body, last = chunks
    assert last.choices == []
    assert last.usage == plain.usage
    assert all(c.usage is None and c.choices for c in body)
    assert "".join(c.choices[0].delta.content or "" for c in body) == (
        plain.choices[0].message.content
    )


def test_usage_reports_cached_and_reasoning_tokens(client: openai.OpenAI) -> None:
    long_prompt = [{"role": "user", "content": "word " * 60}]
    r = client.chat.completions.create(model="gpt-4o", messages=long_prompt)
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    cached = r.usage.prompt_tokens_details.cached_tokens or 0
    assert 0 < cached <= r.usage.prompt_tokens and cached % 16 == 0

    for extra in ({"model": "o3-mini"}, {"model": "gpt-5", "reasoning_effort": "low"}):
        r = client.chat.completions.create(**{**chat_body(), **extra})
        assert r.usage is not None and r.usage.completion_tokens_details is not None
        reasoning = r.usage.completion_tokens_details.reasoning_tokens or 0
        visible = len((r.choices[0].message.content or "").split())
        assert reasoning > 0
        assert r.usage.completion_tokens == visible + reasoning


async def test_async_chat_stream_and_non_stream(aclient: openai.AsyncOpenAI) -> None:
    r = await aclient.chat.completions.create(**chat_body())
    stream = await aclient.chat.completions.create(
        **chat_body(), stream=True, stream_options={"include_usage": True}
    )
    async with stream:
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    assert chunks[-1].usage == r.usage


# ---------------------------------------------------------------- other endpoints


def test_embeddings_default_base64_and_float_agree(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    default = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "b c"])
    floats = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "b c"], encoding_format="float"
    )
    assert [d.index for d in default.data] == [0, 1]
    assert [d.embedding for d in default.data] == [d.embedding for d in floats.data]
    first = default.data[0].embedding
    assert len(first) == 8
    assert math.isclose(sum(v * v for v in first), 1.0, rel_tol=1e-5)
    assert default.data[0].embedding != default.data[1].embedding
    assert default.usage.prompt_tokens == 3
    sent = [r.json for r in fake.requests]
    assert sent[0] is not None and sent[0]["encoding_format"] == "base64"  # the SDK's default
    assert sent[1] is not None and sent[1]["encoding_format"] == "float"


def test_embeddings_dimensions_and_raw_base64(fake: FakeUpstream, mode: str) -> None:
    with _httpx_client(fake, mode) as http:
        body = {"model": "m", "input": "one", "dimensions": 4, "encoding_format": "base64"}
        raw = http.post(_url(fake, mode, "/embeddings"), json=body).json()
    vector = struct.unpack("<4f", base64.b64decode(raw["data"][0]["embedding"]))
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-5)


async def test_async_embeddings(aclient: openai.AsyncOpenAI) -> None:
    e = await aclient.embeddings.create(model="m", input="hello", dimensions=16)
    assert len(e.data[0].embedding) == 16


def test_legacy_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon", seed=1)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.choices[0].finish_reason == "stop"
    cut = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Once upon", seed=1, max_tokens=2
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.choices[0].text.split() == r.choices[0].text.split()[:2]
    with client.completions.create(
        model="gpt-3.5-turbo-instruct",
        prompt="Once upon",
        seed=1,
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage == r.usage


def test_responses_non_stream(client: openai.OpenAI) -> None:
    r = client.responses.create(model="gpt-4o", input="Tell me something.")
    assert r.object == "response" and r.id.startswith("resp_") and r.status == "completed"
    [item] = r.output
    assert item.type == "message" and item.status == "completed" and item.role == "assistant"
    assert item.content[0].type == "output_text"
    assert r.output_text and r.output_text.endswith(".")
    assert r.usage is not None
    assert r.usage.output_tokens == len(r.output_text.split())
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.output_tokens_details.reasoning_tokens == 0

    reasoning = client.responses.create(model="o3-mini", input="Tell me something.")
    assert reasoning.usage is not None
    assert reasoning.usage.output_tokens_details.reasoning_tokens > 0

    cut = client.responses.create(model="gpt-4o", input="Tell me something.", max_output_tokens=4)
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"


def test_responses_stream_events_and_helper(client: openai.OpenAI) -> None:
    full = client.responses.create(model="gpt-4o", input="Tell me something.")
    with client.responses.create(model="gpt-4o", input="Tell me something.", stream=True) as s:
        events = list(s)
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert types.count("response.output_text.delta") == len(full.output_text.split())
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == full.output_text

    with client.responses.stream(model="gpt-4o", input="Tell me something.") as helper:
        for _ in helper:
            pass
        final = helper.get_final_response()
    assert final.output_text == full.output_text
    assert final.usage == full.usage


def test_responses_tool_call(client: openai.OpenAI) -> None:
    params = {"type": "object", "properties": {"city": {"type": "string"}, "days": {}}}
    tool: Any = {"type": "function", "name": "lookup", "parameters": params, "strict": False}
    r = client.responses.create(model="gpt-4o", input="weather?", tools=[tool])
    [call] = r.output
    assert call.type == "function_call" and call.name == "lookup"
    assert set(json.loads(call.arguments)) == {"city", "days"}
    with client.responses.stream(model="gpt-4o", input="weather?", tools=[tool]) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    [streamed] = final.output
    assert streamed.type == "function_call"
    assert streamed.arguments == call.arguments
    assert streamed.call_id == call.call_id


async def test_async_responses_stream(aclient: openai.AsyncOpenAI) -> None:
    full = await aclient.responses.create(model="gpt-4o", input="hi")
    async with aclient.responses.stream(model="gpt-4o", input="hi") as s:
        async for _ in s:
            pass
        final = await s.get_final_response()
    assert final.output_text == full.output_text


# ---------------------------------------------------------------- plain httpx / httpx2


def _url(fake: FakeUpstream, mode: str, suffix: str = "/chat/completions") -> str:
    return _base_url(fake, mode) + suffix


def _httpx_client(fake: FakeUpstream, mode: str, **kw: Any) -> httpx.Client:
    if mode == "mock":
        return httpx.Client(transport=httpx.MockTransport(fake), **kw)
    return httpx.Client(**kw)


@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_handler_returns_its_librarys_response_with_a_dual_stream(lib: Any) -> None:
    fake = FakeUpstream()
    request = lib.Request("POST", CHAT, json=chat_body(stream=True))
    response = fake(request)
    assert isinstance(response, lib.Response)
    assert isinstance(response.stream, lib.SyncByteStream)
    assert isinstance(response.stream, lib.AsyncByteStream)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    sync_chunks = list(response.stream)

    async def read_async() -> list[bytes]:
        return [c async for c in fake(request).stream]

    assert asyncio.run(read_async()) == sync_chunks
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") for c in sync_chunks)
    assert len(sync_chunks) == len(sse_data(b"".join(sync_chunks)))  # one chunk per event
    assert sync_chunks[-1] == b"data: [DONE]\n\n"


@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
async def test_mock_transport_sync_and_async_clients_agree(lib: Any) -> None:
    fake = FakeUpstream()
    body = chat_body(stream=True)
    with (
        lib.Client(transport=lib.MockTransport(fake)) as http,
        http.stream("POST", CHAT, json=body) as r,
    ):
        chunks = list(r.iter_raw())
    async with (
        lib.AsyncClient(transport=lib.MockTransport(fake)) as ahttp,
        ahttp.stream("POST", CHAT, json=body) as ar,
    ):
        achunks = [c async for c in ar.aiter_raw()]
    assert chunks == achunks
    assert len(chunks) == len(sse_data(b"".join(chunks)))


def test_httpx_against_the_server_sync_and_async() -> None:
    with FakeUpstream() as fake:
        url = fake.base_url + "/chat/completions"
        with httpx.Client() as http:
            r = http.post(url, json=chat_body())
            with http.stream("POST", url, json=chat_body(stream=True)) as s:
                assert s.headers["content-type"] == "text/event-stream; charset=utf-8"
                assert s.headers["transfer-encoding"] == "chunked"
                streamed = s.read()
        assert r.status_code == 200 and r.http_version == "HTTP/1.1"
        assert r.headers["content-type"] == "application/json"

        async def go() -> tuple[bytes, bytes]:
            async with httpx.AsyncClient() as ahttp:
                a = await ahttp.post(url, json=chat_body())
                b = await ahttp.post(url, json=chat_body(stream=True))
                return a.content, b.content

        a, b = asyncio.run(go())
    assert a == r.content and b == streamed
    assert sse_data(streamed)[-1] == "[DONE]"


def test_response_headers(fake: FakeUpstream, mode: str) -> None:
    with _httpx_client(fake, mode) as http:
        r = http.post(_url(fake, mode), json=chat_body())
    h = r.headers
    assert h["x-request-id"].startswith("req_")
    assert h["openai-version"] == "2020-10-01"
    assert int(h["openai-processing-ms"]) >= 0
    assert h["openai-organization"] == "org-fake"
    assert h["openai-project"] == "proj_fake"
    assert h["set-cookie"] == "__cf_bm=fake; path=/"
    assert int(h["content-length"]) == len(r.content)


# ---------------------------------------------------------------- determinism


def test_same_request_same_bytes_and_seed_changes_content(fake: FakeUpstream, mode: str) -> None:
    with _httpx_client(fake, mode) as http:
        url = _url(fake, mode)
        for body in (chat_body(), chat_body(stream=True)):
            first, second = (http.post(url, json=body).content for _ in range(2))
            assert first == second
        other = http.post(url, json=chat_body(seed=8)).json()
        same = http.post(url, json=chat_body()).json()
        ids = {http.post(url, json=chat_body()).headers["x-request-id"] for _ in range(2)}
    assert other["choices"][0]["message"] != same["choices"][0]["message"]
    assert other["id"] != same["id"]
    assert len(ids) == 2  # request ids are per request, bodies are per content
    # A fresh fake gives the very same bytes: nothing depends on state or the clock.
    with httpx.Client(transport=httpx.MockTransport(FakeUpstream())) as http:
        assert http.post(CHAT, json=chat_body()).json() == same


def test_content_ignores_unrelated_fields(fake: FakeUpstream, mode: str) -> None:
    with _httpx_client(fake, mode) as http:
        url = _url(fake, mode)
        base = http.post(url, json=chat_body()).content
        assert http.post(url, json=chat_body(user="u1", temperature=0.3)).content == base
        other_model = http.post(url, json=chat_body(model="gpt-4o")).json()
    # API.md: output depends only on (seed, messages); the model name is only echoed
    assert other_model["choices"] == json.loads(base)["choices"]
    assert other_model["model"] == "gpt-4o"


# ---------------------------------------------------------------- faults


def test_fail_next_429_with_retry_after(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.fail_next(429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(**chat_body())
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "rate_limit_exceeded"
    assert info.value.type == "rate_limit_error"
    assert client.chat.completions.create(**chat_body()).choices  # only the next one failed


def test_fail_next_500_count_and_sdk_retries(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.fail_next(500, count=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(**chat_body())
        assert info.value.type == "server_error"
    fake.fail_next(503, count=2, retry_after=0.01)
    r = client.with_options(max_retries=2).chat.completions.create(**chat_body())
    assert r.choices[0].finish_reason == "stop"
    assert fake.request_count == 5


def test_fail_next_custom_body(fake: FakeUpstream, mode: str) -> None:
    fake.fail_next(400, body=b'{"error": {"message": "custom"}}')
    with _httpx_client(fake, mode) as http:
        r = http.post(_url(fake, mode), json=chat_body())
    assert r.status_code == 400 and r.json() == {"error": {"message": "custom"}}


def test_drop_stream_after_with_the_sdk(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.drop_stream_after(3)
    received = []
    with (
        pytest.raises(openai.APIConnectionError),
        client.chat.completions.create(**chat_body(), stream=True) as stream,
    ):
        received.extend(stream)
    assert len(received) == 3
    with client.chat.completions.create(**chat_body(), stream=True) as stream:
        assert list(stream)[-1].choices[0].finish_reason == "stop"  # count=1: next is whole


def test_drop_stream_after_raw_errors(fake: FakeUpstream, mode: str) -> None:
    fake.drop_stream_after(2)
    fake.drop_stream_after(2)
    expected = httpx.ReadError if mode == "mock" else httpx.RemoteProtocolError
    with _httpx_client(fake, mode) as http:
        r = http.post(_url(fake, mode), json=chat_body())  # non-stream: untouched, not consumed
        assert r.status_code == 200
        with (
            pytest.raises(expected),
            http.stream("POST", _url(fake, mode), json=chat_body(stream=True)) as s,
        ):
            s.read()
    # httpx2 sees it too, through its own exception types.
    expected2 = httpx2.ReadError if mode == "mock" else httpx2.RemoteProtocolError
    transport = httpx2.MockTransport(fake) if mode == "mock" else None
    with (
        httpx2.Client(transport=transport) as http2,
        pytest.raises(expected2),
        http2.stream("POST", _url(fake, mode), json=chat_body(stream=True)) as s,
    ):
        s.read()


async def test_drop_stream_async(aclient: openai.AsyncOpenAI, fake: FakeUpstream) -> None:
    fake.drop_stream_after(1)
    stream = await aclient.chat.completions.create(**chat_body(), stream=True)
    with pytest.raises(openai.APIConnectionError):
        async with stream:
            async for _ in stream:
                pass


def test_error_event_after(client: openai.OpenAI, fake: FakeUpstream, mode: str) -> None:
    fake.error_event_after(2)
    received = []
    with (
        pytest.raises(openai.APIError, match="mid-stream"),
        client.chat.completions.create(**chat_body(), stream=True) as stream,
    ):
        received.extend(stream)
    assert len(received) == 2
    fake.error_event_after(2)
    with _httpx_client(fake, mode) as http:
        raw = http.post(_url(fake, mode), json=chat_body(stream=True)).content
    data = sse_data(raw)
    assert len(data) == 3 and "[DONE]" not in data
    assert json.loads(data[-1])["error"]["type"] == "server_error"


def test_error_event_in_responses_stream(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.error_event_after(3)
    with (
        pytest.raises(openai.APIError),
        client.responses.create(model="gpt-4o", input="x", stream=True) as s,
    ):
        list(s)


ENCODINGS = ["gzip", "deflate", "br", "zstd"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_content_encoding_httpx(encoding: str, mode: str) -> None:
    with httpx.Client(transport=httpx.MockTransport(FakeUpstream())) as http:
        want = http.post(CHAT, json=chat_body()).content
        with http.stream("POST", CHAT, json=chat_body(stream=True)) as s:
            want_events = list(s.iter_raw())
    packed = FakeUpstream(content_encoding=encoding)
    with serving(packed, mode), _httpx_client(packed, mode) as http:
        r = http.post(_url(packed, mode), json=chat_body())
        with http.stream("POST", _url(packed, mode), json=chat_body(stream=True)) as s:
            assert s.headers["content-encoding"] == encoding
            raw = list(s.iter_raw())
        with http.stream("POST", _url(packed, mode), json=chat_body(stream=True)) as s:
            events = [e for e in s.iter_bytes() if e]
    assert r.headers["content-encoding"] == encoding
    assert r.content == want
    assert b"".join(raw) != b"".join(want_events)  # really compressed on the wire
    assert b"".join(events) == b"".join(want_events)
    if mode == "mock":  # each compressed chunk decodes to exactly one event
        assert events == want_events


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_content_encoding_openai_sdk(encoding: str, mode: str) -> None:
    fake = FakeUpstream(content_encoding=encoding)
    transport = httpx2.MockTransport(fake) if mode == "mock" else None
    with (
        serving(fake, mode),
        httpx2.Client(transport=transport) as http,
        openai.OpenAI(
            api_key="k", base_url=_base_url(fake, mode), http_client=http, max_retries=0
        ) as sdk,
    ):
        r = sdk.chat.completions.create(**chat_body())
        with sdk.chat.completions.create(**chat_body(), stream=True) as s:
            text = "".join(c.choices[0].delta.content or "" for c in s)
        e = sdk.embeddings.create(model="m", input="x")
    assert text == r.choices[0].message.content
    assert len(e.data[0].embedding) == 8


def test_unknown_content_encoding_is_rejected() -> None:
    with pytest.raises(ValueError, match="content_encoding"):
        FakeUpstream(content_encoding="compress")


def test_latency_and_chunk_delay_are_measurable(fake: FakeUpstream, mode: str) -> None:
    fake.latency = 0.2
    with _httpx_client(fake, mode) as http:
        start = time.perf_counter()
        http.post(_url(fake, mode), json=chat_body())
        assert time.perf_counter() - start >= 0.19
        fake.latency = 0.0
        fake.chunk_delay = 0.03
        with http.stream("POST", _url(fake, mode), json=chat_body(stream=True)) as s:
            arrivals = []
            for _ in s.iter_raw():
                arrivals.append(time.perf_counter())
    # Events arrive spread out, as produced, not all at once at the end.
    assert len(arrivals) > 10
    assert arrivals[-1] - arrivals[0] >= 0.03 * (len(arrivals) - 1) * 0.8
    gaps = sorted(b - a for a, b in itertools.pairwise(arrivals))
    assert gaps[len(gaps) // 2] >= 0.02  # typically one event per read, a delay apart


async def test_chunk_delay_does_not_block_the_event_loop() -> None:
    fake = FakeUpstream(chunk_delay=0.02)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(fake)) as http:
        r = await http.post(CHAT, json=chat_body(stream=True))
    task.cancel()
    assert sse_data(r.content)[-1] == "[DONE]"
    assert ticks > 10


# ---------------------------------------------------------------- introspection


def test_requests_are_recorded(client: openai.OpenAI, fake: FakeUpstream) -> None:
    assert fake.request_count == 0
    client.chat.completions.create(**chat_body())
    client.embeddings.create(model="m", input="x")
    assert fake.request_count == 2
    first, second = fake.requests
    assert isinstance(first, ReceivedRequest)
    assert first.method == "POST" and first.path == "/v1/chat/completions"
    assert first.json is not None and first.json["seed"] == 7
    assert json.loads(first.body) == first.json
    assert first.headers["authorization"] == "Bearer sk-test"
    assert all(k == k.lower() for k in first.headers)
    assert second.path == "/v1/embeddings"
    with pytest.raises(AttributeError):
        first.method = "GET"  # type: ignore[misc]
    fake.fail_next(500)
    fake.reset()
    assert fake.request_count == 0 and fake.requests == []
    assert client.chat.completions.create(**chat_body()).choices  # the fault was cleared


def test_query_and_any_prefix(fake: FakeUpstream, mode: str) -> None:
    root = _base_url(fake, mode).removesuffix("/v1")
    url = root + "/openai/deployments/gpt/chat/completions?api-version=2024-10-21"
    with _httpx_client(fake, mode) as http:
        r = http.post(url, json=chat_body())
    assert r.json()["object"] == "chat.completion"
    assert fake.requests[-1].query == "api-version=2024-10-21"
    assert fake.requests[-1].path == "/openai/deployments/gpt/chat/completions"


def test_unknown_path_is_404_and_bad_body_is_400(fake: FakeUpstream, mode: str) -> None:
    with _httpx_client(fake, mode) as http:
        missing = http.post(_url(fake, mode, "/images/generations"), json={"model": "x"})
        get = http.get(_url(fake, mode, "/models"))
        bad = http.post(_url(fake, mode), content=b"[1, 2]")
        broken = http.post(_url(fake, mode), content=b"{not json")
    for r in (missing, get):
        assert r.status_code == 404
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    for r in (bad, broken):
        assert r.status_code == 400
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert fake.request_count == 4


def test_not_found_through_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.list()


def test_server_stop_refuses_connections() -> None:
    fake = FakeUpstream()
    with fake, httpx.Client() as http:
        url = fake.base_url + "/chat/completions"
        assert http.post(url, json=chat_body()).status_code == 200  # keep-alive connection
        fake.stop()
        with pytest.raises(httpx.TransportError):
            http.post(url, json=chat_body())
    with httpx.Client() as fresh, pytest.raises(httpx.ConnectError):
        fresh.post(url, json=chat_body())
    with pytest.raises(RuntimeError):
        _ = fake.base_url


def test_server_stop_is_prompt_with_a_stream_in_flight() -> None:
    fake = FakeUpstream(chunk_delay=0.5).start()
    url = fake.base_url + "/chat/completions"
    with httpx.Client() as http, http.stream("POST", url, json=chat_body(stream=True)):
        start = time.perf_counter()
        fake.stop()
        assert time.perf_counter() - start < 2


def test_concurrent_requests_are_all_counted() -> None:
    with FakeUpstream(latency=0.3) as fake, httpx.Client() as http:
        url = fake.base_url + "/chat/completions"
        statuses: list[int] = []

        def worker() -> None:
            statuses.append(http.post(url, json=chat_body()).status_code)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # served concurrently: one after another would take 16 x 0.3 = 4.8 s
        assert time.perf_counter() - start < 0.3 * 16 / 2
    assert statuses == [200] * 16
    assert fake.request_count == 16
