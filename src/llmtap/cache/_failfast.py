"""Failing fast while a remote store is down, and trying it again one call at a time.

A store that times out instead of refusing (a hung server, a dead host behind a
proxy) would otherwise add its timeout to every call. After an outage error the
store is not touched for a window; then one call tries it while the others keep
failing fast, and each failed try doubles the window, up to a cap.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

MAX_WINDOW = 30.0


class FailFast:
    """The outage state of one store. ``outage`` are the exception types that mean the
    store is unreachable; ``unavailable(message)`` builds the error a call fails fast
    with; ``where`` names the store in that message."""

    def __init__(
        self,
        retry_after: float,
        outage: tuple[type[BaseException], ...],
        unavailable: Callable[[str], Exception],
        where: str,
    ) -> None:
        self.retry_after = retry_after
        self._outage = outage
        self._unavailable = unavailable
        self._where = where
        self._window = retry_after
        self._down_until = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def _check(self) -> bool:
        """Raise while the store is down; ``True`` for the one call that may try it again
        once the window has passed."""
        if not self._down_until:
            return False
        with self._lock:
            if not self._down_until:
                return False
            if self._probing or time.monotonic() < self._down_until:
                raise self._unavailable(
                    f"{self._where} failed moments ago; not retried for {self._window:g}s"
                )
            self._probing = True
            return True

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """One round trip to the store: never across a ``yield`` of the caller's, or a
        try would hold the probe while its consumer works."""
        probing = self._check()
        try:
            yield
        except Exception as exc:
            self._failed(exc, probing)
            raise
        else:
            if self._down_until:
                self._up()
        finally:
            if probing:
                self._probing = False

    def _up(self) -> None:
        self._down_until, self._window = 0.0, self.retry_after

    def _failed(self, exc: BaseException, probing: bool) -> None:
        if not isinstance(exc, self._outage):
            self._up()  # the store answered, with an error: it is up
            return
        with self._lock:
            if not self._down_until:
                self._window = self.retry_after
            elif probing:  # tried again and still down: wait longer before the next try
                self._window = min(self._window * 2, max(MAX_WINDOW, self.retry_after))
            self._down_until = time.monotonic() + self._window
