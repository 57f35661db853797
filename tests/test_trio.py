"""Async transports under trio (httpx and httpx2's AsyncClient both run on it), and
single-flight waiters in other event loops: nothing may assume asyncio."""

from __future__ import annotations

import asyncio
import importlib
import threading
import time
from typing import Any

import anyio
import pytest
import trio

from conftest import chat
from llmtap import DiskCache, FileCache, MemoryCache
from llmtap.testing import FakeUpstream

URL = "https://api.openai.com/v1/chat/completions"
LIBS = ["httpx", "httpx2"]


def _store(kind: str, tmp_path: Any) -> Any:
    if kind == "memory":
        return MemoryCache()
    if kind == "disk":
        return DiskCache(tmp_path / "disk")
    return FileCache(tmp_path / "files")


def _client(lib_name: str, handler: Any, **kw: Any) -> Any:
    lib = importlib.import_module(lib_name)
    shells = importlib.import_module(f"llmtap.{lib_name}")
    kw.setdefault("metrics", None)
    transport = shells.AsyncTransport(transport=lib.MockTransport(handler), **kw)
    return lib.AsyncClient(transport=transport)


def _slow(fake: FakeUpstream, delay: float, sent: list[Any] | None = None) -> Any:
    """An async MockTransport handler that takes ``delay`` in whichever loop runs it;
    ``sent`` gets every request as it arrives."""

    async def handle(request: Any) -> Any:
        if sent is not None:
            sent.append(request)
        await anyio.sleep(delay)
        return fake(request)

    return handle


@pytest.mark.parametrize("kind", ["memory", "disk", "file"])
@pytest.mark.parametrize("lib_name", LIBS)
def test_a_cached_call_under_trio_misses_then_hits(lib_name: str, kind: str, tmp_path: Any) -> None:
    fake = FakeUpstream()

    async def main() -> list[Any]:
        async with _client(lib_name, fake, cache=_store(kind, tmp_path)) as client:
            out = []
            for body in (chat(), chat(), chat(stream=True), chat(stream=True)):
                response = await client.post(URL, json=body)
                out.append((response.headers["x-llmtap-cache"], response.content))
            return out

    (c1, b1), (c2, b2), (c3, s1), (c4, s2) = trio.run(main)
    assert (c1, c2, c3, c4) == ("miss", "hit", "miss", "hit")
    assert b1 == b2 and s1 == s2 and s1.endswith(b"data: [DONE]\n\n")
    assert len(fake.requests) == 2


@pytest.mark.parametrize("lib_name", LIBS)
def test_identical_concurrent_calls_under_trio_go_upstream_once(lib_name: str) -> None:
    fake = FakeUpstream()
    seen: list[str] = []

    async def main() -> None:
        async with _client(lib_name, _slow(fake, 0.2), cache=MemoryCache()) as client:

            async def one() -> None:
                response = await client.post(URL, json=chat(seed=3))
                assert response.status_code == 200
                seen.append(response.headers["x-llmtap-cache"])

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one)

    trio.run(main)
    assert sorted(seen) == ["hit"] * 4 + ["miss"]
    assert len(fake.requests) == 1


@pytest.mark.parametrize("lib_name", LIBS)
def test_a_replay_miss_under_trio_is_answered_404(lib_name: str, tmp_path: Any) -> None:
    fake = FakeUpstream()

    async def main() -> Any:
        cache = DiskCache(tmp_path / "d")
        async with _client(lib_name, fake, cache=cache, mode="replay") as client:
            return await client.post(URL, json=chat())

    response = trio.run(main)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "llmtap_cache_miss"
    assert fake.requests == []


@pytest.mark.parametrize("lib_name", LIBS)
def test_a_waiter_under_trio_gives_up_when_cancelled(lib_name: str) -> None:
    fake = FakeUpstream()
    waited: list[float] = []
    sent: list[Any] = []

    async def main() -> None:
        async with _client(lib_name, _slow(fake, 1.5, sent), cache=MemoryCache()) as client:

            async def waiter() -> None:
                await trio.sleep(0.1)  # the leader claims the key first
                began = time.monotonic()
                with trio.move_on_after(0.2):
                    await client.post(URL, json=chat(seed=5))
                waited.append(time.monotonic() - began)

            async def leader() -> None:
                await client.post(URL, json=chat(seed=5))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(leader)
                nursery.start_soon(waiter)

    trio.run(main)
    assert waited and waited[0] < 1.0, waited
    assert len(sent) == 1  # the waiter waited for the leader: it never went upstream


def test_a_waiter_in_another_event_loop_is_not_held_by_the_leader() -> None:
    """One transport shared by two threads, each with its own ``asyncio.run``: a waiter
    that times out returns at once, instead of when the other loop's leader ends."""
    fake = FakeUpstream()
    release = threading.Event()
    leading = threading.Event()

    async def gated(request: Any) -> Any:
        leading.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        return fake(request)

    import httpx2

    import llmtap.httpx2

    transport = llmtap.httpx2.AsyncTransport(
        transport=httpx2.MockTransport(gated), cache=MemoryCache(), metrics=None
    )

    async def lead() -> None:
        async with httpx2.AsyncClient(transport=transport) as client:
            await client.post(URL, json=chat(seed=9))

    async def wait() -> None:
        client = httpx2.AsyncClient(transport=transport)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.post(URL, json=chat(seed=9))

    leader = threading.Thread(target=asyncio.run, args=(lead(),))
    leader.start()
    threading.Timer(5, release.set).start()  # the longest the leader may take
    try:
        assert leading.wait(5)
        began = time.monotonic()
        asyncio.run(wait())
        assert time.monotonic() - began < 2.0
    finally:
        release.set()
        leader.join(10)
    assert len(fake.requests) == 1
