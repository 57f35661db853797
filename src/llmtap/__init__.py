"""llmtap: cache, trace and meter every OpenAI-compatible LLM call at the HTTP transport.

    import openai
    from llmtap.httpx2 import Transport

    client = openai.OpenAI(http_client=openai.DefaultHttpxClient(transport=Transport()))

The transports live in ``llmtap.httpx`` and ``llmtap.httpx2``; the stores and
helpers are re-exported here.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from llmtap._core.control import ControlError
from llmtap._core.entry import CacheEntry, EntryError
from llmtap._core.key import DEFAULT_KEY_IGNORE
from llmtap._version import __version__
from llmtap.cache import CacheBackend, DiskCache, FileCache, MemoryCache
from llmtap.telemetry import Metrics

if _TYPE_CHECKING:
    from llmtap.cache.redis import RedisCache

__all__ = [
    "DEFAULT_KEY_IGNORE",
    "CacheBackend",
    "CacheEntry",
    "ControlError",
    "DiskCache",
    "EntryError",
    "FileCache",
    "MemoryCache",
    "Metrics",
    "RedisCache",
    "__version__",
]


def __getattr__(name: str) -> _Any:
    # RedisCache needs the optional redis package: import it on first use only.
    if name == "RedisCache":
        from llmtap import cache

        return cache.RedisCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
