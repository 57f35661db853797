"""llmtap: cache, trace and meter every OpenAI-compatible LLM call at the HTTP transport.

    import openai
    from llmtap.httpx2 import Transport

    client = openai.OpenAI(http_client=openai.DefaultHttpxClient(transport=Transport()))

The transports live in ``llmtap.httpx`` and ``llmtap.httpx2``; the stores and
helpers are re-exported here.
"""

from llmtap._core.control import ControlError
from llmtap._core.entry import CacheEntry, EntryError
from llmtap._core.key import DEFAULT_KEY_IGNORE
from llmtap._version import __version__
from llmtap.cache import CacheBackend, DiskCache, MemoryCache

__all__ = [
    "DEFAULT_KEY_IGNORE",
    "CacheBackend",
    "CacheEntry",
    "ControlError",
    "DiskCache",
    "EntryError",
    "MemoryCache",
    "__version__",
]
