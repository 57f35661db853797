"""The protocol every cache backend satisfies, and the async half for sync stores.

Backends map ``str`` keys to ``bytes`` values and know nothing of entries: the
entry codec (``llmtap._core.entry``) owns the format, so no backend ever needs
pickle.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread


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


class ThreadedAsync:
    """``aget``/``aset`` for a blocking store: run in a worker thread.

    anyio's worker threads serve asyncio and trio alike (httpx and httpx2 run on
    both) and copy the caller's contextvars, so the current span stays the parent
    of anything the store does. A cancelled call does not wait for its thread.
    """

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError  # pragma: no cover

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        raise NotImplementedError  # pragma: no cover

    async def aget(self, key: str) -> bytes | None:
        return await anyio.to_thread.run_sync(self.get, key, abandon_on_cancel=True)

    async def aset(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await anyio.to_thread.run_sync(self.set, key, value, ttl, abandon_on_cancel=True)
