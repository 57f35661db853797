"""Cache backends: ``str`` keys to ``bytes`` values, one protocol for all."""

from typing import TYPE_CHECKING, Any

from llmtap.cache.base import CacheBackend
from llmtap.cache.disk import DiskCache
from llmtap.cache.files import FileCache
from llmtap.cache.memory import MemoryCache

if TYPE_CHECKING:
    from llmtap.cache.redis import RedisCache

__all__ = ["CacheBackend", "DiskCache", "FileCache", "MemoryCache", "RedisCache"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that llmtap works without the optional redis package.
    if name == "RedisCache":
        try:
            from llmtap.cache.redis import RedisCache
        except ModuleNotFoundError as exc:
            if exc.name != "redis":
                raise
            raise ImportError(
                "RedisCache needs the redis package: pip install 'llmtap[redis]'"
            ) from exc
        return RedisCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
