"""Route every httpx / httpx2 client built during a test through llmtap.

Why patch ``Client.__init__`` and not the transports' ``handle_request`` (as
vcrpy does): the code under test builds its own client (a bare
``openai.OpenAI()``) with whatever transport, proxies and mounts it likes; after
the original ``__init__`` has chosen them, each is wrapped as the *inner*
transport of an llmtap transport. So the client's own settings still apply to
the real request, non-LLM requests pass through untouched (llmtap never parses
them), and nothing global stays patched once the test ends. A client whose
transport already is an llmtap transport is left alone.

Limitation (documented): a client created *before* the patch starts (at import
time of the code under test) is not routed; build clients lazily or use the
transport fixtures. litellm's own client cache is emptied as the patch starts and
stops, so its clients are built under the right patch.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from llmtap._recordings import RecordingSession, optional_module
from llmtap._transport import TransportCore

_LIBRARIES = ("httpx", "httpx2")


def _forget_cached_clients() -> None:
    """litellm keeps the HTTP clients it builds (for an hour) and reuses them from test to
    test: a marked test would reuse a client built before its patch (not routed), and a
    later unmarked test one built under it (recorded). Both start afresh instead."""
    litellm = sys.modules.get("litellm")
    flush = getattr(getattr(litellm, "in_memory_llm_clients_cache", None), "flush_cache", None)
    if callable(flush):
        flush()


class ClientPatch:
    """Patches ``Client``/``AsyncClient.__init__`` of httpx and httpx2 until :meth:`stop`."""

    def __init__(self, session: RecordingSession) -> None:
        self.session = session
        self._saved: list[tuple[type[Any], Any]] = []

    @property
    def active(self) -> bool:
        return bool(self._saved)

    def start(self) -> None:
        if self._saved:
            return
        _forget_cached_clients()
        for library in _LIBRARIES:
            module = optional_module(library)
            if module is None:
                continue
            for cls, is_async in ((module.Client, False), (module.AsyncClient, True)):
                original = cls.__dict__["__init__"]
                self._saved.append((cls, original))
                cls.__init__ = self._patched(original, library, is_async)

    def stop(self) -> None:
        while self._saved:
            cls, original = self._saved.pop()
            cls.__init__ = original
        _forget_cached_clients()

    def _patched(self, original: Any, library: str, is_async: bool) -> Callable[..., None]:
        wrap = functools.partial(self._wrap, library, is_async)

        @functools.wraps(original)
        def __init__(client: Any, *args: Any, **kwargs: Any) -> None:
            original(client, *args, **kwargs)
            client._transport = wrap(client._transport)
            client._mounts = {
                pattern: None if inner is None else wrap(inner)
                for pattern, inner in client._mounts.items()
            }

        return __init__

    def _wrap(self, library: str, is_async: bool, inner: Any) -> Any:
        if isinstance(inner, TransportCore):
            return inner
        return self.session.transport(library, is_async, inner)
