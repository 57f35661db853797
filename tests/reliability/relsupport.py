"""Shared helpers for the reliability suite (no conftest.py: tests/ has several, and
they would shadow each other as the module ``conftest``)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import orjson

from llmtap import DiskCache, FileCache
from llmtap._core.entry import CacheEntry, decode_entry
from llmtap._fake.answers import build_answer

MOCK_BASE = "https://api.openai.com/v1"
CHAT_URL = MOCK_BASE + "/chat/completions"
SECRET = "sk-proj-RELIABILITY-SECRET-123"
BACKENDS = ["disk", "files"]


def chat(seed: int | None = 7, *, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Tell me about reliability #{seed}."}],
    }
    if seed is not None:
        body["seed"] = seed
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(extra)
    return body


def reference(body: dict[str, Any], path: str = "/v1/chat/completions") -> list[bytes]:
    """The chunks FakeUpstream sends (uncompressed) for ``body``: its deterministic answer."""
    answer = build_answer("POST", path, orjson.dumps(body))
    return list(answer.chunks) if answer.stream else [b"".join(answer.chunks)]


def make_store(kind: str, directory: Path) -> Any:
    return DiskCache(directory) if kind == "disk" else FileCache(directory)


def check_store(kind: str, directory: Path) -> dict[str, CacheEntry]:
    """Open the store afresh; every entry must decode and hold exactly FakeUpstream's
    answer for the request its key material describes."""
    store = make_store(kind, directory)
    try:
        keys = _all_keys(kind, store)
        found: dict[str, CacheEntry] = {}
        for key in keys:
            raw = store.get(key)
            assert raw is not None, f"key {key} listed but not readable"
            entry = decode_entry(raw)  # raises on a partial entry
            body = entry.key_material["body"]
            expected = reference(body)
            assert entry.body == b"".join(expected), f"entry {key} differs from upstream's answer"
            if entry.is_stream:
                assert [c for c in entry.iter_chunks() if c] == [c for c in expected if c]
            found[key] = entry
        return found
    finally:
        if kind == "disk":
            store.close()


def _all_keys(kind: str, store: Any) -> list[str]:
    if kind == "disk":
        return [str(k) for k in store.store.iterkeys()]
    return list(store.recorded_keys())


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def llmtap_warnings(caplog: Any) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "llmtap" and r.levelno >= logging.WARNING
    ]
