"""Single flight: identical cacheable misses in flight at once go upstream once.

The first call for a key leads; the others wait until its answer is stored
(or not) and then read the store. A waiter whose leader fails, or takes
longer than ``wait``, goes upstream itself.
"""

from __future__ import annotations

import asyncio
import threading

from llmtap._core.exchange import Exchange


class _Flight:
    __slots__ = ("async_event", "event", "loop")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.async_event: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def release(self) -> None:
        self.event.set()
        if self.async_event is not None and self.loop is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self.loop:
                self.async_event.set()
            elif not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.async_event.set)


class FlightTable:
    """Flights of one transport, by key."""

    def __init__(self, backend: object = None, wait: float = 300.0) -> None:
        self.backend = backend
        self.wait = wait
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()

    def _claim(self, key: str, exchange: Exchange, is_async: bool) -> _Flight | None:
        """Lead (``None``: release is registered on ``exchange``) or get the flight to wait on."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight
            flight = self._flights[key] = _Flight()
            if is_async:
                flight.async_event = asyncio.Event()
                flight.loop = asyncio.get_running_loop()

        def release() -> None:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
            flight.release()

        exchange.on_settled(release)
        return None

    def join(self, key: str, exchange: Exchange) -> bool | None:
        flight = self._claim(key, exchange, is_async=False)
        if flight is None:
            return None
        flight.event.wait(self.wait)
        return False

    async def ajoin(self, key: str, exchange: Exchange) -> bool | None:
        flight = self._claim(key, exchange, is_async=True)
        if flight is None:
            return None
        if flight.async_event is None or flight.loop is not asyncio.get_running_loop():
            await asyncio.to_thread(flight.event.wait, self.wait)
            return False
        try:
            await asyncio.wait_for(flight.async_event.wait(), self.wait)
        except TimeoutError:
            pass
        return False
