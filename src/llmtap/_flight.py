"""Single flight: identical cacheable misses in flight at once go upstream once.

The first call for a key in this process leads; the others wait until its
answer is stored (or not) and then read the store. A waiter whose leader
fails, or takes longer than ``wait``, goes upstream itself.

When the backend can lock (``try_lock`` / ``unlock`` / ``is_locked`` and their
``a``-prefixed async twins, as :class:`~llmtap.cache.redis.RedisCache` has),
the local leader also takes a short lock on the key in the store, so that
processes on other machines wait for it too: a call that finds the key locked
elsewhere polls the store and the lock every ``poll`` seconds and is served
the stored answer; if the lock goes away without an answer (the leader failed,
died, or its lock expired) it goes upstream itself. Every error on the lock
path fails open — the call goes upstream — and is reported through
``on_error`` (the transport counts it and warns once per outage).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol, cast

import anyio
import anyio.lowlevel

from llmtap._core.engine import describe_error
from llmtap._core.exchange import Exchange
from llmtap._core.request import LLMCall
from llmtap.cache.base import running_loop

log = logging.getLogger("llmtap")

_Op = tuple[str, tuple[Any, ...]]


class LockingBackend(Protocol):
    """What a backend offers for single flight across processes (all optional)."""

    lock_ttl: float

    def get(self, key: str) -> bytes | None: ...

    def try_lock(self, key: str, ttl: float) -> str | None: ...

    def unlock(self, key: str, token: str) -> None: ...

    def is_locked(self, key: str) -> bool: ...

    async def aget(self, key: str) -> bytes | None: ...

    async def atry_lock(self, key: str, ttl: float) -> str | None: ...

    async def aunlock(self, key: str, token: str) -> None: ...

    async def ais_locked(self, key: str) -> bool: ...


class _Flight:
    """One key's flight. Waiters in other threads block on ``event``; async waiters,
    in any event loop (asyncio or trio), register a waker that :meth:`release` calls."""

    __slots__ = ("_lock", "_wakers", "event", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.event = threading.Event()
        #: The leading call's asyncio loop, where its cross-process unlock runs.
        self.loop = loop
        self._wakers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            self.event.set()
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            try:
                wake()
            except Exception:  # the waiter's event loop has ended: nobody waits
                pass

    async def wait(self, timeout: float) -> None:
        """Wait in the current event loop, whichever library runs it, without parking a
        thread: a parked thread cannot be cancelled, and ``asyncio.run`` waits for it."""
        event = anyio.Event()
        native: Any = anyio.lowlevel.current_token().native_token
        # asyncio's loop or trio's token: either schedules a callback from any thread.
        schedule = getattr(native, "call_soon_threadsafe", None) or native.run_sync_soon

        def wake() -> None:
            schedule(event.set)

        with self._lock:
            if self.event.is_set():
                return
            self._wakers.append(wake)
        try:
            with anyio.move_on_after(timeout):
                await event.wait()
        finally:
            with self._lock:
                if wake in self._wakers:
                    self._wakers.remove(wake)


_LOCK_METHODS = ("try_lock", "unlock", "is_locked", "atry_lock", "aunlock", "ais_locked")


def _locking(backend: object) -> LockingBackend | None:
    """``backend`` if it can lock across processes. Its methods are checked by name:
    ``isinstance`` on a runtime-checkable Protocol is slow, and a transport is built
    per test in a recorded test suite."""
    if hasattr(backend, "lock_ttl") and all(
        callable(getattr(backend, name, None)) for name in _LOCK_METHODS
    ):
        return cast(LockingBackend, backend)
    return None


class FlightTable:
    """Flights of one transport, by key.

    ``on_error(op, exc, call)`` / ``on_recovered(op)`` report lock-path failures of
    the backend (op ``"lock"``, for the leading ``call``); without them a failure is
    logged once per outage.
    """

    def __init__(
        self,
        backend: object = None,
        wait: float = 300.0,
        *,
        poll: float = 0.05,
        lock_ttl: float | None = None,
        on_error: Callable[[str, BaseException, LLMCall], None] | None = None,
        on_recovered: Callable[[str], None] | None = None,
    ) -> None:
        self.backend = backend
        self.wait = wait
        self.poll = poll
        self.remote = _locking(backend)
        if lock_ttl is None:
            lock_ttl = self.remote.lock_ttl if self.remote is not None else 60.0
        self.lock_ttl = lock_ttl
        self._on_error = on_error
        self._on_recovered = on_recovered
        self._warned = False
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        #: Flights ended so far. A driver notes it before reading the store; a call that
        #: then claims a key while this moved may have missed an answer stored meanwhile.
        self.released = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- in this process --------------------------------------------------------

    def _claim(self, key: str, is_async: bool) -> tuple[_Flight, bool]:
        """The flight for ``key``, and whether this call leads it."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = _Flight(running_loop() if is_async else None)
            return flight, True

    def _release(self, key: str, flight: _Flight) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            self.released += 1
        flight.release()

    def join(self, key: str, exchange: Exchange, ticket: int | None = None) -> bool | None:
        """``None``: this call leads (release registered on ``exchange``); ``False``:
        a leader finished (or took too long), read the store.

        ``ticket`` is :attr:`released` as it was before this call read the store: if a
        flight ended since, its answer may be stored now, so the store is checked again
        before leading (else a call that looked just before a leader stored would go
        upstream a second time)."""
        flight, leads = self._claim(key, is_async=False)
        if not leads:
            flight.event.wait(self.wait)
            return False
        try:
            if ticket is not None and ticket != self.released and self._stored(key):
                self._release(key, flight)
                return False
            token = None
            if self.remote is not None:
                stored, token = self._drive(key, exchange.call)
                if stored:
                    self._unlock(key, token, exchange.call)
                    self._release(key, flight)
                    return False
        except BaseException:
            self._release(key, flight)  # interrupted before leading: free the waiters
            raise
        exchange.on_settled(lambda: self._settle(key, flight, token, exchange.call))
        return None

    async def ajoin(self, key: str, exchange: Exchange, ticket: int | None = None) -> bool | None:
        flight, leads = self._claim(key, is_async=True)
        if not leads:
            await flight.wait(self.wait)
            return False
        try:
            if ticket is not None and ticket != self.released and await self._astored(key):
                self._release(key, flight)
                return False
            token = None
            if self.remote is not None:
                stored, token = await self._adrive(key, exchange.call)
                if stored:
                    await self._aunlock(key, token, exchange.call)
                    self._release(key, flight)
                    return False
        except BaseException:
            self._release(key, flight)  # cancelled before leading: free the waiters
            raise
        exchange.on_settled(lambda: self._settle(key, flight, token, exchange.call))
        return None

    def _stored(self, key: str) -> bool:
        try:
            return cast(Any, self.backend).get(key) is not None
        except Exception:  # the flow's own read reports a failing store
            return False

    async def _astored(self, key: str) -> bool:
        try:
            return await cast(Any, self.backend).aget(key) is not None
        except Exception:
            return False

    def _settle(self, key: str, flight: _Flight, token: str | None, call: LLMCall) -> None:
        """The leader's answer is stored (or the call failed): wake everyone."""
        self._release(key, flight)
        if token is None:
            return
        loop = running_loop()
        if loop is not None and loop is flight.loop:
            task = loop.create_task(self._aunlock(key, token, call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._unlock(key, token, call)

    # -- across processes -------------------------------------------------------

    def _remote_flow(self, key: str) -> Generator[_Op, Any, bool]:
        """Lead across processes, or wait for the leader elsewhere. Returns whether
        the answer is now stored; a taken lock's token is seen by the driver."""
        if (yield ("try_lock", (key, self.lock_ttl))) is not None:
            # A leader elsewhere may have stored and unlocked since our first read.
            return (yield ("get", (key,))) is not None
        deadline = time.monotonic() + self.wait
        while True:
            if (yield ("get", (key,))) is not None:
                return True
            if not (yield ("is_locked", (key,))):
                # Unlocked: stored just now, or the leader failed or died.
                return (yield ("get", (key,))) is not None
            if time.monotonic() >= deadline:
                return False
            yield ("sleep", (self.poll,))

    def _drive(self, key: str, call: LLMCall) -> tuple[bool, str | None]:
        run, remote = _LockRun(self._remote_flow(key)), self.remote
        try:
            while (step := run.next()) is not None:
                op, args = step
                if op == "sleep":
                    time.sleep(*args)
                    run.result = None
                else:
                    run.result = getattr(remote, op)(*args)
        except Exception as exc:
            self._failed(exc, call)
            return False, run.token
        self._recovered()
        return run.stored, run.token

    async def _adrive(self, key: str, call: LLMCall) -> tuple[bool, str | None]:
        run, remote = _LockRun(self._remote_flow(key)), self.remote
        try:
            while (step := run.next()) is not None:
                op, args = step
                if op == "sleep":
                    await anyio.sleep(*args)
                    run.result = None
                else:
                    run.result = await getattr(remote, "a" + op)(*args)
        except Exception as exc:
            self._failed(exc, call)
            return False, run.token
        self._recovered()
        return run.stored, run.token

    def _unlock(self, key: str, token: str | None, call: LLMCall) -> None:
        if token is None or self.remote is None:
            return
        try:
            self.remote.unlock(key, token)
        except Exception as exc:
            self._failed(exc, call)

    async def _aunlock(self, key: str, token: str | None, call: LLMCall) -> None:
        if token is None or self.remote is None:
            return
        try:
            await self.remote.aunlock(key, token)
        except Exception as exc:
            self._failed(exc, call)

    def _failed(self, exc: BaseException, call: LLMCall) -> None:
        if self._on_error is not None:
            self._on_error("lock", exc, call)
        elif not self._warned:
            self._warned = True
            log.warning(
                "llmtap: single-flight lock on the cache failed (%s); calls go upstream "
                "without waiting for other processes",
                describe_error(exc),
            )

    def _recovered(self) -> None:
        if self._on_recovered is not None:
            self._on_recovered("lock")
        self._warned = False


class _LockRun:
    """Steps the lock flow for a driver and keeps the lock token it took."""

    __slots__ = ("_flow", "_op", "result", "stored", "token")

    def __init__(self, flow: Generator[_Op, Any, bool]) -> None:
        self._flow = flow
        self._op = ""
        self.result: Any = None
        self.stored = False
        self.token: str | None = None

    def next(self) -> _Op | None:
        if self._op == "try_lock":
            self.token = self.result
        try:
            step = self._flow.send(self.result)
        except StopIteration as stop:
            self.stored = bool(stop.value)
            return None
        self._op = step[0]
        return step
