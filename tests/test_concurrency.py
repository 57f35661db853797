"""Threads and tasks: every answer correct, identical concurrent misses go upstream once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import httpx2
import orjson
import pytest

import llmtap.httpx
import llmtap.httpx2
from conftest import chat
from llmtap import DiskCache, MemoryCache
from llmtap.testing import FakeUpstream


def _content(body: bytes) -> str:
    return str(orjson.loads(body)["choices"][0]["message"]["content"])


@pytest.mark.parametrize("cache_kind", ["memory", "disk"])
def test_eight_threads_fifty_calls_each(tmp_path: Any, cache_kind: str) -> None:
    fake = FakeUpstream(latency=0.02)
    cache = MemoryCache() if cache_kind == "memory" else DiskCache(tmp_path / "c")
    transport = llmtap.httpx2.Transport(
        transport=httpx2.MockTransport(fake), cache=cache, metrics=None
    )
    seeds = list(range(10))
    reference = {
        s: _content(
            fake(httpx2.Request("POST", "https://x/v1/chat/completions", json=chat(seed=s))).read()
        )
        for s in seeds
    }
    fake.reset()
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            with httpx2.Client(transport=transport) as client:
                barrier.wait()
                for i in range(50):
                    seed = seeds[(n + i) % len(seeds)]
                    r = client.post("https://api.openai.com/v1/chat/completions", json=chat(seed))
                    assert r.status_code == 200
                    assert _content(r.content) == reference[seed]
        except BaseException as exc:  # collected: a thread's assert must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.request_count == len(seeds)  # single flight: each key went upstream once


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
async def test_two_hundred_concurrent_async_streams(lib_name: str) -> None:
    lib: Any = httpx if lib_name == "httpx" else httpx2
    shells: Any = llmtap.httpx if lib_name == "httpx" else llmtap.httpx2
    fake = FakeUpstream(latency=0.05, chunk_delay=0.001)
    transport = shells.AsyncTransport(
        transport=lib.MockTransport(fake), cache=MemoryCache(), metrics=None
    )
    seeds = [i % 20 for i in range(200)]

    async def one(seed: int) -> tuple[int, bytes, str]:
        body = chat(seed, stream=True, stream_options={"include_usage": True})
        async with client.stream(
            "POST", "https://api.openai.com/v1/chat/completions", json=body
        ) as r:
            raw = b"".join([c async for c in r.aiter_raw()])
            return seed, raw, r.headers["x-llmtap-cache"]

    async with lib.AsyncClient(transport=transport) as client:
        results = await asyncio.gather(*(one(s) for s in seeds))
    by_seed: dict[int, set[bytes]] = {}
    for seed, raw, _ in results:
        assert raw.endswith(b"data: [DONE]\n\n")
        by_seed.setdefault(seed, set()).add(raw)
    assert all(len(bodies) == 1 for bodies in by_seed.values())  # every answer identical
    assert fake.request_count == 20
    assert sum(1 for *_, cache in results if cache == "hit") == 180


async def test_waiters_go_upstream_when_the_leader_fails() -> None:
    fake = FakeUpstream(latency=0.05)
    fake.fail_next(500)
    transport = llmtap.httpx2.AsyncTransport(
        transport=httpx2.MockTransport(fake), cache=MemoryCache(), metrics=None
    )
    async with httpx2.AsyncClient(transport=transport) as client:
        url = "https://api.openai.com/v1/chat/completions"
        results = await asyncio.gather(*(client.post(url, json=chat(5)) for _ in range(3)))
    statuses = sorted(r.status_code for r in results)
    assert statuses[0] == 200 and statuses[-1] == 500
    assert fake.request_count >= 2


class _LateReader(MemoryCache):
    """A store whose reads on one thread come back late: the value is read at once, then
    handed over only once ``release`` is set (a slow disk, a descheduled thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow_thread: int | None = None
        self.read_done = threading.Event()
        self.release = threading.Event()

    def get(self, key: str) -> bytes | None:
        value = super().get(key)
        if threading.get_ident() == self.slow_thread and not self.release.is_set():
            self.read_done.set()
            self.release.wait(10)
        return value


@pytest.mark.parametrize("io", ["sync", "async"])
def test_a_call_that_read_the_store_just_before_a_leader_stored_does_not_go_upstream(
    io: str,
) -> None:
    """B reads the store (miss), A leads, stores and finishes, then B claims the key:
    B must find A's answer instead of leading a second upstream call."""
    fake = FakeUpstream()
    cache = _LateReader()
    if io == "sync":
        transport: Any = llmtap.httpx2.Transport(
            transport=httpx2.MockTransport(fake), cache=cache, metrics=None
        )
    else:
        transport = llmtap.httpx2.AsyncTransport(
            transport=httpx2.MockTransport(fake), cache=cache, metrics=None
        )
    url = "https://api.openai.com/v1/chat/completions"

    def post() -> Any:
        if io == "sync":
            with httpx2.Client(transport=transport) as client:
                return client.post(url, json=chat(seed=3))

        async def apost() -> Any:
            client = httpx2.AsyncClient(transport=transport)  # keeps the transport open
            return await client.post(url, json=chat(seed=3))

        return asyncio.run(apost())

    late: dict[str, Any] = {}

    def slow_caller() -> None:
        cache.slow_thread = threading.get_ident()
        late["response"] = post()

    b = threading.Thread(target=slow_caller)
    b.start()
    assert cache.read_done.wait(10)  # B has read the store: a miss
    first = post()  # A: miss, leads, stores, ends its flight
    cache.release.set()
    b.join(10)
    assert first.headers["x-llmtap-cache"] == "miss"
    assert late["response"].headers["x-llmtap-cache"] == "hit"
    assert late["response"].content == first.content
    assert fake.request_count == 1


class _SlowLock(MemoryCache):
    """A store that locks across processes, slowly: a leader is still taking the lock
    when it is cancelled. Counts who tried."""

    lock_ttl = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def try_lock(self, key: str, ttl: float) -> str | None:
        return "token"

    def unlock(self, key: str, token: str) -> None:
        pass

    def is_locked(self, key: str) -> bool:
        return False

    async def atry_lock(self, key: str, ttl: float) -> str | None:
        self.attempts += 1
        await asyncio.sleep(30)
        return "token"

    async def aunlock(self, key: str, token: str) -> None:
        pass

    async def ais_locked(self, key: str) -> bool:
        return False


async def test_a_leader_cancelled_before_leading_frees_its_waiters() -> None:
    """Cancelled while taking the cross-process lock, a leader must not leave the others
    waiting out the single-flight timeout (300 s): they go upstream themselves."""
    store, fake = _SlowLock(), FakeUpstream()
    transport = llmtap.httpx2.AsyncTransport(
        transport=httpx2.MockTransport(fake), cache=store, metrics=None
    )
    url = "https://api.openai.com/v1/chat/completions"
    async with httpx2.AsyncClient(transport=transport) as client:
        leader = asyncio.create_task(client.post(url, json=chat(seed=41)))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(client.post(url, json=chat(seed=41)))
        await asyncio.sleep(0.05)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        response = await asyncio.wait_for(waiter, timeout=5)
    assert response.status_code == 200
    assert store.attempts == 1 and fake.request_count == 1  # the waiter went itself
