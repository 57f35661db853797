"""The contract every cache backend satisfies (API.md "Cache backends").

Reusable: a backend's test module imports :data:`CONTRACT` tests by
``from tests.backend_contract import *`` style, or, as here, the ``backend``
fixture is parametrised over factories in :data:`BACKENDS` and each test below
runs once per backend. RedisCache will add its factory to ``BACKENDS``.
Values are real llmtap entry bytes, since FileCache stores entries, not blobs.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmtap import DiskCache, FileCache, MemoryCache
from llmtap._core.entry import CacheEntry, decode_entry, encode_entry

Factory = Callable[[Path], Any]

BACKENDS: dict[str, Factory] = {
    "memory": lambda tmp: MemoryCache(),
    "disk": lambda tmp: DiskCache(tmp / "disk"),
    "files": lambda tmp: FileCache(tmp / "files"),
}


def make_entry(text: str = "hello", *, stream: bool = False, created: float = 1000.0) -> bytes:
    if stream:
        chunks = [f'data: {{"delta": "{text}"}}\n\n'.encode(), b"data: [DONE]\n\n"]
        body = b"".join(chunks)
        lengths: list[int] | None = [len(c) for c in chunks]
        headers = [("content-type", "text/event-stream")]
    else:
        body = f'{{"answer": "{text}"}}'.encode()
        lengths = None
        headers = [("content-type", "application/json")]
    return encode_entry(
        CacheEntry(
            status=200,
            headers=headers,
            body=body,
            created_at=created,
            chunks=lengths,
            summary={"operation": "chat", "model": "m"},
            key_material={"body": {"model": "m", "messages": [{"role": "user", "content": text}]}},
        )
    )


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    store = BACKENDS[request.param](tmp_path)
    yield store
    close = getattr(store, "close", None)
    if callable(close):
        close()


def test_get_missing_is_none(backend: Any) -> None:
    assert backend.get("absent") is None


@pytest.mark.parametrize("stream", [False, True])
def test_set_then_get_round_trips(backend: Any, stream: bool) -> None:
    value = make_entry("round", stream=stream)
    backend.set("k1", value)
    got = backend.get("k1")
    assert got is not None
    assert decode_entry(got) == decode_entry(value)


def test_overwrite_replaces(backend: Any) -> None:
    backend.set("k", make_entry("one"))
    backend.set("k", make_entry("two"))
    got = backend.get("k")
    assert got is not None and b"two" in decode_entry(got).body


def test_delete(backend: Any) -> None:
    backend.set("k", make_entry())
    assert backend.delete("k") is True
    assert backend.get("k") is None
    assert backend.delete("k") is False


def test_iter_entries_and_stats(backend: Any) -> None:
    for i in range(3):
        backend.set(f"key{i}", make_entry(str(i)))
    assert sorted(k for k, _ in backend.iter_entries()) == ["key0", "key1", "key2"]
    stats = backend.stats()
    assert stats["backend"] == backend.name
    assert stats["entries"] == 3


def test_refuses_non_bytes(backend: Any) -> None:
    with pytest.raises(TypeError):
        backend.set("k", "not bytes")


async def test_async_round_trip(backend: Any) -> None:
    value = make_entry("async", stream=True)
    await backend.aset("ak", value)
    got = await backend.aget("ak")
    assert got is not None and decode_entry(got) == decode_entry(value)
    assert await backend.aget("nope") is None


def test_concurrent_writers_leave_a_readable_value(backend: Any) -> None:
    values = [make_entry(f"writer {i}") for i in range(8)]
    threads = [threading.Thread(target=backend.set, args=("race", v)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = backend.get("race")
    assert got is not None and decode_entry(got) in [decode_entry(v) for v in values]


async def test_async_gather(backend: Any) -> None:
    await asyncio.gather(*(backend.aset(f"g{i}", make_entry(str(i))) for i in range(5)))
    assert all([await backend.aget(f"g{i}") for i in range(5)])
