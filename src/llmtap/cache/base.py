"""The protocol every cache backend satisfies, and the async half for sync stores.

Backends map ``str`` keys to ``bytes`` values and know nothing of entries: the
entry codec (``llmtap._core.entry``) owns the format, so no backend ever needs
pickle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar, runtime_checkable

import anyio.to_thread

T = TypeVar("T")


@runtime_checkable
class CacheBackend(Protocol):
    """What a transport needs of a store. ``ttl`` is in seconds, ``None`` for ever."""

    name: str

    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    def delete(self, key: str) -> bool: ...

    def iter_entries(self) -> Iterator[tuple[str, bytes]]: ...

    def stats(self) -> dict[str, Any]: ...

    async def aget(self, key: str) -> bytes | None: ...

    async def aset(self, key: str, value: bytes, ttl: float | None = None) -> None: ...


def check_value(key: object, value: object) -> None:
    """Refuse anything but ``str`` keys and ``bytes`` values, which never need pickle."""
    if not isinstance(key, str):
        raise TypeError(f"cache keys are str, got {type(key).__name__}")
    if not isinstance(value, bytes):
        raise TypeError(f"cache values are bytes, got {type(value).__name__}")


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop; ``None`` outside one, or under trio."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def in_thread(func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` in a worker thread, under asyncio or trio (httpx and httpx2 run on
    both). Both hops copy the caller's contextvars, so the current span stays the parent
    of what the store does, and neither makes a cancelled call wait for its thread.
    asyncio's own hop is used where it can be: anyio's costs about twice as much."""
    if running_loop() is None:  # trio
        return await anyio.to_thread.run_sync(func, *args, abandon_on_cancel=True)
    return await asyncio.to_thread(func, *args)


class ThreadedAsync:
    """``aget``/``aset`` for a blocking store: run in a worker thread (:func:`in_thread`)."""

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError  # pragma: no cover

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raise NotImplementedError  # pragma: no cover

    async def aget(self, key: str) -> bytes | None:
        return await in_thread(self.get, key)

    async def aset(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await in_thread(self.set, key, value, ttl)
