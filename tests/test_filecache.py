"""FileCache: the shared backend contract, plus what only a git-committed store needs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from backend_contract import (  # noqa: F401  (the contract tests run here, per backend)
    backend,
    make_entry,
    test_async_gather,
    test_async_round_trip,
    test_concurrent_writers_leave_a_readable_value,
    test_delete,
    test_get_missing_is_none,
    test_iter_entries_and_stats,
    test_overwrite_replaces,
    test_refuses_non_bytes,
    test_set_then_get_round_trips,
)
from llmtap import FileCache
from llmtap._core.entry import CacheEntry, decode_entry, encode_entry
from llmtap.cache.files import RecordingError


def entry(body: bytes, chunks: list[int] | None = None, **kw: object) -> CacheEntry:
    base: dict[str, object] = {
        "status": 200,
        "headers": [("content-type", "application/json"), ("x-request-id", "req_1")],
        "body": body,
        "created_at": 1000.0,
        "chunks": chunks,
        "summary": {"operation": "chat", "model": "m"},
        "key_material": {"body": {"model": "m", "messages": [{"role": "user", "content": "q"}]}},
    }
    base.update(kw)
    return CacheEntry(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":1,"z":[1.5,"\xc3\xa9"]}',
        b'{\n  "z": 1,\n  "a": "x"\n}\n',
        b'{"b": 2, "a": 1}',
        b'{"a":1e100}',
        b'{"id":123456789012345678901234567890,"n":-18446744073709551617}',  # beyond 64 bits
        b"not json \xff\xfe",
        b"plain text",
        b"",
    ],
)
def test_body_bytes_are_rebuilt_exactly(tmp_path: Path, body: bytes) -> None:
    cache = FileCache(tmp_path)
    cache.set("k", encode_entry(entry(body)))
    got = cache.get("k")
    assert got is not None and decode_entry(got).body == body


def test_stream_chunks_are_kept_and_readable(tmp_path: Path) -> None:
    chunks = [b'data: {"x": 1}\n\n', b"\xff\x00binary", b"data: [DONE]\n\n"]
    cache = FileCache(tmp_path)
    cache.set("s", encode_entry(entry(b"".join(chunks), [len(c) for c in chunks])))
    got = decode_entry(cache.get("s") or b"")
    assert got.iter_chunks() == chunks
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["response"]["stream"][0] == 'data: {"x": 1}\n\n'
    assert set(doc["response"]["stream"][1]) == {"base64"}
    assert doc["request"]["messages"] == [{"role": "user", "content": "q"}]


def test_layout_is_stable_and_sorted(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    cache.set("k", encode_entry(entry(b'{"b":1,"a":2}')))
    text = (tmp_path / "k.json").read_text()
    assert text.endswith("}\n") and text.startswith('{\n  "created_at"')
    doc = json.loads(text)
    assert list(doc) == sorted(doc)
    assert list(doc["response"]["body"]) == ["b", "a"]  # upstream order, to rebuild bytes


def test_identical_rerecord_changes_no_byte(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    cache.set("k", encode_entry(entry(b'{"a":1}')))
    before = (tmp_path / "k.json").read_bytes()
    headers = [("content-type", "application/json"), ("x-request-id", "req_2")]
    later = entry(b'{"a":1}', created_at=2000.0, headers=headers)
    cache.set("k", encode_entry(later))
    assert (tmp_path / "k.json").read_bytes() == before
    cache.set("k", encode_entry(entry(b'{"a":2}', created_at=3000.0)))
    assert (tmp_path / "k.json").read_bytes() != before


def test_an_expired_recording_is_rewritten_by_the_same_answer(tmp_path: Path) -> None:
    """Kept as it was, the old ``expires_at`` would make every later call a miss."""
    cache = FileCache(tmp_path)
    cache.set("k", encode_entry(entry(b'{"a":1}', created_at=1000.0, expires_at=1060.0)))
    assert cache.get("k") is not None and decode_entry(cache.get("k") or b"").expired(2000.0)
    now = time.time()
    cache.set("k", encode_entry(entry(b'{"a":1}', created_at=now, expires_at=now + 60)))
    assert not decode_entry(cache.get("k") or b"").expired(now + 1)


def test_headers_outside_the_allow_list_never_reach_the_file(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    headers = [("content-type", "application/json"), ("set-cookie", "secret=1")]
    cache.set("k", encode_entry(entry(b"{}", headers=headers)))
    assert b"secret" not in (tmp_path / "k.json").read_bytes()


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"format": "other"}'])
def test_corrupt_file_raises_and_is_skipped_by_iteration(tmp_path: Path, content: bytes) -> None:
    cache = FileCache(tmp_path)
    cache.set("good", make_entry())
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(RecordingError):
        cache.get("bad")
    assert [k for k, _ in cache.iter_entries()] == ["good"]


def test_file_holding_another_key_is_refused(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    cache.set("a", make_entry())
    (tmp_path / "a.json").rename(tmp_path / "b.json")
    with pytest.raises(RecordingError):
        cache.get("b")


@pytest.mark.parametrize("key", ["../x", ".hidden", "a/b", ""])
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        FileCache(tmp_path).set(key, make_entry())


def test_non_entry_bytes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        FileCache(tmp_path).set("k", b"arbitrary")


def test_temp_files_are_ignored_and_clear_removes_recordings(tmp_path: Path) -> None:
    cache = FileCache(tmp_path)
    cache.set("k", make_entry())
    (tmp_path / ".k.abc.tmp").write_bytes(b"partial")
    assert cache.recorded_keys() == ["k"]
    cache.clear()
    assert cache.recorded_keys() == [] and cache.stats()["entries"] == 0


def test_missing_directory_reads_as_empty(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "nope")
    assert cache.get("k") is None and list(cache.iter_entries()) == []
    assert cache.stats()["entries"] == 0 and repr(cache).startswith("FileCache(")
