"""A span's parent is the caller's current span, also when the async shell offloads
the store to a thread (DiskCache's ``aget`` runs in ``asyncio.to_thread``)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from opentelemetry import trace
from telemetry_rig import make_rig

import llmtap

BODY = {"model": "gpt-4o-mini", "seed": 4, "messages": [{"role": "user", "content": "hi"}]}


class SpyDiskCache(llmtap.DiskCache):
    """Records which span is current, and on which thread, when the store is read."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.seen: list[tuple[int, bool]] = []

    def get(self, key: str) -> bytes | None:
        span_id = trace.get_current_span().get_span_context().span_id
        self.seen.append((span_id, threading.current_thread() is threading.main_thread()))
        return super().get(key)


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
async def test_parent_survives_thread_offload(lib_name: str, tmp_path: Path) -> None:
    rig = make_rig(lib_name, is_async=True)
    rig.cache = SpyDiskCache(tmp_path)
    tracer = rig.provider.get_tracer("test")
    async with rig.client() as client:
        with tracer.start_as_current_span("work") as parent:
            miss = await client.post("/chat/completions", json=BODY)
            hit = await client.post("/chat/completions", json=BODY)
    assert miss.headers["x-llmtap-cache"] == "miss"
    assert hit.headers["x-llmtap-cache"] == "hit"
    parent_id = parent.get_span_context().span_id
    spans = [s for s in rig.spans() if s.name == "chat gpt-4o-mini"]
    assert len(spans) == 2
    for span in spans:
        assert span.parent is not None and span.parent.span_id == parent_id
        assert span.context.trace_id == parent.get_span_context().trace_id
    assert rig.cache.seen  # the store ran in worker threads, with the caller's context
    assert all(span_id == parent_id and not main for span_id, main in rig.cache.seen)
