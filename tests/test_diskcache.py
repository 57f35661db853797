"""DiskCache never unpickles, even from a tampered database."""

from __future__ import annotations

import os
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import diskcache
import pytest

from llmtap import DiskCache
from llmtap.cache.disk import PickleRefused


class Canary:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def test_planted_pickle_never_runs(tmp_path: Path) -> None:
    store = DiskCache(tmp_path / "c")
    store.set("k", b"value")
    canary = tmp_path / "canary"
    payload = pickle.dumps(Canary(str(canary)))
    with sqlite3.connect(tmp_path / "c" / "cache.db") as db:
        db.execute(
            "UPDATE Cache SET mode = ?, value = ? WHERE key = ?",
            (diskcache.core.MODE_PICKLE, payload, "k"),
        )
    with pytest.raises(PickleRefused):
        store.get("k")
    assert list(store.iter_entries()) == []
    assert not canary.exists()


def test_only_str_keys_and_bytes_values(tmp_path: Path) -> None:
    store = DiskCache(tmp_path / "c")
    with pytest.raises(TypeError):
        store.set("k", "text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.set(1, b"v")  # type: ignore[arg-type]
    store.set("k", b"x" * 100_000, ttl=60)  # large values live in files, still raw bytes
    assert store.get("k") == b"x" * 100_000
    assert store.stats()["entries"] == 1


def test_env_var_sets_the_default_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMTAP_CACHE_DIR", str(tmp_path / "env"))
    store = DiskCache()
    store.set("k", b"v")
    assert (tmp_path / "env" / "cache.db").exists()
    assert os.fspath(store.directory) == str(tmp_path / "env")


async def test_async_access_runs_off_the_event_loop_with_context(tmp_path: Path) -> None:
    import contextvars
    import threading

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    seen: list[tuple[int, str]] = []

    class Watching(DiskCache):
        def get(self, key: str) -> bytes | None:
            seen.append((threading.get_ident(), marker.get()))
            return super().get(key)

    store = Watching(tmp_path / "c")
    marker.set("caller")
    await store.aset("k", b"v")
    assert await store.aget("k") == b"v"
    assert seen and seen[0][0] != threading.get_ident() and seen[0][1] == "caller"


def test_a_row_with_a_pickled_key_is_skipped_not_fatal(tmp_path: Path) -> None:
    """diskcache's own key listing would unpickle such a key (refused) and stop: every
    command that lists the store (``ls``, ``prune``, ``clear``, a replay miss's
    explanation) would fail on one tampered row."""
    store = DiskCache(tmp_path / "c")
    for key in ("a", "b", "c"):
        store.set(key, key.encode())
    canary = tmp_path / "canary"
    with sqlite3.connect(tmp_path / "c" / "cache.db") as db:
        db.execute(
            "UPDATE Cache SET key = ?, raw = 0 WHERE key = ?",
            (pickle.dumps(Canary(str(canary))), "b"),
        )
    assert [key for key, _ in store.iter_entries()] == ["a", "c"]
    assert not canary.exists()
