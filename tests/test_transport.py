"""Transport behaviour over {httpx, httpx2} x {sync, async} x {MockTransport, loopback server}."""

from __future__ import annotations

import importlib
from typing import Any

import orjson
import pytest

from conftest import Harness, chat
from llmtap import DiskCache, MemoryCache

STREAM = {"stream": True, "stream_options": {"include_usage": True}}


@pytest.mark.parametrize("extra", [{}, STREAM], ids=["json", "stream"])
def test_seeded_call_twice_reaches_upstream_once(make_harness: Any, extra: dict[str, Any]) -> None:
    h: Harness = make_harness()
    first = h.post(chat(**extra))
    second = h.post(chat(**extra))
    assert h.fake.request_count == 1
    assert (first.cache, second.cache) == ("miss", "hit")
    assert first.key == second.key and first.key is not None and len(first.key) == 64
    assert first.body == second.body
    if extra:
        # a hit is served event by event, with the recorded chunk boundaries
        assert [c for c in second.chunks if c] == [c for c in first.chunks if c]
        assert len(second.chunks) > 3
        assert second.headers["content-type"].startswith("text/event-stream")


def test_unseeded_is_bypassed_unless_always(make_harness: Any) -> None:
    h: Harness = make_harness()
    results = [h.post(chat(seed=None)) for _ in range(2)]
    assert [r.cache for r in results] == ["bypass", "bypass"]
    assert all(r.key is None for r in results)
    always: Harness = make_harness(cache_when="always")
    assert [always.post(chat(seed=None)).cache for _ in range(2)] == ["miss", "hit"]
    assert h.fake.request_count == 3


def test_deterministic_and_callable_cache_when(make_harness: Any) -> None:
    h: Harness = make_harness(cache_when="deterministic")
    body = chat(seed=None, temperature=0)
    assert [h.post(body).cache for _ in range(2)] == ["miss", "hit"]
    custom: Harness = make_harness(cache_when=lambda body: body.get("model") == "gpt-4o-mini")
    assert [custom.post(chat(seed=None)).cache for _ in range(2)] == ["miss", "hit"]


def test_other_requests_pass_through_untouched(make_harness: Any) -> None:
    h: Harness = make_harness()
    result = h.post(chat(), path="/models")
    assert result.status == 404 and result.cache is None
    bad = h.post(b"{not json", headers={"content-type": "application/json"})
    assert bad.status == 400 and bad.cache is None
    array = h.post(b"[1, 2]")
    assert array.status == 400 and array.cache is None
    assert h.fake.request_count == 3
    assert h.fake.requests[1].body == b"{not json"


def test_llmtap_headers_never_reach_upstream(make_harness: Any) -> None:
    h: Harness = make_harness()
    h.post(chat(), headers={"x-llmtap-cache": "no-store", "x-llmtap-other": "1"})
    h.post(chat(), path="/models", headers={"x-llmtap-cache": "refresh"})
    for received in h.fake.requests:
        assert not any(name.startswith("x-llmtap-") for name in received.headers)


def test_request_is_sent_byte_for_byte(make_harness: Any) -> None:
    h: Harness = make_harness()
    raw = b'{"seed": 7, "model": "gpt-4o-mini",   "messages": []}'
    h.post(raw, headers={"content-type": "application/json", "authorization": "Bearer k"})
    received = h.fake.requests[0]
    assert received.body == raw
    assert received.headers["authorization"] == "Bearer k"


@pytest.mark.parametrize("via", ["header", "extension"])
def test_per_request_control(make_harness: Any, via: str) -> None:
    h: Harness = make_harness()

    def post(value: str, ext: dict[str, Any]) -> Any:
        if via == "header":
            return h.post(chat(), headers={"x-llmtap-cache": value})
        return h.post(chat(), extensions={"llmtap": ext})

    assert post("no-store", {"cache": "no-store"}).cache == "miss"
    assert h.post(chat()).cache == "miss"  # nothing was stored by no-store
    assert post("no-cache", {"cache": "no-cache"}).cache == "miss"  # not read, may store
    assert h.post(chat()).cache == "hit"
    assert post("refresh", {"cache": "refresh"}).cache == "miss"
    assert h.fake.request_count == 4
    tenant = post("namespace=tenant-a", {"namespace": "tenant-a"})
    assert tenant.cache == "miss" and tenant.key != h.post(chat()).key
    assert post("namespace=tenant-a", {"namespace": "tenant-a"}).cache == "hit"


@pytest.mark.parametrize(
    ("header", "ext"),
    [
        ("sometimes", None),
        ("ttl=-3", None),
        ("ttl=abc", None),
        (None, {"cache": "nope"}),
        (None, {"ttl": "soon"}),
        (None, "no-cache"),
    ],
)
def test_malformed_control_is_a_clear_error_that_never_reaches_upstream(
    make_harness: Any, header: str | None, ext: Any
) -> None:
    h: Harness = make_harness()
    result = h.post(
        chat(),
        headers={"x-llmtap-cache": header} if header else None,
        extensions={"llmtap": ext} if ext is not None else None,
    )
    assert result.status == 400
    assert result.headers["x-should-retry"] == "false"
    message = orjson.loads(result.body)["error"]["message"]
    assert "allowed" in message or "positive" in message
    assert repr(header if header else ext).strip("'") in message or "ttl" in message
    assert h.fake.request_count == 0


def test_read_only_serves_but_never_stores(make_harness: Any) -> None:
    cache = MemoryCache()
    writer: Harness = make_harness(cache=cache)
    reader: Harness = make_harness(cache=cache, mode="read_only")
    assert reader.post(chat(seed=1)).cache == "miss"
    assert reader.post(chat(seed=1)).cache == "miss"
    assert len(cache) == 0
    writer.post(chat(seed=2))
    assert reader.post(chat(seed=2)).cache == "hit"


def test_record_always_sends_and_overwrites(make_harness: Any) -> None:
    cache = MemoryCache()
    h: Harness = make_harness(cache=cache, mode="record")
    assert [h.post(chat()).cache for _ in range(2)] == ["miss", "miss"]
    assert h.fake.request_count == 2 and len(cache) == 1
    replay: Harness = make_harness(cache=cache, mode="replay")
    assert replay.post(chat()).cache == "hit"


def test_off_never_touches_the_cache(make_harness: Any) -> None:
    cache = MemoryCache()
    h: Harness = make_harness(cache=cache, mode="off")
    results = [h.post(chat()) for _ in range(2)]
    assert [r.cache for r in results] == ["bypass", "bypass"]
    assert results[0].key is None and len(cache) == 0
    none: Harness = make_harness(cache=None)
    assert none.post(chat()).cache == "bypass"


def test_replay_miss_fails_fast_without_network_and_explains(make_harness: Any) -> None:
    cache = MemoryCache()
    recorder: Harness = make_harness(cache=cache)
    recorder.post(chat(seed=1, temperature=0.5))
    h: Harness = make_harness(cache=cache, mode="replay")
    before = h.fake.request_count
    result = h.post(chat(seed=1, temperature=0.7))
    assert h.fake.request_count == before
    assert result.status == 404 and result.cache == "miss"
    assert result.headers["x-should-retry"] == "false"
    error = orjson.loads(result.body)["error"]
    assert error["type"] == "llmtap_cache_miss"
    assert "replay" in error["message"] and result.key in error["message"]
    assert "gpt-4o-mini" in error["message"] and "chat" in error["message"]
    assert "body.temperature" in error["message"]
    assert "Nearest stored entry" in error["message"]
    # a call cache_when excludes is refused too: replay never reaches the network
    unseeded = h.post(chat(seed=None))
    assert unseeded.status == 404 and h.fake.request_count == before
    assert unseeded.cache == "bypass"  # API.md: not cacheable by cache_when
    assert "cache_when" in orjson.loads(unseeded.body)["error"]["message"]


def test_errors_are_never_stored(make_harness: Any) -> None:
    h: Harness = make_harness()
    h.fake.fail_next(500)
    assert h.post(chat()).status == 500
    h.fake.fail_next(429, retry_after=1)
    assert h.post(chat()).status == 429
    ok = h.post(chat())
    assert ok.status == 200 and ok.cache == "miss"
    assert h.post(chat()).cache == "hit"
    assert h.fake.request_count == 3


def test_stream_closed_early_is_not_stored(make_harness: Any) -> None:
    h: Harness = make_harness()
    partial = h.post(chat(**STREAM), read=2)
    assert partial.cache == "miss" and len(partial.chunks) == 2
    again = h.post(chat(**STREAM))
    assert again.cache == "miss"
    assert h.post(chat(**STREAM)).cache == "hit"
    assert h.fake.request_count == 2


def test_stream_dropped_by_upstream_is_not_stored(make_harness: Any) -> None:
    h: Harness = make_harness()
    h.fake.drop_stream_after(3)
    with pytest.raises(Exception) as info:
        h.post(chat(**STREAM))
    assert type(info.value).__module__.split(".")[0] == h.lib.__name__
    assert h.post(chat(**STREAM)).cache == "miss"
    h.fake.error_event_after(2)
    errored = h.post(chat(seed=8, **STREAM))
    assert b'"error"' in errored.body
    assert h.post(chat(seed=8, **STREAM)).cache == "miss"
    assert h.post(chat(seed=8, **STREAM)).cache == "hit"


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate"])
@pytest.mark.parametrize("extra", [{}, STREAM], ids=["json", "stream"])
def test_encoded_answers_are_stored_decoded(
    make_harness: Any, encoding: str, extra: dict[str, Any]
) -> None:
    h: Harness = make_harness()
    h.fake.content_encoding = encoding
    first = h.post(chat(**extra))
    assert first.headers["content-encoding"] == encoding  # the caller got upstream's bytes
    h.fake.content_encoding = None
    plain = h.post(chat(seed=99, **extra))
    second = h.post(chat(**extra))
    assert second.cache == "hit" and "content-encoding" not in second.headers
    decoded = second.body
    assert decoded.startswith(b"data: " if extra else b"{")
    assert plain.cache == "miss"


def test_ttl_expires_entries(make_harness: Any) -> None:
    import time

    h: Harness = make_harness(ttl=0.3)
    assert h.post(chat()).cache == "miss"
    assert h.post(chat()).cache == "hit"
    time.sleep(0.4)
    assert h.post(chat()).cache == "miss"
    assert h.post(chat(), headers={"x-llmtap-cache": "ttl=0.2"}).cache == "hit"


def test_corrupt_entry_and_unusable_directory_degrade_to_network(
    make_harness: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cache = MemoryCache()
    h: Harness = make_harness(cache=cache)
    key = h.post(chat()).key
    cache.set(key, b"llmtap-entry:1\n\x00\x00\x00\x09not-json!")
    again = h.post(chat())
    assert again.status == 200 and again.cache == "miss"
    assert h.post(chat()).cache == "hit"  # the good answer replaced the corrupt one
    blocker = tmp_path / "file"
    blocker.write_text("x")
    broken: Harness = make_harness(cache=DiskCache(blocker / "cache"))
    results = [broken.post(chat(seed=3)) for _ in range(2)]
    assert [r.status for r in results] == [200, 200]
    assert [r.cache for r in results] == ["miss", "miss"]
    assert "cache get on disk failed" in caplog.text
    assert caplog.text.count("cache get on disk failed") == 1  # warned once
    assert f"cannot open the cache in {blocker / 'cache'}" in caplog.text  # names the place
    assert f"entry in the memory cache (key {key})" in caplog.text  # which entry is corrupt


def test_api_key_never_reaches_the_cache_directory(make_harness: Any, tmp_path: Any) -> None:
    secret = "sk-live-SECRET-0123456789abcdef"
    h: Harness = make_harness(cache=DiskCache(tmp_path / "store"))
    headers = {"authorization": f"Bearer {secret}", "api-key": secret, "cookie": f"s={secret}"}
    for extra in ({}, STREAM):
        h.post(chat(**extra), headers=headers)
        assert h.post(chat(**extra), headers=headers).cache == "hit"
    stored = b"".join(p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file())
    assert len(stored) > 1000
    for needle in (secret.encode(), b"SECRET", b"__cf_bm", b"org-fake", b"proj_fake"):
        assert needle not in stored


def test_record_warns_when_the_system_fingerprint_changes(
    lib_name: str, io: str, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib

    from conftest import Harness
    from llmtap.testing import FakeUpstream

    class Drifting(FakeUpstream):
        """A fake whose backend changes between calls."""

        fingerprint = "fp_one"

        def __call__(self, request: Any) -> Any:
            response = super().__call__(request)
            body = response.read().replace(b"fp_llmtap_fake", self.fingerprint.encode())
            lib = importlib.import_module(lib_name)
            # A streamed body: the harness reads with iter_raw, which an already-read
            # response refuses (with or without llmtap).
            headers = {"content-type": "application/json"}
            return lib.Response(200, headers=headers, stream=lib.ByteStream(body))

    fake = Drifting()
    h = Harness(lib_name, io, fake, server=False, mode="record")
    try:
        h.post(chat())
        fake.fingerprint = "fp_two"
        h.post(chat())
    finally:
        h.close()
    assert "system_fingerprint changed from fp_one to fp_two" in caplog.text


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
def test_cache_facts_are_in_response_extensions(lib_name: str) -> None:
    import importlib

    from llmtap.testing import FakeUpstream

    lib = importlib.import_module(lib_name)
    shells = importlib.import_module(f"llmtap.{lib_name}")
    transport = shells.Transport(
        transport=lib.MockTransport(FakeUpstream()), cache=MemoryCache(), metrics=None
    )
    url = "https://api.openai.com/v1/chat/completions"
    with lib.Client(transport=transport) as client:
        first, second = (client.post(url, json=chat()) for _ in range(2))
        unseeded = client.post(url, json=chat(seed=None))
    assert first.extensions["llmtap_cache"] == "miss"
    assert second.extensions["llmtap_cache"] == "hit"
    assert first.extensions["llmtap_cache_key"] == second.headers["x-llmtap-cache-key"]
    assert unseeded.extensions["llmtap_cache"] == "bypass"
    assert "llmtap_cache_key" not in unseeded.extensions


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
async def test_closing_the_transport_closes_the_inner_one(lib_name: str) -> None:
    import importlib

    lib = importlib.import_module(lib_name)
    shells = importlib.import_module(f"llmtap.{lib_name}")
    closed: list[str] = []

    class Inner(lib.MockTransport):  # type: ignore[misc,name-defined]
        def close(self) -> None:
            closed.append("sync")

        async def aclose(self) -> None:
            closed.append("async")

    inner = Inner(lambda request: lib.Response(200))
    with lib.Client(transport=shells.Transport(transport=inner, cache=None, metrics=None)):
        pass
    async with lib.AsyncClient(
        transport=shells.AsyncTransport(transport=inner, cache=None, metrics=None)
    ):
        pass
    assert closed == ["sync", "async"]


@pytest.mark.parametrize("how", ["keyword", "LLMTAP_MODE"])
def test_replay_without_a_store_still_never_reaches_the_network(
    make_harness: Any, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if how == "LLMTAP_MODE":
        monkeypatch.setenv("LLMTAP_MODE", "replay")
    h: Harness = make_harness(cache=None, **({"mode": "replay"} if how == "keyword" else {}))
    result = h.post(chat(seed=1))
    assert h.fake.request_count == 0
    assert result.status == 404 and result.cache == "miss"
    message = orjson.loads(result.body)["error"]["message"]
    assert "no cache store (cache=None)" in message


def test_an_idle_transport_still_refuses_a_malformed_extension(make_harness: Any) -> None:
    """No store, no telemetry: calls are only labelled, but a malformed directive in
    ``extensions`` gets the same 400 as a malformed header, not silence."""
    from opentelemetry.trace import NoOpTracerProvider

    h: Harness = make_harness(cache=None, tracer_provider=NoOpTracerProvider())
    assert h.post(chat()).cache == "bypass"
    result = h.post(chat(), extensions={"llmtap": {"cache": "nope"}})
    assert result.status == 400 and "nope" in orjson.loads(result.body)["error"]["message"]
    assert h.fake.request_count == 1


def test_replay_names_an_unkeyable_request_as_such(make_harness: Any) -> None:
    """A body too deep to key is refused in replay with that reason, not as if
    cache_when had excluded it."""
    deep: Any = "leaf"
    for _ in range(300):
        deep = [deep]
    h: Harness = make_harness(mode="replay")
    result = h.post(chat(seed=1, response_format={"deep": deep}))
    assert result.status == 404 and h.fake.request_count == 0
    message = orjson.loads(result.body)["error"]["message"]
    assert "no cache key could be computed" in message and "cache_when" not in message


@pytest.mark.parametrize(
    ("client_lib", "transport_lib"), [("httpx", "httpx2"), ("httpx2", "httpx")]
)
def test_a_transport_of_the_other_library_says_which_to_use(
    client_lib: str, transport_lib: str, caplog: pytest.LogCaptureFixture
) -> None:
    """openai < 3 uses httpx, openai 3.x httpx2: given the wrong transport, the inner one
    would fail on a bare AssertionError that SDKs report as a connection error."""
    lib = importlib.import_module(client_lib)
    shells = importlib.import_module(f"llmtap.{transport_lib}")
    transport = shells.Transport(cache=None, metrics=None)
    with lib.Client(transport=transport) as client, pytest.raises(TypeError) as raised:
        client.post("https://api.openai.com/v1/chat/completions", json=chat())
    assert f"use llmtap.{client_lib}.Transport" in str(raised.value)
    assert f"use llmtap.{client_lib}.Transport" in caplog.text
