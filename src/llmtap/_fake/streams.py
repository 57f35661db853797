"""Response body streams for ``httpx.MockTransport`` / ``httpx2.MockTransport``.

One chunk is yielded per SSE event, so chunk boundaries mean what they mean on
a real socket. The class subclasses both the library's ``SyncByteStream`` and
``AsyncByteStream``, so one response works with sync and async clients.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import anyio


class _ChunkStream:
    def __init__(
        self, chunks: list[bytes], *, delay: float, error: BaseException | None = None
    ) -> None:
        self._chunks = chunks
        self._delay = delay
        self._error = error

    def __iter__(self) -> Iterator[bytes]:
        for i, chunk in enumerate(self._chunks):
            if i and self._delay > 0:
                time.sleep(self._delay)
            yield chunk
        if self._error is not None:
            raise self._error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._chunks):
            if i and self._delay > 0:
                await anyio.sleep(self._delay)
            yield chunk
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


_classes: dict[str, type[_ChunkStream]] = {}
_lock = threading.Lock()


def make_stream(
    lib: ModuleType, chunks: list[bytes], *, delay: float, drop_message: str | None, request: Any
) -> _ChunkStream:
    """A stream object of ``lib`` (httpx or httpx2); ``drop_message`` ends it with ``ReadError``."""
    with _lock:
        cls = _classes.get(lib.__name__)
        if cls is None:
            bases = (_ChunkStream, lib.SyncByteStream, lib.AsyncByteStream)
            cls = _classes[lib.__name__] = type("FakeByteStream", bases, {})
    error = None if drop_message is None else lib.ReadError(drop_message, request=request)
    return cls(chunks, delay=delay, error=error)
