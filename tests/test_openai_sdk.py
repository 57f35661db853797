"""Through the real openai SDK (httpx2): hits parse identically, replay misses fail at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from llmtap import MemoryCache
from llmtap.httpx2 import AsyncTransport, Transport
from llmtap.testing import FakeUpstream

MESSAGES = [{"role": "user", "content": "What does a transport do?"}]


@pytest.fixture(params=["mock", "server"])
def fake_and_base(request: pytest.FixtureRequest) -> Iterator[tuple[FakeUpstream, str, bool]]:
    if request.param == "mock":
        yield FakeUpstream(), "https://api.openai.com/v1", False
    else:
        with FakeUpstream() as fake:
            yield fake, fake.base_url, True


def sync_client(fake: FakeUpstream, base: str, server: bool, **kw: Any) -> openai.OpenAI:
    inner = None if server else httpx2.MockTransport(fake)
    transport = Transport(transport=inner, metrics=None, **kw)
    return openai.OpenAI(
        api_key="sk-test", base_url=base, http_client=httpx2.Client(transport=transport)
    )


def async_client(fake: FakeUpstream, base: str, server: bool, **kw: Any) -> openai.AsyncOpenAI:
    inner = None if server else httpx2.MockTransport(fake)
    transport = AsyncTransport(transport=inner, metrics=None, **kw)
    return openai.AsyncOpenAI(
        api_key="sk-test", base_url=base, http_client=httpx2.AsyncClient(transport=transport)
    )


def test_sync_chat_hit_parses_identically(fake_and_base: Any) -> None:
    fake, base, server = fake_and_base
    with sync_client(fake, base, server, cache=MemoryCache()) as client:
        first = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", seed=7, messages=MESSAGES
        )
        second = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", seed=7, messages=MESSAGES
        )
    assert first.headers["x-llmtap-cache"] == "miss"
    assert second.headers["x-llmtap-cache"] == "hit"
    assert first.parse().model_dump() == second.parse().model_dump()
    assert fake.request_count == 1


def test_sync_stream_hit_is_identical_event_by_event(fake_and_base: Any) -> None:
    fake, base, server = fake_and_base
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "seed": 7,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
        "n": 2,
    }
    with sync_client(fake, base, server, cache=MemoryCache()) as client:
        runs = [[c.model_dump() for c in client.chat.completions.create(**kwargs)] for _ in "ab"]
    assert runs[0] == runs[1]
    assert runs[0][-1]["usage"]["total_tokens"] > 0
    assert fake.request_count == 1


async def test_async_chat_and_stream_hits(fake_and_base: Any) -> None:
    fake, base, server = fake_and_base
    async with async_client(fake, base, server, cache=MemoryCache()) as client:
        plain = [
            (await client.chat.completions.create(model="m", seed=3, messages=MESSAGES))
            for _ in "ab"
        ]
        streams = []
        for _ in "ab":
            stream = await client.chat.completions.create(
                model="m", seed=3, messages=MESSAGES, stream=True
            )
            streams.append([chunk.model_dump() async for chunk in stream])
    assert plain[0].model_dump() == plain[1].model_dump()
    assert streams[0] == streams[1] and len(streams[0]) > 3
    assert fake.request_count == 2


def test_embeddings_completions_and_responses_are_cached(fake_and_base: Any) -> None:
    fake, base, server = fake_and_base
    with sync_client(fake, base, server, cache=MemoryCache(), cache_when="always") as client:
        for _ in "ab":
            vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
            text = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi", seed=1)
            answer = client.responses.create(model="gpt-4o-mini", input="hello")
            events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    assert len(vectors.data) == 2 and text.choices[0].text
    assert answer.output_text and events[-1].type == "response.completed"
    assert fake.request_count == 4


def test_replay_miss_fails_at_once_without_retries(fake_and_base: Any) -> None:
    fake, base, server = fake_and_base
    with sync_client(fake, base, server, cache=MemoryCache(), mode="replay") as client:
        started = time.perf_counter()
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="gpt-4o-mini", seed=7, messages=MESSAGES)
        elapsed = time.perf_counter() - started
    assert fake.request_count == 0
    assert elapsed < 1.0  # two SDK retries would back off for over a second
    assert "llmtap_cache_miss" in str(info.value) or "replay" in str(info.value)
    assert info.value.response.headers["x-should-retry"] == "false"


def test_malformed_control_from_the_sdk_is_a_bad_request(fake_and_base: Any) -> None:
    fake, base, server = fake_and_base
    client = sync_client(fake, base, server, cache=MemoryCache())
    with client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="m", seed=1, messages=MESSAGES, extra_headers={"x-llmtap-cache": "forever"}
        )
    assert "forever" in str(info.value)
    assert fake.request_count == 0


def test_upstream_errors_reach_the_sdk_unchanged(fake_and_base: Any) -> None:
    fake, base, server = fake_and_base
    fake.fail_next(429, retry_after=2)
    with sync_client(fake, base, server, cache=MemoryCache()) as client:
        client = client.with_options(max_retries=0)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="m", seed=1, messages=MESSAGES)
        assert info.value.response.headers["retry-after"] == "2"
        ok = client.chat.completions.with_raw_response.create(model="m", seed=1, messages=MESSAGES)
    assert ok.headers["x-llmtap-cache"] == "miss"


def test_connection_errors_are_the_sdks_own() -> None:
    transport = Transport(cache=MemoryCache(), metrics=None)
    http = httpx2.Client(transport=transport)
    client = openai.OpenAI(
        api_key="sk", base_url="http://127.0.0.1:9/v1", http_client=http, max_retries=0
    )
    with client, pytest.raises(openai.APIConnectionError) as info:
        client.chat.completions.create(model="m", seed=1, messages=MESSAGES)
    assert isinstance(info.value.__cause__, httpx2.ConnectError)
