"""Response bodies: the tee that passes upstream's chunks through, and the replay of a hit.

A replayed hit ends its call the same way a tee does (end, close, collection),
so a hit's span and duration cover the time the caller spent reading it.

The tee hands the caller every chunk unchanged and at once (no buffering, no
re-chunking), feeds a copy to the exchange, and ends the exchange exactly once:
at the end of the body, on an error, or when the caller closes the response.
httpx and httpx2 each check that a body is their own ``SyncByteStream`` /
``AsyncByteStream``, so :func:`stream_types` mixes these shells into each
library's base classes.

A caller may also drop a response without reading or closing it. Each tee
then has a ``weakref.finalize`` that ends the exchange as cancelled when the
tee is collected (a tee the transport itself reads to the end at once, for an
answer that arrived already read, needs none): it only reports and wakes
single-flight waiters, it never stores (no IO from a finalizer, which may run
on any thread at any time).
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from llmtap._core.decode import CorruptBody
from llmtap._core.entry import CacheEntry
from llmtap._core.exchange import Exchange
from llmtap._core.request import LLMCall

log = logging.getLogger("llmtap")


def _abandoned(exchange: Exchange) -> None:
    """A tee's end when it is collected first: report the call, store nothing."""
    try:
        exchange.finish(False, None)
    finally:
        exchange.settle()


def _collected(end: Callable[[], object]) -> None:
    try:
        end()
    except Exception:
        log.warning("llmtap: could not end an abandoned response", exc_info=True)


def _watch(owner: object, end: Callable[[], object]) -> weakref.finalize[..., Any]:
    """Run ``end`` if ``owner`` (a body) is collected before its call ended."""
    finalizer = weakref.finalize(owner, _collected, end)
    finalizer.atexit = False
    return finalizer


class SyncTee:
    decoding_error: type[Exception] = ValueError  # the library's, set by stream_types

    def __init__(
        self,
        inner: Iterable[bytes],
        exchange: Exchange,
        store: Callable[[str, CacheEntry, LLMCall], None],
        watch: bool = True,
    ) -> None:
        self._inner = inner
        self._exchange = exchange
        self._store = store
        self._finalizer = _watch(self, functools.partial(_abandoned, exchange)) if watch else None

    def __iter__(self) -> Iterator[bytes]:
        exchange = self._exchange
        try:
            for chunk in self._inner:
                visible = exchange.feed(chunk)
                if visible:
                    yield visible
            tail = exchange.flush_visible()
            if tail:
                yield tail
        except GeneratorExit:
            self._end(False, None)
            raise
        except BaseException as exc:
            self._end(False, exc)
            if isinstance(exc, CorruptBody):
                raise self.decoding_error(str(exc)) from exc
            raise
        self._end(True, None)

    def close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._end(False, None)

    def _end(self, ended: bool, error: BaseException | None) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        entry = self._exchange.finish(ended, error)
        try:
            if entry is not None and self._exchange.key is not None:
                self._store(self._exchange.key, entry, self._exchange.call)
        finally:
            self._exchange.settle()


class AsyncTee:
    decoding_error: type[Exception] = ValueError

    def __init__(
        self,
        inner: AsyncIterable[bytes],
        exchange: Exchange,
        store: Callable[[str, CacheEntry, LLMCall], Awaitable[None]],
        watch: bool = True,
    ) -> None:
        self._inner = inner
        self._exchange = exchange
        self._store = store
        self._finalizer = _watch(self, functools.partial(_abandoned, exchange)) if watch else None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        exchange = self._exchange
        try:
            async for chunk in self._inner:
                visible = exchange.feed(chunk)
                if visible:
                    yield visible
            tail = exchange.flush_visible()
            if tail:
                yield tail
        except GeneratorExit:
            await self._end(False, None)
            raise
        except BaseException as exc:
            await self._end(False, exc)
            if isinstance(exc, CorruptBody):
                raise self.decoding_error(str(exc)) from exc
            raise
        await self._end(True, None)

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._inner, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await self._end(False, None)

    async def _end(self, ended: bool, error: BaseException | None) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
        entry = self._exchange.finish(ended, error)
        try:
            if entry is not None and self._exchange.key is not None:
                await self._store(self._exchange.key, entry, self._exchange.call)
        finally:
            self._exchange.settle()


class Replay:
    """A stored answer, served chunk by chunk as it was recorded.

    With an ``exchange`` (a hit someone observes), the end of the replay ends the
    call: read to the end, closed early, or collected unread, exactly once. Closed
    once its last chunk was handed out, it was read whole, like a miss closed right
    after its terminal event (the openai SDK stops reading at ``[DONE]``).
    """

    def __init__(self, chunks: Sequence[bytes], exchange: Exchange | None = None) -> None:
        self._chunks = chunks
        self._exchange = exchange
        self._delivered = not chunks
        self._finalizer = None
        if exchange is not None:
            self._finalizer = _watch(self, functools.partial(exchange.served, False))

    def __iter__(self) -> Iterator[bytes]:
        last = len(self._chunks) - 1
        for index, chunk in enumerate(self._chunks):
            self._delivered = index == last
            yield chunk
        self._end(True)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        last = len(self._chunks) - 1
        for index, chunk in enumerate(self._chunks):
            self._delivered = index == last
            yield chunk
        self._end(True)

    def close(self) -> None:
        self._end(self._delivered)

    async def aclose(self) -> None:
        self._end(self._delivered)

    def _end(self, ended: bool) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is None:
            return
        if self._finalizer is not None:
            self._finalizer.detach()
        exchange.served(ended)


@dataclass(frozen=True)
class StreamTypes:
    tee: Any
    async_tee: Any
    replay: Any


@functools.cache
def stream_types(lib: ModuleType) -> StreamTypes:
    """The three body classes, made subclasses of ``lib``'s own stream bases."""
    sync_base, async_base = lib.SyncByteStream, lib.AsyncByteStream
    errors = {"decoding_error": lib.DecodingError}
    return StreamTypes(
        tee=type("TeeStream", (SyncTee, sync_base), errors),
        async_tee=type("AsyncTeeStream", (AsyncTee, async_base), errors),
        replay=type("ReplayStream", (Replay, sync_base, async_base), {}),
    )
