"""Cache backends: ``str`` keys to ``bytes`` values, one protocol for all."""

from llmtap.cache.base import CacheBackend
from llmtap.cache.disk import DiskCache
from llmtap.cache.memory import MemoryCache

__all__ = ["CacheBackend", "DiskCache", "MemoryCache"]
