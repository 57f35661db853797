"""Bad input from the caller: a clean pass-through (upstream gets the exact bytes and
its answer comes back) or a clear error, never a crash inside llmtap."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
from typing import Any

import orjson
import pytest
from relsupport import CHAT_URL, chat

from llmtap import DiskCache, MemoryCache


def _nested(depth: int) -> bytes:
    return b'{"model": "m", "seed": 1, "messages": [], "x": ' + b"[" * depth + b"]" * depth + b"}"


BIG_PROMPT = orjson.dumps(chat(5, messages=[{"role": "user", "content": "p" * (50 << 20)}]))
BODIES = {
    "not_json": b"{this is not json",
    "invalid_utf8": b'{"model": "m\xff\xfe", "seed": 1}',
    "array": b'[{"model": "m", "seed": 1}]',
    "scalar": b"42",
    "empty": b"",
    "nested_300": _nested(300),  # parses, but too deep for the key: sent uncached
    "nested_1000": _nested(1000),
    "nested_10k": _nested(10_000),
    "nan": b'{"model": "m", "seed": 1, "temperature": NaN}',
    "infinity": b'{"model": "m", "seed": 1, "temperature": Infinity}',
    "lone_surrogate": b'{"model": "m", "seed": 1, "messages": "\\ud800"}',
    "huge_int": b'{"model": "m", "seed": 123456789012345678901234567890}',
    "duplicate_keys": b'{"model": "m", "seed": 1, "seed": 2}',
    "prompt_50mb": BIG_PROMPT,
}


def echo(lib: Any) -> Any:
    """An upstream that answers with the sha256 of the exact bytes it received."""

    def handler(request: Any) -> Any:
        digest = hashlib.sha256(request.content).hexdigest()
        return lib.Response(200, json={"object": "echo", "sha256": digest, "id": "e"})

    return handler


def send(lib_name: str, io: str, raw: bytes, cache: Any, headers: dict[str, str] | None = None):
    lib = importlib.import_module(lib_name)
    inner = lib.MockTransport(echo(lib))
    if cache is not None:
        shells = importlib.import_module(f"llmtap.{lib_name}")
        cls = shells.Transport if io == "sync" else shells.AsyncTransport
        transport = cls(transport=inner, cache=cache, cache_when="always", metrics=None)
    else:
        transport = inner
    kw = {"content": raw, "headers": {"content-type": "application/json", **(headers or {})}}
    if io == "sync":
        with lib.Client(transport=transport) as client:
            return client.post(CHAT_URL, **kw)

    async def go() -> Any:
        async with lib.AsyncClient(transport=transport) as client:
            return await client.post(CHAT_URL, **kw)

    return asyncio.run(go())


@pytest.mark.parametrize("io", ["sync", "async"])
@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
@pytest.mark.parametrize("name", list(BODIES))
def test_bad_body_passes_through_cleanly(lib_name: str, io: str, name: str, caplog: Any) -> None:
    if name == "prompt_50mb" and (lib_name, io) != ("httpx2", "async"):
        return  # 50 MB once is enough (time); it is the same code for all four shells
    raw = BODIES[name]
    without = send(lib_name, io, raw, None)
    cache = MemoryCache()
    with caplog.at_level(logging.DEBUG, logger="llmtap"):
        first = send(lib_name, io, raw, cache)
        second = send(lib_name, io, raw, cache)
    for response in (first, second):
        assert response.status_code == without.status_code == 200
        assert response.content == without.content  # upstream got the exact bytes
        assert orjson.loads(response.content)["sha256"] == hashlib.sha256(raw).hexdigest()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    if name in ("prompt_50mb", "duplicate_keys"):  # valid objects: cached like any other
        assert (first.headers["x-llmtap-cache"], second.headers["x-llmtap-cache"]) == (
            "miss",
            "hit",
        )
    elif name in ("nested_300", "nested_1000", "huge_int"):
        # Valid, but no exact key: too deep to serialise, or a number beyond 64 bits
        # that parses as a rounded float (another number could share its key).
        assert first.headers["x-llmtap-cache"] == second.headers["x-llmtap-cache"] == "bypass"
        assert len(cache) == 0
    else:
        assert "x-llmtap-cache" not in first.headers  # not an LLM call body: untouched
        assert len(cache) == 0


def test_50mb_prompt_in_disk_cache(tmp_path: Any) -> None:
    cache = DiskCache(tmp_path / "c")
    first = send("httpx2", "sync", BIG_PROMPT, cache)
    second = send("httpx2", "sync", BIG_PROMPT, cache)
    assert (first.headers["x-llmtap-cache"], second.headers["x-llmtap-cache"]) == ("miss", "hit")
    assert first.content == second.content


MALFORMED = ["", " ", ",", "nope", "no-cache,no-store", "ttl=", "ttl=0", "ttl=-1", "ttl=nan",
             "ttl=inf", "ttl=1e999", "ttl=abc", "namespace=", "refresh;ttl=5", "\t,\t",
             "no-cache=1", "x" * 5000, "ttl=5,ttl=6", "namespace=a,namespace=b"]  # fmt: skip


@pytest.mark.parametrize("io", ["sync", "async"])
@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
def test_malformed_cache_header_is_a_clear_error(lib_name: str, io: str) -> None:
    for value in MALFORMED:
        response = send(
            lib_name, io, orjson.dumps(chat()), MemoryCache(), {"x-llmtap-cache": value}
        )
        assert response.status_code == 400, value
        error = response.json()["error"]
        assert error["type"] == "llmtap_invalid_cache_control"
        assert "allowed" in error["message"] or "positive" in error["message"], error
        assert response.headers["x-should-retry"] == "false"
        assert "sha256" not in response.text  # never reached upstream
