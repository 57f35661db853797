"""An in-process LRU store, for unit tests and notebooks."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from llmtap.cache.base import check_value


class MemoryCache:
    """A dict in the process, bounded to ``max_entries`` (least recently used goes first).

    >>> from llmtap import MemoryCache
    >>> cache = MemoryCache(max_entries=1000)
    """

    name = "memory"

    def __init__(self, max_entries: int = 10_000) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a positive int, got {max_entries!r}")
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            value, expires = item
            if expires is not None and time.monotonic() >= expires:
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_value(key, value)
        expires = None if ttl is None else time.monotonic() + ttl
        with self._lock:
            self._data[key] = (value, expires)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def iter_entries(self) -> Iterator[tuple[str, bytes]]:
        with self._lock:
            items = list(self._data.items())
        now = time.monotonic()
        for key, (value, expires) in items:
            if expires is None or now < expires:
                yield key, value

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "backend": self.name,
                "entries": len(self._data),
                "size_bytes": sum(len(v) for v, _ in self._data.values()),
                "max_entries": self.max_entries,
            }

    async def aget(self, key: str) -> bytes | None:
        return self.get(key)

    async def aset(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.set(key, value, ttl)

    def __len__(self) -> int:
        return len(self._data)
