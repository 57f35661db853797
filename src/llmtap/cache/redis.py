"""A store shared by many machines: Redis, through redis-py's sync and asyncio clients.

Values are the entry bytes as they are (the entry codec owns the format; never
pickle). Keys are ``prefix + key``; an entry's TTL is Redis expiry. The store
also offers the short per-key locks that make single flight work across
processes and machines (``llmtap._flight``).

A slow or absent Redis must never hold up an LLM call for long: every socket
operation has a short timeout, redis-py's own retries are off, the connection
pools are bounded, and after a connection error or timeout the store fails
fast (without touching the network) for ``retry_after`` seconds before one
call tries Redis again; while Redis stays down the window doubles, up to 30 s.
An outage, even a hung Redis that times out instead of refusing, therefore
costs one timeout per window, not one per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from llmtap.cache._failfast import FailFast
from llmtap.cache.base import check_value

# Delete the lock only if it still holds our token: a lock that expired and was
# taken by another leader must not be released by the old one.
_UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""
_LOCK_TAG = "\x00lock:"
_SCAN_COUNT = 500
_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisUnavailable(RedisConnectionError):
    """Redis failed moments ago; the store is not retried until its window has passed."""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _check_key(key: str, value: bytes) -> None:
    check_value(key, value)
    if ":" in key:
        raise ValueError(
            f"RedisCache keys hold no ':' ({key!r}): it separates prefixes, so a key with one "
            "would be listed and cleared as another prefix's"
        )


class RedisCache:
    """Redis as the cache: one store for a fleet of workers, machines or CI runners.

    ``socket_timeout`` bounds every Redis round trip (and, by default, connecting
    and waiting for a free pooled connection); ``max_connections`` bounds each
    pool (one sync pool, one asyncio pool per event loop). ``lock_ttl`` is how
    long a cross-process single-flight lock lives if its leader never releases
    it (the leader died); ``retry_after`` is how long the store fails fast after
    Redis failed (doubling while it stays down, up to 30 s). Close with :meth:`close` (and ``await``
    :meth:`aclose` in each event loop that used the store).

    >>> from llmtap import RedisCache
    >>> cache = RedisCache("redis://cache.internal:6379/0", prefix="myapp:")
    """

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "llmtap:",
        *,
        socket_timeout: float = 0.5,
        socket_connect_timeout: float | None = None,
        max_connections: int = 32,
        lock_ttl: float = 60.0,
        retry_after: float = 1.0,
    ) -> None:
        if not isinstance(url, str) or urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {url!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {prefix!r}")
        for label, number in (
            ("socket_timeout", socket_timeout),
            ("lock_ttl", lock_ttl),
            ("retry_after", retry_after),
        ):
            if isinstance(number, bool) or not isinstance(number, int | float) or number < 0:
                raise ValueError(f"{label} must be a number of seconds >= 0, got {number!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ValueError(f"max_connections must be a positive int, got {max_connections!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be a positive int, got {max_connections!r}")
        self.url = url
        self.prefix = prefix
        self.socket_timeout = float(socket_timeout)
        self.lock_ttl = float(lock_ttl)
        self.retry_after = float(retry_after)
        self.max_connections = max_connections
        self._options: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": self.socket_timeout,  # wait for a free pooled connection
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": (
                self.socket_timeout if socket_connect_timeout is None else socket_connect_timeout
            ),
            "retry": Retry(NoBackoff(), 0),
        }
        self._lock_prefix = prefix + _LOCK_TAG
        self._fail_fast = FailFast(
            self.retry_after, _OUTAGE, RedisUnavailable, f"Redis at {_redact(url)}"
        )
        self._guard = threading.Lock()
        self._client: redis.Redis | None = None
        self._unlock_script: Any = None
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    # -- clients ----------------------------------------------------------------

    @property
    def client(self) -> redis.Redis:
        """The sync client (one bounded, blocking connection pool), created on first use."""
        client = self._client
        if client is None:
            with self._guard:
                if self._client is None:
                    pool = redis.BlockingConnectionPool.from_url(self.url, **self._options)
                    self._client = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
                    self._unlock_script = self._client.register_script(_UNLOCK)
                client = self._client
        return client

    def _aclient(self) -> _LoopClient:
        """This event loop's asyncio client and unlock script: an asyncio client is
        bound to the loop it was first used in."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "redis-py's async client runs only under asyncio, not this event loop (trio?)"
            ) from None
        with self._guard:
            found = self._aclients.get(loop)
            if found is None:
                options = {**self._options, "retry": AsyncRetry(NoBackoff(), 0)}
                pool = redis.asyncio.BlockingConnectionPool.from_url(self.url, **options)
                client = redis.asyncio.Redis(connection_pool=pool, retry=AsyncRetry(NoBackoff(), 0))
                found = self._aclients[loop] = _LoopClient(client)
        return found

    # -- failing fast during an outage ------------------------------------------

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._fail_fast.attempt():
            return getattr(self.client, method)(*args, **kwargs)

    async def _acall(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._fail_fast.attempt():
            state = self._aclient()
            task = asyncio.current_task()
            if task is not None:
                state.busy.add(task)
            try:
                call = state.script if method == "unlock" else getattr(state.client, method)
                return await call(*args, **kwargs)
            finally:
                if task is not None:
                    state.busy.discard(task)

    # -- the backend protocol ---------------------------------------------------

    @staticmethod
    def _px(ttl: float | None) -> int | None:
        return None if ttl is None else max(1, round(ttl * 1000))

    def get(self, key: str) -> bytes | None:
        value = self._call("get", self.prefix + key)
        return None if value is None else bytes(value)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        _check_key(key, value)
        self._call("set", self.prefix + key, value, px=self._px(ttl))

    async def aget(self, key: str) -> bytes | None:
        value = await self._acall("get", self.prefix + key)
        return None if value is None else bytes(value)

    async def aset(self, key: str, value: bytes, ttl: float | None = None) -> None:
        _check_key(key, value)
        await self._acall("set", self.prefix + key, value, px=self._px(ttl))

    def delete(self, key: str) -> bool:
        return bool(self._call("delete", self.prefix + key))

    def _scan(self, prefix: str) -> Iterator[bytes]:
        """Keys under ``prefix`` with SCAN (never KEYS, which blocks a shared Redis), a
        page per round trip."""
        match, cursor = _glob_escape(prefix) + "*", 0
        while True:
            cursor, keys = self._call("scan", cursor, match=match, count=_SCAN_COUNT)
            yield from keys
            if not cursor:
                return

    def _own_keys(self, locks: bool) -> Iterator[bytes]:
        """This store's keys (and its locks, if asked): not those of a longer prefix
        (``llmtap:ci:`` under ``llmtap:``), whose keys hold a ``:`` after this prefix."""
        start, lock_tag = len(self.prefix.encode()), _LOCK_TAG.encode()
        for raw in self._scan(self.prefix):
            rest = raw[start:]
            if rest.startswith(lock_tag):
                if locks and b":" not in rest[len(lock_tag) :]:
                    yield raw
            elif b":" not in rest:
                yield raw

    def _entry_keys(self) -> Iterator[list[bytes]]:
        batch: list[bytes] = []
        for raw in self._own_keys(locks=False):
            batch.append(raw)
            if len(batch) >= _SCAN_COUNT:
                yield batch
                batch = []
        if batch:
            yield batch

    def iter_entries(self) -> Iterator[tuple[str, bytes]]:
        skip = len(self.prefix.encode())
        for batch in self._entry_keys():
            values = self._call("mget", batch)
            for raw, value in zip(batch, values, strict=True):
                if value is not None:  # expired or deleted since the scan
                    yield raw[skip:].decode("utf-8", "replace"), bytes(value)

    def stats(self) -> dict[str, Any]:
        entries = size = 0
        for batch in self._entry_keys():
            with self.client.pipeline(transaction=False) as pipe:
                for raw in batch:
                    pipe.strlen(raw)
                lengths = pipe.execute()
            entries += sum(1 for n in lengths if n)
            size += sum(lengths)
        return {
            "backend": self.name,
            "url": _redact(self.url),
            "prefix": self.prefix,
            "entries": entries,
            "size_bytes": size,
        }

    def clear(self) -> None:
        """Delete this store's entries and locks, nothing else (not a longer prefix's)."""
        batch: list[bytes] = []
        for raw in self._own_keys(locks=True):
            batch.append(raw)
            if len(batch) >= _SCAN_COUNT:
                self._call("delete", *batch)
                batch = []
        if batch:
            self._call("delete", *batch)

    # -- single-flight locks (optional capability used by llmtap._flight) -------

    def try_lock(self, key: str, ttl: float) -> str | None:
        """Take the flight lock on ``key`` for ``ttl`` seconds: a token, or ``None`` if held."""
        token = secrets.token_hex(16)
        taken = self._call("set", self._lock_prefix + key, token, nx=True, px=self._px(ttl))
        return token if taken else None

    def unlock(self, key: str, token: str) -> None:
        """Release the lock if ``token`` still holds it (compare and delete, atomically)."""
        with self._fail_fast.attempt():
            _ = self.client
            self._unlock_script(keys=[self._lock_prefix + key], args=[token])

    def is_locked(self, key: str) -> bool:
        return bool(self._call("exists", self._lock_prefix + key))

    async def atry_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        taken = await self._acall("set", self._lock_prefix + key, token, nx=True, px=self._px(ttl))
        return token if taken else None

    async def aunlock(self, key: str, token: str) -> None:
        await self._acall("unlock", keys=[self._lock_prefix + key], args=[token])

    async def ais_locked(self, key: str) -> bool:
        return bool(await self._acall("exists", self._lock_prefix + key))

    # -- closing ----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the asyncio client of the running event loop."""
        loop = asyncio.get_running_loop()
        # A command scheduled just before (the unlock a settling answer starts as a
        # task) or starting while we wait would open a new client after this one
        # closed, and nobody would close that: a turn of the loop first lets it count
        # as busy, and a client that appeared meanwhile is closed too.
        for _ in range(3):
            await asyncio.sleep(0)
            with self._guard:
                found = self._aclients.pop(loop, None)
            if found is None:
                return
            busy = found.busy - {asyncio.current_task()}
            if busy:
                await asyncio.wait(busy, timeout=self.socket_timeout or None)
            await _aclose(found.client)

    def close(self) -> None:
        """Close the sync pool, and the asyncio clients of loops that are not running."""
        with self._guard:
            client, self._client = self._client, None
            idle = [loop for loop in self._aclients if not loop.is_running()]
            dropped = [(loop, self._aclients.pop(loop).client) for loop in idle]
        if client is not None:
            client.close()
            client.connection_pool.disconnect()
        for loop, aclient in dropped:
            if not loop.is_closed():
                try:
                    loop.run_until_complete(_aclose(aclient))
                    continue
                except RuntimeError:  # another loop runs in this thread
                    pass
            _abandon(aclient)

    def __repr__(self) -> str:
        return f"RedisCache({_redact(self.url)!r}, prefix={self.prefix!r})"


class _LoopClient:
    """One event loop's asyncio client, and the tasks using it right now."""

    __slots__ = ("busy", "client", "script")

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.script = client.register_script(_UNLOCK)
        self.busy: set[asyncio.Task[Any]] = set()


async def _aclose(client: redis.asyncio.Redis) -> None:
    await client.aclose()
    await client.connection_pool.disconnect()


def _abandon(client: redis.asyncio.Redis) -> None:
    """Close the sockets of an asyncio client whose event loop is gone (it cannot be awaited)."""
    pool = client.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    for conn in connections:
        writer = getattr(conn, "_writer", None)
        if writer is not None:
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.close()  # raises once the loop is closed
            sock = getattr(transport, "_sock", None)
            if sock is not None:
                sock.close()
                transport._sock = None
        conn._writer = conn._reader = None
