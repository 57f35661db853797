"""Shared fixtures: every transport case runs over {httpx, httpx2} x {sync, async},
against FakeUpstream as a MockTransport handler and as a loopback server."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from llmtap import MemoryCache
from llmtap.testing import FakeUpstream

MOCK_BASE = "https://api.openai.com/v1"


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    chunks: list[bytes] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def cache(self) -> str | None:
        return self.headers.get("x-llmtap-cache")

    @property
    def key(self) -> str | None:
        return self.headers.get("x-llmtap-cache-key")


class Harness:
    """One client of one library and IO style, through an llmtap transport."""

    def __init__(self, lib_name: str, io: str, fake: FakeUpstream, server: bool, **kw: Any) -> None:
        self.lib = importlib.import_module(lib_name)
        self.io = io
        self.fake = fake
        shells = importlib.import_module(f"llmtap.{lib_name}")
        inner = None if server else self.lib.MockTransport(fake)
        self.base = fake.base_url if server else MOCK_BASE
        kw.setdefault("cache", MemoryCache())
        kw.setdefault("metrics", None)
        cls = shells.Transport if io == "sync" else shells.AsyncTransport
        self.transport = cls(transport=inner, **kw)
        self.cache = kw["cache"]
        self._runner = asyncio.Runner() if io == "async" else None
        if self._runner is None:
            self.client = self.lib.Client(transport=self.transport, timeout=10)
        else:
            self.client = self.lib.AsyncClient(transport=self.transport, timeout=10)

    def post(
        self,
        body: dict[str, Any] | bytes,
        *,
        path: str = "/chat/completions",
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
        read: int | None = None,
    ) -> Result:
        """POST and read the body chunk by chunk; ``read=n`` closes after n chunks."""
        kwargs: dict[str, Any] = {"headers": headers or {}}
        kwargs["content" if isinstance(body, bytes) else "json"] = body
        if extensions:
            kwargs["extensions"] = extensions
        url = self.base + path
        if self._runner is None:
            with self.client.stream("POST", url, **kwargs) as response:
                chunks = []
                for chunk in response.iter_raw():
                    chunks.append(chunk)
                    if read is not None and len(chunks) >= read:
                        break
                return Result(response.status_code, dict(response.headers), chunks)
        return self._runner.run(self._apost(url, kwargs, read))

    async def _apost(self, url: str, kwargs: dict[str, Any], read: int | None) -> Result:
        async with self.client.stream("POST", url, **kwargs) as response:
            chunks = []
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                if read is not None and len(chunks) >= read:
                    break
            return Result(response.status_code, dict(response.headers), chunks)

    def run(self, coro: Any) -> Any:
        assert self._runner is not None
        return self._runner.run(coro)

    def close(self) -> None:
        if self._runner is None:
            self.client.close()
        else:
            self._runner.run(self.client.aclose())
            self._runner.close()


LIBS = ["httpx", "httpx2"]
IOS = ["sync", "async"]


@pytest.fixture(params=LIBS)
def lib_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=IOS)
def io(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["mock", "server"])
def upstream(request: pytest.FixtureRequest) -> Iterator[tuple[FakeUpstream, bool]]:
    if request.param == "mock":
        yield FakeUpstream(), False
    else:
        with FakeUpstream() as fake:
            yield fake, True


@pytest.fixture
def make_harness(lib_name: str, io: str, upstream: tuple[FakeUpstream, bool]) -> Iterator[Any]:
    """Build harnesses for the parametrised library, IO style and upstream."""
    made: list[Harness] = []
    fake, server = upstream

    def make(**kw: Any) -> Harness:
        harness = Harness(lib_name, io, fake, server, **kw)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def chat(seed: int | None = 7, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say something about caching."}],
    }
    if seed is not None:
        body["seed"] = seed
    body.update(extra)
    return body


def metric_sum(registry: Any, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def cache_errors(registry: Any) -> float:
    """``llmtap_cache_errors_total`` summed over its labels (backend, op, the call's)."""
    return metric_sum(registry, "llmtap_cache_errors_total")
