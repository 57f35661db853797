"""RedisCache: the backend contract, the transports, single flight across processes,
and failing open when Redis is down, killed, restarted or slow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import httpx2
import orjson
import pytest
import redis
from prometheus_client import CollectorRegistry

import backend_contract
import llmtap.httpx
import llmtap.httpx2
from conftest import cache_errors, chat
from llmtap import Metrics, RedisCache
from llmtap._core.entry import decode_entry
from llmtap.testing import FakeUpstream
from redis_server import (
    RedisServer,
    TlsRedisServer,
    free_port,
    require_openssl,
    require_redis_server,
)

URL = "https://api.openai.com/v1/chat/completions"
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    srv = RedisServer(require_redis_server())
    srv.start()
    yield srv
    srv.close()


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test's own, free to be killed and restarted."""
    srv = RedisServer(require_redis_server())
    srv.start()
    yield srv
    srv.close()


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def backend(server: RedisServer) -> Iterator[RedisCache]:
    store = RedisCache(server.url, prefix=_prefix())
    yield store
    store.clear()
    store.close()


# The shared backend contract (tests/backend_contract.py), run against RedisCache
# through the ``backend`` fixture above.
globals().update({n: f for n, f in vars(backend_contract).items() if n.startswith("test_")})
make_entry = backend_contract.make_entry


def _content(body: bytes) -> str:
    return str(orjson.loads(body)["choices"][0]["message"]["content"])


def _reference(seeds: list[int]) -> dict[int, str]:
    fake = FakeUpstream()
    return {s: _content(fake(httpx2.Request("POST", URL, json=chat(seed=s))).read()) for s in seeds}


# -- the store itself ------------------------------------------------------------


def test_values_are_the_entry_bytes_under_the_prefix(backend: RedisCache) -> None:
    value = make_entry("raw")
    backend.set("abc", value)
    with redis.Redis.from_url(backend.url) as raw:
        assert raw.get(backend.prefix + "abc") == value
        assert raw.ttl(backend.prefix + "abc") == -1


def test_ttl_is_redis_expiry(backend: RedisCache) -> None:
    backend.set("short", make_entry(), ttl=0.2)
    backend.set("long", make_entry(), ttl=60)
    with redis.Redis.from_url(backend.url) as raw:
        assert 0 < raw.pttl(backend.prefix + "short") <= 200
    time.sleep(0.3)
    assert backend.get("short") is None
    assert backend.get("long") is not None
    assert [k for k, _ in backend.iter_entries()] == ["long"]


async def test_async_ttl_and_client_per_loop(backend: RedisCache) -> None:
    await backend.aset("a", make_entry(), ttl=0.2)
    assert await backend.aget("a") is not None
    time.sleep(0.3)
    assert await backend.aget("a") is None
    await backend.aclose()


def test_iter_stats_clear_keep_to_the_prefix(backend: RedisCache, server: RedisServer) -> None:
    other = RedisCache(server.url, prefix=backend.prefix[:-1] + "x:")
    try:
        other.set("theirs", make_entry())
        for i in range(3):
            backend.set(f"k{i}", make_entry(str(i)))
        token = backend.try_lock("k0", 5)
        assert token is not None
        assert sorted(k for k, _ in backend.iter_entries()) == ["k0", "k1", "k2"]
        stats = backend.stats()
        assert stats["entries"] == 3 and stats["size_bytes"] == 3 * len(make_entry("0"))
        backend.clear()
        assert list(backend.iter_entries()) == []
        assert not backend.is_locked("k0")
        assert other.get("theirs") is not None
    finally:
        other.clear()
        other.close()


def test_glob_characters_in_the_prefix_are_literal(server: RedisServer) -> None:
    star, plain = RedisCache(server.url, prefix="p*:"), RedisCache(server.url, prefix="pq:")
    try:
        plain.set("k", make_entry())
        star.set("k", make_entry())
        assert [k for k, _ in star.iter_entries()] == ["k"]
        star.clear()
        assert plain.get("k") is not None
    finally:
        plain.clear()
        star.close()
        plain.close()


def test_locks_compare_and_delete(backend: RedisCache) -> None:
    token = backend.try_lock("k", 5)
    assert token is not None and backend.is_locked("k")
    assert backend.try_lock("k", 5) is None
    backend.unlock("k", "not-the-token")
    assert backend.is_locked("k")
    backend.unlock("k", token)
    assert not backend.is_locked("k")
    assert backend.try_lock("short", 0.1) is not None
    time.sleep(0.2)
    assert not backend.is_locked("short")


async def test_async_locks(backend: RedisCache) -> None:
    token = await backend.atry_lock("k", 5)
    assert token is not None and await backend.ais_locked("k")
    assert await backend.atry_lock("k", 5) is None
    await backend.aunlock("k", token)
    assert not await backend.ais_locked("k")
    await backend.aclose()


async def test_aclose_waits_for_an_unlock_scheduled_just_before(backend: RedisCache) -> None:
    """A leader's answer settling schedules its unlock as a task; an ``aclose()`` right
    after must let it run on the client it closes, not have it open a new one after
    (a connection nobody closes: found by the TLS tests)."""
    token = await backend.atry_lock("k" * 64, 60.0)
    assert token is not None
    asyncio.get_running_loop().create_task(backend.aunlock("k" * 64, token))
    await backend.aclose()
    assert asyncio.get_running_loop() not in backend._aclients  # no client reopened
    assert not backend.is_locked("k" * 64)  # and the unlock did run


def test_settings_are_checked_and_the_password_redacted() -> None:
    with pytest.raises(ValueError, match="http://x"):
        RedisCache("http://x")
    with pytest.raises(ValueError, match="socket_timeout"):
        RedisCache(socket_timeout=-1)
    with pytest.raises(ValueError, match="max_connections"):
        RedisCache(max_connections=0)
    cache = RedisCache("redis://user:s3cret@h:1/0")
    assert "s3cret" not in repr(cache)


def test_import_llmtap_without_redis() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None
        import llmtap
        try:
            llmtap.RedisCache
        except ImportError as exc:
            print("ImportError:", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'llmtap[redis]'" in out.stdout


# -- through the transports ------------------------------------------------------


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
def test_sync_transport_second_call_is_a_hit(lib_name: str, backend: RedisCache) -> None:
    lib: Any = {"httpx": httpx, "httpx2": httpx2}[lib_name]
    shell: Any = {"httpx": llmtap.httpx, "httpx2": llmtap.httpx2}[lib_name]
    fake = FakeUpstream()
    transport = shell.Transport(transport=lib.MockTransport(fake), cache=backend, metrics=None)
    with lib.Client(transport=transport) as client:
        first = client.post(URL, json=chat(seed=3))
        second = client.post(URL, json=chat(seed=3))
    assert fake.request_count == 1
    assert first.headers["x-llmtap-cache"] == "miss"
    assert second.headers["x-llmtap-cache"] == "hit"
    assert second.content == first.content
    assert decode_entry(backend.get(first.headers["x-llmtap-cache-key"]) or b"").status == 200


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
async def test_async_transport_second_call_is_a_hit(lib_name: str, backend: RedisCache) -> None:
    lib: Any = {"httpx": httpx, "httpx2": httpx2}[lib_name]
    shell: Any = {"httpx": llmtap.httpx, "httpx2": llmtap.httpx2}[lib_name]
    fake = FakeUpstream()
    transport = shell.AsyncTransport(transport=lib.MockTransport(fake), cache=backend, metrics=None)
    async with lib.AsyncClient(transport=transport) as client:
        first = await client.post(URL, json=chat(seed=4, stream=True))
        second = await client.post(URL, json=chat(seed=4, stream=True))
    assert fake.request_count == 1
    assert second.headers["x-llmtap-cache"] == "hit"
    assert second.content == first.content
    await backend.aclose()


async def test_async_tasks_single_flight(backend: RedisCache) -> None:
    import asyncio

    fake = FakeUpstream(latency=0.2)
    transport = llmtap.httpx2.AsyncTransport(
        transport=httpx2.MockTransport(fake), cache=backend, metrics=None
    )
    async with httpx2.AsyncClient(transport=transport) as client:
        answers = await asyncio.gather(*(client.post(URL, json=chat(seed=5)) for _ in range(6)))
    assert fake.request_count == 1
    assert len({a.content for a in answers}) == 1
    await backend.aclose()


# -- single flight across processes ---------------------------------------------

WORKER = """
import asyncio, json, sys, threading, time
import httpx, httpx2
import llmtap.httpx, llmtap.httpx2
from llmtap import RedisCache

redis_url, base, prefix, style, start_at, seeds = sys.argv[1:7]
seeds = [int(s) for s in seeds.split(",")]
cache = RedisCache(redis_url, prefix=prefix)
url = base + "/chat/completions"

def body(seed):
    return {"model": "gpt-4o-mini", "seed": seed,
            "messages": [{"role": "user", "content": "Say something about caching."}]}

def answer(seed, r):
    content = json.loads(r.content)["choices"][0]["message"]["content"]
    return {"seed": seed, "cache": r.headers["x-llmtap-cache"], "content": content}

out = []
if style == "sync":
    transport = llmtap.httpx2.Transport(cache=cache, metrics=None)
    with httpx2.Client(transport=transport, timeout=30) as client:
        def call(seed):
            out.append(answer(seed, client.post(url, json=body(seed))))
        threads = [threading.Thread(target=call, args=(s,)) for s in seeds]
        time.sleep(max(0.0, float(start_at) - time.time()))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    cache.close()
else:
    async def main():
        transport = llmtap.httpx.AsyncTransport(cache=cache, metrics=None)
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:
            async def call(seed):
                out.append(answer(seed, await client.post(url, json=body(seed))))
            await asyncio.sleep(max(0.0, float(start_at) - time.time()))
            await asyncio.gather(*(call(s) for s in seeds))
        await cache.aclose()
    asyncio.run(main())
    cache.close()
print(json.dumps(out))
"""


def test_four_processes_reach_upstream_once_per_request(server: RedisServer) -> None:
    seeds = list(range(5))
    reference = _reference(seeds)
    prefix = _prefix()
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    with FakeUpstream(latency=0.3) as fake:
        start_at = str(time.time() + 2.0)
        args = [server.url, fake.base_url, prefix]
        csv = ",".join(map(str, seeds))
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *args, style, start_at, csv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            for style in ("sync", "sync", "async", "async")
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()
            results.extend(json.loads(out))
        assert fake.request_count == len(seeds)
    RedisCache(server.url, prefix=prefix).clear()
    assert len(results) == 4 * len(seeds)
    assert all(r["content"] == reference[r["seed"]] for r in results)
    assert sorted(r["seed"] for r in results if r["cache"] == "miss") == seeds


# -- failing open ------------------------------------------------------------------


class Probe:
    """One transport on a RedisCache, with its own metrics and upstream."""

    def __init__(self, url: str, io: str, **kw: Any) -> None:
        self.io = io
        self.fake = FakeUpstream()
        self.registry = CollectorRegistry()
        self.cache = RedisCache(url, prefix=_prefix(), **kw)
        metrics = Metrics(registry=self.registry)
        if io == "sync":
            self.transport: Any = llmtap.httpx2.Transport(
                transport=httpx2.MockTransport(self.fake), cache=self.cache, metrics=metrics
            )
        else:
            self.transport = llmtap.httpx.AsyncTransport(
                transport=httpx.MockTransport(self.fake), cache=self.cache, metrics=metrics
            )
        self._reference: dict[int, str] = {}

    async def _apost(self, seed: int) -> httpx.Response:
        async with httpx.AsyncClient(transport=self.transport) as client:
            response = await client.post(URL, json=chat(seed=seed))
        await self.cache.aclose()
        return response

    def call(self, seed: int) -> str:
        """One call; asserts the answer is right. Returns the cache header."""
        if self.io == "sync":
            with httpx2.Client(transport=self.transport) as client:
                response: Any = client.post(URL, json=chat(seed=seed))
        else:
            import asyncio

            response = asyncio.run(self._apost(seed))
        assert response.status_code == 200
        if seed not in self._reference:
            self._reference.update(_reference([seed]))
        assert _content(response.content) == self._reference[seed]
        return str(response.headers["x-llmtap-cache"])

    def errors(self) -> float:
        return cache_errors(self.registry)

    def close(self) -> None:
        try:
            self.cache.clear()
        finally:
            self.cache.close()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("io", ["sync", "async"])
def test_redis_down_at_start(io: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="llmtap")
    probe = Probe(f"redis://127.0.0.1:{free_port()}/0", io)
    started = time.monotonic()
    assert probe.call(1) == "miss"
    after_one = len(_warnings(caplog))
    assert after_one >= 1
    assert [probe.call(1) for _ in range(4)] == ["miss"] * 4
    assert time.monotonic() - started < 3
    assert probe.fake.request_count == 5
    assert len(_warnings(caplog)) == after_one  # once per outage, not once per call
    assert probe.errors() >= 5
    probe.cache.close()


@pytest.mark.parametrize("io", ["sync", "async"])
def test_redis_killed_mid_run_then_restarted(
    io: str, own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llmtap")
    probe = Probe(own_server.url, io, retry_after=0.2)
    try:
        assert [probe.call(1), probe.call(1)] == ["miss", "hit"]
        assert _warnings(caplog) == []
        own_server.stop()
        assert [probe.call(1), probe.call(2), probe.call(2)] == ["miss"] * 3
        outage = _warnings(caplog)
        assert outage and len(outage) == len(set(outage)) and probe.errors() >= 3
        own_server.start()  # same port, empty: nothing survived the kill
        time.sleep(0.3)  # past retry_after: the store is tried again
        caplog.clear()
        assert [probe.call(3), probe.call(3), probe.call(1)] == ["miss", "hit", "miss"]
        assert _warnings(caplog) == []
        assert probe.fake.request_count == 6
        own_server.stop()  # a second outage warns again
        assert probe.call(4) == "miss"
        assert any("get" in w for w in _warnings(caplog))
    finally:
        own_server.start()
        time.sleep(0.3)
        probe.close()


def test_slow_redis_times_out_and_the_call_goes_on(
    own_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="llmtap")
    probe = Probe(own_server.url, "sync", socket_timeout=0.2, retry_after=0.2)
    try:
        assert [probe.call(1), probe.call(1)] == ["miss", "hit"]
        with redis.Redis.from_url(own_server.url) as admin:
            admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
            started = time.monotonic()
            assert probe.call(1) == "miss"  # Redis has it, but too slowly to wait for
            first = time.monotonic() - started
            assert [probe.call(2) for _ in range(3)] == ["miss"] * 3
            took = time.monotonic() - started
        assert first < 1.2 and took < 1.5
        assert probe.errors() >= 1
        outage = _warnings(caplog)
        assert outage and len(outage) == len(set(outage))
        time.sleep(1.4)  # the pause ends: the cache is used again
        assert probe.call(5) == "miss"
        assert probe.call(5) == "hit"
    finally:
        probe.close()


def test_pool_is_bounded(backend: RedisCache) -> None:
    small = RedisCache(backend.url, prefix=backend.prefix, max_connections=2)
    try:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for i in range(20):
                    small.set(f"p{i}", make_entry())
                    small.get(f"p{i}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(small.client.connection_pool._connections) <= 2
    finally:
        small.close()


def test_cli_cache_commands_over_redis(
    server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmtap import FileCache
    from llmtap.cli import main

    url = server.url.rsplit("/", 1)[0] + "/5"  # a database of its own, default prefix
    store = RedisCache(url)
    now = time.time()
    keys = ["a" * 64, "b" * 64, "c" * 64]
    store.set(keys[0], make_entry("fresh", created=now))
    store.set(keys[1], make_entry("streamed", stream=True, created=now))
    store.set(keys[2], make_entry("ancient", created=now - 40 * 86400))

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main(["cache", *argv, "--redis-url", url])
        out, err = capsys.readouterr()
        return code, out, err

    try:
        code, out, _ = cli("stats")
        assert code == 0 and "entries: 3" in out and "redis" in out
        code, out, _ = cli("ls")
        assert code == 0 and out.splitlines()[-1] == "3 entries"
        code, out, _ = cli("show", "bbbb")
        assert code == 0 and "streamed" in out
        assert cli("show", "nope")[0] == 2
        assert cli("prune", "--older-than", "7d")[0] == 0
        assert store.get(keys[2]) is None and store.get(keys[0]) is not None
        code, _, _ = cli("export", str(tmp_path / "out"))
        assert code == 0 and len(list(FileCache(tmp_path / "out").iter_entries())) == 2
        assert cli("clear")[0] == 0
        assert list(store.iter_entries()) == []
        code, _, _ = cli("import", str(tmp_path / "out"))
        assert code == 0 and store.get(keys[1]) is not None
    finally:
        store.clear()
        store.close()


def test_cli_reaches_a_store_with_its_own_prefix(
    server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """README gives each application its own prefix; the CLI must reach that store."""
    from llmtap.cli import main

    url = server.url.rsplit("/", 1)[0] + "/6"
    mine, default = RedisCache(url, prefix="myapp:"), RedisCache(url)
    try:
        mine.set("d" * 64, make_entry("mine", created=time.time()))
        default.set("e" * 64, make_entry("default", created=time.time()))
        assert main(["cache", "ls", "--redis-url", url, "--redis-prefix", "myapp:"]) == 0
        out = capsys.readouterr().out
        assert "dddd" in out and "eeee" not in out and out.splitlines()[-1] == "1 entries"
        assert main(["cache", "clear", "--redis-url", url, "--redis-prefix", "myapp:"]) == 0
        capsys.readouterr()
        assert list(mine.iter_entries()) == [] and default.get("e" * 64) is not None
        assert main(["cache", "stats", "--redis-prefix", "myapp:"]) == 2
        assert "--redis-prefix needs --redis-url" in capsys.readouterr().err
    finally:
        for store in (mine, default):
            store.clear()
            store.close()


# -- TLS (rediss://): managed Redis services usually require it --------------------------


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsRedisServer]:
    srv = TlsRedisServer(require_redis_server(), require_openssl())
    srv.start()
    yield srv
    srv.close()


@pytest.mark.parametrize("io", ["sync", "async"])
def test_a_tls_store_serves_hits(io: str, tls_server: TlsRedisServer) -> None:
    probe = Probe(tls_server.url, io)
    try:
        assert [probe.call(9), probe.call(9)] == ["miss", "hit"]
        assert probe.fake.request_count == 1 and probe.errors() == 0
    finally:
        probe.cache.clear()
        probe.cache.close()


def test_an_untrusted_tls_certificate_fails_open(
    tls_server: TlsRedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the CA the certificate does not verify: the call still goes upstream,
    the failure is counted, and the warning says why."""
    caplog.set_level(logging.WARNING, logger="llmtap")
    probe = Probe(f"rediss://127.0.0.1:{tls_server.port}/0", "sync")
    try:
        assert [probe.call(10), probe.call(10)] == ["miss", "miss"]
        assert probe.fake.request_count == 2 and probe.errors() >= 2
        # the reason, not only redis-py 8's error category ("network:ConnectionError")
        assert any("CERTIFICATE_VERIFY_FAILED" in w for w in _warnings(caplog)), _warnings(caplog)
    finally:
        probe.cache.close()


def test_under_trio_the_async_client_fails_open_and_says_why(
    backend: RedisCache, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-py's async client is asyncio-only: under trio every call goes upstream, and
    the warning names the reason instead of "no running event loop"."""
    import trio

    fake = FakeUpstream()

    async def main() -> list[str]:
        transport = llmtap.httpx2.AsyncTransport(
            transport=httpx2.MockTransport(fake), cache=backend, metrics=None
        )
        async with httpx2.AsyncClient(transport=transport) as client:
            return [(await client.post(URL, json=chat())).headers["x-llmtap-cache"] for _ in "ab"]

    with caplog.at_level("WARNING", logger="llmtap"):
        assert trio.run(main) == ["miss", "miss"]
    assert len(fake.requests) == 2
    assert "only under asyncio" in caplog.text


def test_a_longer_prefix_is_another_store(backend: RedisCache, server: RedisServer) -> None:
    """``llmtap:`` must not list or clear ``llmtap:ci:``'s entries (a prefix per branch
    or suite, as the README advises, nests under the default one)."""
    nested = RedisCache(server.url, prefix=backend.prefix + "ci:")
    try:
        nested.set("theirs", make_entry())
        assert nested.try_lock("theirs", 5) is not None
        backend.set("mine", make_entry())
        assert [k for k, _ in backend.iter_entries()] == ["mine"]
        assert backend.stats()["entries"] == 1
        backend.clear()
        assert nested.get("theirs") is not None and nested.is_locked("theirs")
        with pytest.raises(ValueError, match="':'"):
            backend.set("ci:theirs", make_entry())
    finally:
        nested.clear()
        nested.close()


def test_a_hung_redis_costs_one_timeout_per_window(own_server: RedisServer) -> None:
    """Redis accepts but never answers: one caller at a time tries it again once the
    window has passed, and each failed try doubles the window."""
    store = RedisCache(own_server.url, prefix=_prefix(), socket_timeout=0.2, retry_after=0.6)
    store.set("k", b"v")

    def timed(_: object = None) -> float:
        began = time.monotonic()
        with contextlib.suppress(redis.RedisError):
            store.get("k")
        return time.monotonic() - began

    try:
        with redis.Redis.from_url(own_server.url) as admin:
            admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")
        paused_at = time.monotonic()
        assert timed() >= 0.15  # the first call pays the timeout: down for 0.6 s
        time.sleep(0.7)
        with ThreadPoolExecutor(8) as pool:
            took = list(pool.map(timed, range(8)))
        assert sum(t >= 0.15 for t in took) == 1, took  # one tried; seven failed fast
        time.sleep(0.7)  # past the first window's length, well within the doubled one
        assert timed() < 0.1
        time.sleep(max(0.0, paused_at + 3.2 - time.monotonic()))  # the pause and window end
        assert store.get("k") == b"v"
    finally:
        store.close()


def test_listing_after_an_outage_is_one_try_per_page(own_server: RedisServer) -> None:
    """The first call after an outage window is the one that tries Redis again. A
    listing must not hold that try across its pages: its own later pages (and every
    other call meanwhile) would fail fast."""
    store = RedisCache(own_server.url, prefix=_prefix(), retry_after=0.2)
    try:
        store.set("k0", b"v")
        own_server.stop()
        with pytest.raises(redis.RedisError):
            store.get("k0")  # the outage opens a window
        own_server.start()  # back, empty: filled behind the store's back
        with redis.Redis.from_url(own_server.url) as admin:
            # more than two SCAN pages and two MGET batches
            admin.mset({f"{store.prefix}k{i}": b"v" for i in range(1200)})
        time.sleep(0.3)
        assert len(list(store.iter_entries())) == 1200  # the listing is the first try
        store.clear()
        assert store.stats()["entries"] == 0
    finally:
        store.close()
