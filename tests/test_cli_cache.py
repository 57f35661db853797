"""``llmtap cache ...`` over DiskCache and FileCache stores, including bad input (exit 2)."""

from __future__ import annotations

import importlib.util
import sqlite3
import time
from pathlib import Path

import pytest

from backend_contract import make_entry
from llmtap import DiskCache, FileCache
from llmtap._cli_cache import PROGRESS_EVERY, parse_duration
from llmtap.cli import main

KEYS = ["a" * 64, "ab" + "c" * 62, "f" * 64]


@pytest.fixture(params=["files", "disk"])
def store_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    directory = tmp_path / request.param
    store = FileCache(directory) if request.param == "files" else DiskCache(directory)
    now = time.time()
    store.set(KEYS[0], make_entry("new one", created=now))
    store.set(KEYS[1], make_entry("streamed", stream=True, created=now - 3600))
    store.set(KEYS[2], make_entry("ancient", created=now - 30 * 86400))
    if isinstance(store, DiskCache):
        store.close()
    return directory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["cache", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_stats(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "stats", "--dir", str(store_dir))
    assert code == 0 and "entries: 3" in out
    assert f"backend: {store_dir.name}" in out  # files auto-detected, disk otherwise


def test_ls_table(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--dir", str(store_dir), "ls")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "KEY",
        "OPERATION",
        "MODEL",
        "CREATED",
        "SIZE",
        "STREAM",
    ]
    assert lines[1].startswith("f" * 12)  # oldest first
    assert "chat" in lines[1] and lines[-1] == "3 entries"


def test_show_by_prefix(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "show", "ab", "--dir", str(store_dir))
    assert code == 0 and KEYS[1] in out and "stream of 2 chunks" in out and "streamed" in out
    code, out, _ = run(capsys, "show", KEYS[0], "--dir", str(store_dir))
    assert code == 0 and '"answer": "new one"' in out and "content-type: application/json" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "zzz"], "no entry with a key starting 'zzz'"),
        (["show", "a"], "ambiguous"),
        (["prune", "--older-than", "7x"], "bad duration '7x'"),
        (["prune", "--older-than", "d7"], "bad duration"),
    ],
)
def test_bad_input_exits_2(
    store_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run(capsys, *argv, "--dir", str(store_dir))
    assert code == 2 and message in err and out == ""


def test_missing_directory_and_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "ls", "--dir", str(tmp_path / "nope"))
    assert code == 2 and "no such directory" in err
    code, _, err = run(capsys, "stats", "--files", str(tmp_path / "nope"))
    assert code == 2 and "no such directory" in err
    code, _, err = run(capsys, "stats", "--redis-url", "redis://127.0.0.1:1/0")
    if importlib.util.find_spec("redis") is None:
        assert code == 2 and "RedisCache is not available" in err
    else:  # nothing listens on port 1: a one-line error, not a traceback
        assert code == 1 and "the store failed" in err and "Traceback" not in err
    code, _, err = run(capsys, "import", str(tmp_path / "nope"), "--dir", str(tmp_path / "d"))
    assert code == 2 and "no such directory" in err


def test_reading_an_empty_dir_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "ls", "--dir", str(tmp_path))
    assert code == 0 and out.strip().endswith("0 entries")
    assert list(tmp_path.iterdir()) == []


def test_env_dir(
    store_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMTAP_CACHE_DIR", str(store_dir))
    code, out, _ = run(capsys, "stats")
    assert code == 0 and "entries: 3" in out


def test_prune(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "prune", "--older-than", "7d", "--dir", str(store_dir))
    assert code == 0 and "pruned 1 of 3" in out
    code, out, _ = run(capsys, "prune", "--older-than", "30m", "--dir", str(store_dir))
    assert "pruned 1 of 2" in out


def test_clear(store_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "clear", "--dir", str(store_dir))
    assert code == 0 and "cleared 3 entries" in out
    assert "entries: 0" in run(capsys, "stats", "--dir", str(store_dir))[1]


def test_prune_deletes_entries_past_their_ttl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """diskcache keeps a row past its TTL until it culls on a write: prune removes it."""
    store = DiskCache(tmp_path / "disk")
    store.set(KEYS[0], make_entry("kept", created=time.time()))
    store.set(KEYS[1], make_entry("short-lived", created=time.time()), ttl=0.2)
    store.close()
    time.sleep(0.3)
    assert "entries: 2" in run(capsys, "stats", "--dir", str(tmp_path / "disk"))[1]
    code, _, _ = run(capsys, "prune", "--older-than", "30d", "--dir", str(tmp_path / "disk"))
    assert code == 0
    assert "entries: 1" in run(capsys, "stats", "--dir", str(tmp_path / "disk"))[1]


def test_export_import_round_trip(
    store_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "exported"
    code, out, _ = run(capsys, "export", str(exported), "--dir", str(store_dir))
    assert code == 0 and "exported 3 entries" in out
    assert sorted(p.stem for p in exported.glob("*.json")) == sorted(KEYS)
    target = tmp_path / "imported-disk"
    code, out, _ = run(capsys, "import", str(exported), "--dir", str(target))
    assert code == 0 and "imported 3 entries" in out
    again = tmp_path / "again"
    run(capsys, "export", str(again), "--dir", str(target))
    for path in exported.glob("*.json"):  # byte-identical through a DiskCache and back
        assert (again / path.name).read_bytes() == path.read_bytes()


def test_progress_on_large_copies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llmtap import MemoryCache
    from llmtap._cli_cache import copy

    source = MemoryCache()
    for i in range(PROGRESS_EVERY + 1):
        source.set(f"k{i}", make_entry(str(i)))
    copy(source, FileCache(tmp_path / "big"), "exported")
    out, err = capsys.readouterr()
    assert f"exported {PROGRESS_EVERY} entries..." in err
    assert f"exported {PROGRESS_EVERY + 1} entries" in out


def test_parse_duration() -> None:
    assert parse_duration("90s") == 90 and parse_duration("12h") == 43200
    assert parse_duration("1d12h") == 129600 and parse_duration("2w") == 1209600


def _plant_unreadable(directory: Path) -> None:
    """A merge-conflicted recording, or a database row whose key is a planted pickle."""
    if directory.name == "files":
        (directory / ("d" * 64 + ".json")).write_text("<<<<<<< HEAD\n{}\n>>>>>>> branch\n")
        return
    store = DiskCache(directory)
    store.set("d" * 64, b"doomed")
    store.close()
    with sqlite3.connect(directory / "cache.db") as db:
        db.execute("UPDATE Cache SET key = ?, raw = 0 WHERE key = ?", (b"\x80pickled", "d" * 64))


def test_clear_also_removes_what_no_command_can_read(
    store_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _plant_unreadable(store_dir)
    assert "entries: 4" in run(capsys, "stats", "--dir", str(store_dir))[1]
    code, out, _ = run(capsys, "clear", "--dir", str(store_dir))
    assert code == 0 and "cleared 4 entries" in out
    assert "entries: 0" in run(capsys, "stats", "--dir", str(store_dir))[1]
