"""What the pytest plugin keeps for one run: the recording store, the keys tests
asked for, the replay misses seen during the current test, and the transports.

It lives outside ``pytest_plugin.py`` (hooks and fixtures only) so the logic is
importable and testable without pytest's machinery.

Why misses are collected here rather than left to the code under test: in
``replay`` the transport answers a miss with an OpenAI-style 404, which the
code under test may well catch and swallow (a retry wrapper, a fallback). The
transports built here note every such answer, and the plugin fails the test
with the message afterwards, whatever the code did with the error.
"""

from __future__ import annotations

import importlib
import re
import shlex
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from llmtap._core.explain import RECORD_ADVICE
from llmtap.cache.files import FileCache

MISS_TYPE = "llmtap_cache_miss"
_NEAREST = re.compile(r"Nearest stored entry: ([0-9A-Za-z_.-]+),")


def optional_module(name: str) -> ModuleType | None:
    """``import name``, or ``None`` when the library is not installed (httpx2 is optional)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class TrackingStore:
    """A :class:`FileCache` that remembers every key read through it.

    Only ``get``/``aget`` count as "asked for": the scan a replay miss does to
    find the nearest recording reads everything and must not mark it used.
    """

    def __init__(self, store: FileCache) -> None:
        self.inner = store
        self.name = store.name
        self.used: set[str] = set()
        self._lock = threading.Lock()

    def _mark(self, key: str) -> None:
        with self._lock:
            self.used.add(key)

    def get(self, key: str) -> bytes | None:
        self._mark(key)
        return self.inner.get(key)

    async def aget(self, key: str) -> bytes | None:
        self._mark(key)
        return await self.inner.aget(key)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.inner.set(key, value, ttl)

    async def aset(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self.inner.aset(key, value, ttl)

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def iter_entries(self) -> Iterator[tuple[str, bytes]]:
        return self.inner.iter_entries()

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()


def may_be_miss(response: Any) -> bool:
    """Cheap header test, so that only a candidate body is ever read here."""
    return bool(
        response.status_code == 404
        and response.headers.get("x-should-retry") == "false"
        and "x-llmtap-cache" in response.headers
    )


def miss_text(response: Any) -> str | None:
    """The message of a (read) replay-miss answer from an llmtap transport, else ``None``."""
    if not may_be_miss(response):
        return None
    try:
        error = orjson.loads(response.content).get("error")
    except Exception:  # not read yet (an upstream stream), not JSON, not an object
        return None
    if isinstance(error, dict) and error.get("type") == MISS_TYPE:
        return str(error.get("message"))
    return None


class _ReportsMisses:
    """Mixed into an llmtap transport: tell the session about every replay miss."""

    _llmtap_session: RecordingSession

    def handle_request(self, request: Any) -> Any:
        response = super().handle_request(request)  # type: ignore[misc]
        if may_be_miss(response):
            response.read()  # llmtap's own small error body, already in memory
            self._llmtap_session.note(response)
        return response

    async def handle_async_request(self, request: Any) -> Any:
        response = await super().handle_async_request(request)  # type: ignore[misc]
        if may_be_miss(response):
            await response.aread()
            self._llmtap_session.note(response)
        return response


class RecordingSession:
    """The plugin's state for one pytest process (a controller or an xdist worker)."""

    def __init__(self, directory: Path, mode: str) -> None:
        self.directory = directory
        self.mode = mode
        self.store = TrackingStore(FileCache(directory))
        self.misses: list[str] = []
        self._lock = threading.Lock()
        self._classes: dict[tuple[str, bool], type[Any]] = {}

    # -- transports ---------------------------------------------------------------

    def transport_class(self, library: str, is_async: bool) -> type[Any]:
        """llmtap's transport for ``library`` ("httpx" / "httpx2") that reports misses."""
        cls = self._classes.get((library, is_async))
        if cls is None:
            shells = importlib.import_module(f"llmtap.{library}")
            base = shells.AsyncTransport if is_async else shells.Transport
            cls = type(f"Recording{base.__name__}", (_ReportsMisses, base), {})
            cls._llmtap_session = self
            self._classes[(library, is_async)] = cls
        return cls

    def transport(self, library: str, is_async: bool, inner: Any = None) -> Any:
        """A transport on the recording store: ``cache_when="always"``, no metrics."""
        if optional_module(library) is None:
            raise ModuleNotFoundError(
                f"{library} is not installed; install it (pip install 'llmtap[httpx2]')"
            )
        cls = self.transport_class(library, is_async)
        return cls(
            transport=inner, cache=self.store, mode=self.mode, cache_when="always", metrics=None
        )

    # -- misses -------------------------------------------------------------------

    def note(self, response: Any) -> None:
        message = miss_text(response)
        if message is not None:
            with self._lock:
                self.misses.append(message)

    def take_misses(self) -> list[str]:
        with self._lock:
            misses, self.misses = self.misses, []
        return misses

    def miss_report(self, misses: list[str], test_id: str) -> str:
        """The failure text for a test whose LLM calls were not all recorded; ``test_id``
        as it can be pasted where pytest ran."""
        lines = [
            f"llmtap: {len(misses)} LLM call(s) in this test had no recording "
            f"(mode {self.mode!r}, recordings in {self.directory}):"
        ]
        for message in dict.fromkeys(misses):
            # LLMTAP_MODE does not reach the plugin: only the command below records.
            lines.append(f"  - {message.removesuffix(' ' + RECORD_ADVICE)}")
            nearest = _NEAREST.search(message)
            if nearest:
                lines.append(f"    nearest recording: {self.directory / nearest[1]}.json")
        lines.append(
            "To record them, run this test once with the real upstream reachable:\n"
            f"    pytest --llmtap-mode=read_write {shlex.quote(test_id)}\n"
            "then commit the new files in the recordings directory."
        )
        return "\n".join(lines)

    # -- unused recordings ----------------------------------------------------------

    def unused(self, used: set[str]) -> list[str]:
        """Recorded keys that no test asked for, sorted."""
        return [key for key in self.store.inner.recorded_keys() if key not in used]
