"""Hostile or broken stores: corrupt, truncated, future-format and pickled entries, a
read-only store, a directory that vanishes, a full disk. Each call still gets upstream's
exact answer, with a warning logged and ``llmtap_cache_errors_total`` counted."""

from __future__ import annotations

import asyncio
import errno
import io as _io
import logging
import pickle
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import diskcache
import httpx2
import pytest
from prometheus_client import CollectorRegistry
from relsupport import BACKENDS, CHAT_URL, chat, llmtap_warnings, make_store, reference

import llmtap.httpx2
from conftest import cache_errors
from llmtap import Metrics
from llmtap.testing import FakeUpstream

SMALL = chat(1)
LARGE = chat(2, stream=True, n=8)  # ~60 kB: diskcache keeps it in a file of its own


class Canary:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


class Rig:
    def __init__(self, kind: str, directory: Path, io: str) -> None:
        self.kind, self.directory, self.io = kind, directory, io
        self.fake = FakeUpstream()
        self.last_key: str | None = None
        self.registry = CollectorRegistry()
        self.store = make_store(kind, directory)
        cls = llmtap.httpx2.Transport if io == "sync" else llmtap.httpx2.AsyncTransport
        self.transport = cls(
            transport=httpx2.MockTransport(self.fake),
            cache=self.store,
            cache_when="always",
            metrics=Metrics(registry=self.registry),
        )

    def post(self, body: dict[str, Any]) -> str:
        """POST; assert upstream's exact answer came back; return the cache header."""
        if self.io == "sync":
            with httpx2.Client(transport=self.transport) as client:
                r = client.post(CHAT_URL, json=body)
        else:
            r = asyncio.run(self._apost(body))
        assert r.status_code == 200, r.text[:300]
        assert r.content == b"".join(reference(body))
        self.last_key = r.headers.get("x-llmtap-cache-key")
        return str(r.headers["x-llmtap-cache"])

    async def _apost(self, body: dict[str, Any]) -> Any:
        # not closed: closing the client would close the shared transport
        client = httpx2.AsyncClient(transport=self.transport)
        return await client.post(CHAT_URL, json=body)

    def errors(self) -> float:
        return cache_errors(self.registry)

    def key_of(self, body: dict[str, Any]) -> str:
        self.post(body)
        assert self.last_key is not None
        return self.last_key

    def raw(self, key: str) -> bytes:
        value = self.store.get(key)
        assert value is not None
        return bytes(value)

    def plant(self, key: str, value: bytes) -> None:
        """Write ``value`` where the backend keeps ``key``, bypassing every check."""
        if self.kind == "disk":
            self.store.store.set(key, value)
        else:
            self.store.path_for(key).write_bytes(value)


@pytest.fixture(params=["sync", "async"])
def io(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=BACKENDS)
def rig(request: pytest.FixtureRequest, tmp_path: Path, io: str) -> Rig:
    return Rig(str(request.param), tmp_path / "store", io)


def _degrades(
    rig: Rig, body: dict[str, Any], caplog: Any, *, heals: bool = True, warns: bool = True
) -> None:
    """The next call is a miss answered by upstream, counted, and warned (once per
    outage: ``warns=False`` for a repeat of the same failure); then it heals."""
    before_calls, before_errors = rig.fake.request_count, rig.errors()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="llmtap"):
        assert rig.post(body) == "miss"
    assert rig.fake.request_count == before_calls + 1
    if warns:
        assert llmtap_warnings(caplog), "no warning was logged"
    assert rig.errors() > before_errors, "llmtap_cache_errors_total did not count it"
    if heals:  # the miss stored a good entry over the bad one
        assert rig.post(body) == "hit"


def _damage_cases() -> list[str]:
    return ["garbage", "truncated", "future_version", "empty", "truncated_meta"]


@pytest.mark.parametrize("damage", _damage_cases())
@pytest.mark.parametrize("body", [SMALL, LARGE], ids=["small", "large"])
def test_damaged_entry_is_a_warned_miss(
    rig: Rig, damage: str, body: dict[str, Any], caplog: Any
) -> None:
    assert rig.post(body) == "miss"
    key = rig.key_of(body)
    good = rig.raw(key)
    bad = {
        "garbage": b"\x00\xffnot an entry at all" * 10,
        "truncated": good[: len(good) // 2],
        "future_version": good.replace(b"llmtap-entry:2\n", b"llmtap-entry:9\n", 1),
        "empty": b"",
        "truncated_meta": good[:30],
    }[damage]
    rig.plant(key, bad)
    _degrades(rig, body, caplog)


def test_truncated_value_file_on_disk(tmp_path: Path, io: str, caplog: Any) -> None:
    """diskcache keeps a large value in its own file: cut that file short."""
    rig = Rig("disk", tmp_path / "store", io)
    assert rig.post(LARGE) == "miss"
    files = list((tmp_path / "store").rglob("*.val"))
    assert len(files) == 1
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 3])
    _degrades(rig, LARGE, caplog)


def test_truncated_recording_file(tmp_path: Path, io: str, caplog: Any) -> None:
    rig = Rig("files", tmp_path / "store", io)
    assert rig.post(SMALL) == "miss"
    path = rig.store.path_for(rig.key_of(SMALL))
    path.write_bytes(path.read_bytes()[:-40])
    _degrades(rig, SMALL, caplog)


def test_planted_pickle_never_runs(tmp_path: Path, io: str, caplog: Any) -> None:
    canary = tmp_path / "canary"
    payload = pickle.dumps(Canary(str(canary)))
    for kind in BACKENDS:
        rig = Rig(kind, tmp_path / kind, io)
        assert rig.post(SMALL) == "miss"
        key = rig.key_of(SMALL)
        if kind == "disk":
            # a row marked as pickled: diskcache's own Disk would unpickle it on read
            with sqlite3.connect(tmp_path / kind / "cache.db") as db:
                db.execute(
                    "UPDATE Cache SET mode = ?, value = ? WHERE key = ?",
                    (diskcache.core.MODE_PICKLE, payload, key),
                )
        else:
            rig.plant(key, payload)
        _degrades(rig, SMALL, caplog)
        assert not canary.exists(), "a planted pickle ran"
        # and the CLI-facing listing skips it without running it either
        list(rig.store.iter_entries())
        assert not canary.exists()


def test_row_pointing_outside_the_store_is_refused(tmp_path: Path, io: str, caplog: Any) -> None:
    rig = Rig("disk", tmp_path / "store", io)
    assert rig.post(LARGE) == "miss"
    key = rig.key_of(LARGE)
    outside = tmp_path / "outside.val"
    outside.write_bytes(rig.raw(key))  # a valid entry, but not the store's to read
    with sqlite3.connect(tmp_path / "store" / "cache.db") as db:
        db.execute("UPDATE Cache SET filename = ? WHERE key = ?", (str(outside), key))
    _degrades(rig, LARGE, caplog)


def test_read_only_store(rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    """Tests run as root, where chmod does not stop writes: the refusal a read-only
    directory or database gives is injected at the backend's write path instead."""
    if rig.kind == "disk":

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise sqlite3.OperationalError("attempt to write a readonly database")

        monkeypatch.setattr(diskcache.Cache, "set", refuse)
    else:

        def refuse_file(*args: Any, **kwargs: Any) -> None:
            raise PermissionError(errno.EACCES, "Permission denied", str(rig.directory))

        monkeypatch.setattr("llmtap.cache.files.tempfile.mkstemp", refuse_file)
    for n, body in enumerate((SMALL, LARGE, SMALL)):
        _degrades(rig, body, caplog, heals=False, warns=n == 0)
    monkeypatch.undo()
    assert rig.post(SMALL) == "miss"  # nothing was stored while read-only
    assert rig.post(SMALL) == "hit"


def test_full_disk(rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    """ENOSPC injected where each backend writes bytes: no partial entry is left."""

    class FullWriter(_io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    if rig.kind == "disk":
        # small values: SQLite itself reports the full disk
        def full(*args: Any, **kwargs: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        with monkeypatch.context() as patch:
            patch.setattr(diskcache.Cache, "set", full)
            _degrades(rig, SMALL, caplog, heals=False)
        # large values: writing the value's own file fails (same outage: counted, not re-warned)
        monkeypatch.setattr(diskcache.core, "open", lambda *a, **k: FullWriter(), raising=False)
        _degrades(rig, LARGE, caplog, heals=False, warns=False)
    else:
        monkeypatch.setattr("llmtap.cache.files.os.fdopen", lambda *a, **k: FullWriter())
        _degrades(rig, SMALL, caplog, heals=False)
        _degrades(rig, LARGE, caplog, heals=False, warns=False)
        assert not list(rig.directory.glob("*.tmp")), "a partial temp file was left behind"
    monkeypatch.undo()
    for body in (SMALL, LARGE):
        assert rig.post(body) == "miss"
        assert rig.post(body) == "hit"


def test_directory_disappears_mid_run(rig: Rig, caplog: Any) -> None:
    assert rig.post(SMALL) == "miss"
    assert rig.post(SMALL) == "hit"
    shutil.rmtree(rig.directory)
    # every call still gets upstream's exact answer; none raises
    for body in (SMALL, LARGE, chat(3), LARGE, SMALL):
        assert rig.post(body) in ("hit", "miss")
    shutil.rmtree(rig.directory, ignore_errors=True)
    rig.directory.parent.joinpath("unrelated").mkdir()
    for body in (chat(4), chat(4)):
        assert rig.post(body) in ("hit", "miss")


def test_store_that_cannot_open(tmp_path: Path, io: str, caplog: Any) -> None:
    """The store's path is a regular file: every op fails; calls go upstream."""
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a directory")
    for kind in BACKENDS:
        rig = Rig(kind, blocker / "store", io)
        _degrades(rig, SMALL, caplog, heals=False)
        _degrades(rig, SMALL, caplog, heals=False, warns=False)
