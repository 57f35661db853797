"""The default store: diskcache (SQLite in WAL mode plus files), safe across processes."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import platformdirs

from llmtap.cache.base import ThreadedAsync, check_value

_BATCH = 1000


class DiskCacheUnavailable(OSError):
    """The cache directory cannot be opened (missing rights, a read-only mount, a file)."""


class PickleRefused(ValueError):
    """A row of the store is marked as pickled; llmtap never unpickles."""


class SafeDisk(diskcache.Disk):  # type: ignore[misc]
    """A ``diskcache.Disk`` that refuses pickle on write *and* on read.

    diskcache's own ``Disk`` unpickles any row marked as pickled, so a tampered
    ``cache.db`` would run code on read even though llmtap never writes a pickle.
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise PickleRefused(f"llmtap stores only str keys, got {type(key).__name__}")
        return super().put(key)  # type: ignore[no-any-return]

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise PickleRefused("refusing a pickled key in the cache database")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if type(value) is not bytes:
            raise PickleRefused(f"llmtap stores only bytes values, got {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode not in (diskcache.core.MODE_RAW, diskcache.core.MODE_BINARY):
            raise PickleRefused(f"refusing a cache row stored in mode {mode} (not raw bytes)")
        if filename is not None and (os.path.isabs(filename) or ".." in Path(filename).parts):
            raise PickleRefused(f"refusing a cache row pointing outside the store: {filename!r}")
        return super().fetch(mode, filename, value, read)


def default_directory() -> Path:
    """``LLMTAP_CACHE_DIR``, else the platform's user cache dir (``~/.cache/llmtap``)."""
    env = os.environ.get("LLMTAP_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("llmtap"))


class DiskCache(ThreadedAsync):
    """A diskcache-backed store: one machine, many processes.

    The database opens on first use, so an unusable directory degrades each
    call to the network (with a warning) instead of failing the program at
    start. ``timeout`` is SQLite's lock wait; it is short because a slow
    store must never hold up an LLM call for long.

    >>> from llmtap import DiskCache
    >>> cache = DiskCache("/tmp/llmtap-cache", size_limit=2**30)
    """

    name = "disk"

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        size_limit: int = 2**30,
        timeout: float = 1.0,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_directory()
        self.size_limit = size_limit
        self.timeout = timeout
        self._cache: diskcache.Cache | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> diskcache.Cache:
        cache = self._cache
        if cache is None:
            with self._lock:
                if self._cache is None:
                    try:
                        self._cache = diskcache.Cache(
                            str(self.directory),
                            timeout=self.timeout,
                            disk=SafeDisk,
                            size_limit=self.size_limit,
                            eviction_policy="least-recently-stored",
                        )
                    except (OSError, sqlite3.Error) as exc:
                        # SQLite's own message ("unable to open database file") names no
                        # path, and the default directory is one the user never chose.
                        raise DiskCacheUnavailable(
                            f"cannot open the cache in {self.directory}: {exc}"
                        ) from exc
                cache = self._cache
        return cache

    def get(self, key: str) -> bytes | None:
        value = self.store.get(key, default=None, retry=False)
        if value is not None and not isinstance(value, bytes):
            raise PickleRefused(f"cache row for {key} is not bytes")
        return value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_value(key, value)
        self.store.set(key, value, expire=ttl, retry=False)

    def delete(self, key: str) -> bool:
        return bool(self.store.delete(key, retry=True))

    def clear(self) -> None:
        self.store.clear(retry=True)

    def expire(self) -> int:
        """Delete the rows past their TTL (diskcache only culls them as it writes)."""
        return int(self.store.expire(retry=True))

    def iter_entries(self) -> Iterator[tuple[str, bytes]]:
        for key in self._keys():
            try:
                value = self.get(key)
            except PickleRefused:
                continue
            if value is not None:
                yield key, value

    def _keys(self) -> Iterator[str]:
        """Every plain ``str`` key, oldest first, read in batches of rows. diskcache's own
        ``iterkeys`` decodes each key, and ends at the first row whose key is pickled (a
        tampered database): :class:`SafeDisk` refuses it, and listing, ``prune`` and
        ``clear`` would all fail on one bad row."""
        sql = self.store._sql  # diskcache's statement runner (no public row-level API)
        last = 0
        while True:
            rows = sql(
                "SELECT rowid, key FROM Cache WHERE raw = 1 AND rowid > ? ORDER BY rowid LIMIT ?",
                (last, _BATCH),
            ).fetchall()
            if not rows:
                return
            for rowid, key in rows:
                last = rowid
                if type(key) is str:
                    yield key

    def stats(self) -> dict[str, Any]:
        store = self.store
        return {
            "backend": self.name,
            "directory": str(self.directory),
            "entries": len(store),
            "size_bytes": store.volume(),
            "size_limit": self.size_limit,
        }

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    def __repr__(self) -> str:
        return f"DiskCache({str(self.directory)!r})"
