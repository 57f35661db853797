"""``llmtap cache stats|ls|show|prune|clear|export|import``: inspect and maintain a store.

Which store (first match wins):

- ``--files DIR``: a :class:`~llmtap.cache.FileCache` (JSON recordings).
- ``--dir DIR``: a :class:`~llmtap.cache.DiskCache` if ``DIR`` holds a
  ``cache.db``; else a FileCache if it holds ``*.json`` recordings or the
  command only reads; else (``import`` into a new or empty dir) a DiskCache.
- ``--redis-url URL``: RedisCache, once it exists.
- neither: ``LLMTAP_CACHE_DIR`` or the platform cache dir, detected as for ``--dir``.

Bad input (a missing directory, an unknown or ambiguous key, a bad duration)
prints one line on stderr and exits 2. Only allow-listed response headers are
ever printed; entries hold no request headers at all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from llmtap._core.entry import CacheEntry, EntryError, allowed_headers, decode_entry, encode_entry
from llmtap.cache.base import CacheBackend
from llmtap.cache.disk import DiskCache, default_directory
from llmtap.cache.files import FileCache

PROGRESS_EVERY = 500
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class UsageProblem(Exception):
    """Bad input from the user: reported on stderr, exit code 2."""


def add_cache_commands(commands: Any) -> None:
    store = argparse.ArgumentParser(add_help=False)
    where = store.add_argument_group("store")
    # SUPPRESS: the options may come before or after the action without overwriting.
    where.add_argument("--dir", default=argparse.SUPPRESS, help="a DiskCache (or FileCache) dir")
    where.add_argument("--files", default=argparse.SUPPRESS, help="a FileCache recordings dir")
    where.add_argument("--redis-url", default=argparse.SUPPRESS, help="a RedisCache URL")
    where.add_argument(
        "--redis-prefix",
        default=argparse.SUPPRESS,
        help="the RedisCache key prefix (default llmtap:), as given to RedisCache(prefix=...)",
    )
    cache = commands.add_parser("cache", parents=[store], help="inspect and maintain a cache store")
    actions = cache.add_subparsers(dest="action", required=True)
    actions.add_parser("stats", parents=[store], help="entries and size")
    actions.add_parser("ls", parents=[store], help="a table of the stored entries")
    show = actions.add_parser("show", parents=[store], help="one entry, request and response")
    show.add_argument("key", help="a key or a unique key prefix")
    prune = actions.add_parser("prune", parents=[store], help="delete old and expired entries")
    prune.add_argument("--older-than", required=True, help="e.g. 7d, 12h, 30m, 90s")
    actions.add_parser("clear", parents=[store], help="delete every entry")
    export = actions.add_parser("export", parents=[store], help="write entries as JSON files")
    export.add_argument("target", metavar="DIR")
    imp = actions.add_parser("import", parents=[store], help="read JSON recordings into the store")
    imp.add_argument("source", metavar="DIR")


def run_cache_command(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageProblem as exc:
        print(f"llmtap cache: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # an unreachable Redis, an unwritable dir: say so, no traceback
        print(f"llmtap cache: the store failed: {exc!r}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    creating = args.action == "import"
    prefix = getattr(args, "redis_prefix", None)
    if prefix is not None and getattr(args, "redis_url", None) is None:
        raise UsageProblem("--redis-prefix needs --redis-url")
    store = open_store(
        getattr(args, "dir", None),
        getattr(args, "files", None),
        getattr(args, "redis_url", None),
        create=creating,
        redis_prefix=prefix,
    )
    try:
        _act(args, store)
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    return 0


def _act(args: argparse.Namespace, store: CacheBackend) -> None:
    if args.action == "stats":
        for name, value in store.stats().items():
            print(f"{name}: {value}")
    elif args.action == "ls":
        print_table(store)
    elif args.action == "show":
        key = find_key(store, args.key)
        print_entry(key, decode_entry(_get(store, key)))
    elif args.action == "prune":
        prune(store, parse_duration(args.older_than))
    elif args.action == "clear":
        # The store's own clear: it also removes entries that no longer decode (a tampered
        # row, a broken recording), which listing skips.
        count = store.stats().get("entries")
        clear = getattr(store, "clear", None)  # every built-in store has one
        if callable(clear):
            clear()
        else:
            for key in [key for key, _ in store.iter_entries()]:
                store.delete(key)
        print(f"cleared {count} entries from {_describe(store)}")
    elif args.action == "export":
        copy(store, FileCache(args.target), "exported")
    elif args.action == "import":
        source = Path(args.source)
        if not source.is_dir():
            raise UsageProblem(f"no such directory: {source}")
        copy(FileCache(source), store, "imported")


def open_store(
    directory: str | None,
    files: str | None,
    redis_url: str | None,
    *,
    create: bool,
    redis_prefix: str | None = None,
) -> CacheBackend:
    if redis_url is not None:
        try:
            from llmtap.cache import RedisCache
        except ImportError as exc:
            raise UsageProblem(f"RedisCache is not available: {exc}") from None
        if redis_prefix is None:
            return RedisCache(redis_url)
        return RedisCache(redis_url, prefix=redis_prefix)
    if files is not None:
        path = Path(files)
        if not create and not path.is_dir():
            raise UsageProblem(f"no such directory: {path}")
        return FileCache(path)
    path = Path(directory) if directory is not None else default_directory()
    if not path.is_dir():
        if not create:
            raise UsageProblem(f"no such directory: {path} (give --dir or --files)")
        return DiskCache(path)
    if (path / "cache.db").exists():
        return DiskCache(path)
    if any(path.glob("*.json")) or not create:
        # Reading a directory that holds no diskcache must not create one in it
        # (an empty recordings directory would then turn into a DiskCache).
        return FileCache(path)
    return DiskCache(path)


def parse_duration(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` (or combined: ``1d12h``) in seconds."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or _DURATION.sub("", cleaned).strip():
        raise UsageProblem(
            f"bad duration {text!r}: use a number and a unit s, m, h, d or w (e.g. 7d, 12h, 90s)"
        )
    return sum(float(n) * _UNITS[unit] for n, unit in parts)


def _describe(store: CacheBackend) -> str:
    return str(store.stats().get("directory", getattr(store, "name", "store")))


def _get(store: CacheBackend, key: str) -> bytes:
    value = store.get(key)
    if value is None:
        raise UsageProblem(f"no entry with key {key}")
    return value


def _entries(store: CacheBackend) -> list[tuple[str, CacheEntry, int]]:
    out = []
    for key, raw in store.iter_entries():
        try:
            out.append((key, decode_entry(raw), len(raw)))
        except EntryError:
            continue
    return out


def find_key(store: CacheBackend, prefix: str) -> str:
    keys = [key for key, _ in store.iter_entries() if key.startswith(prefix)]
    if not prefix or not keys:
        raise UsageProblem(f"no entry with a key starting {prefix!r} in {_describe(store)}")
    if len(keys) > 1 and prefix not in keys:
        shown = ", ".join(k[:16] for k in sorted(keys)[:5])
        raise UsageProblem(f"key prefix {prefix!r} is ambiguous: {len(keys)} match ({shown}...)")
    return prefix if prefix in keys else keys[0]


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def print_table(store: CacheBackend) -> None:
    rows = [("KEY", "OPERATION", "MODEL", "CREATED", "SIZE", "STREAM")]
    for key, entry, size in sorted(_entries(store), key=lambda e: (e[1].created_at, e[0])):
        rows.append(
            (
                key[:12],
                str(entry.summary.get("operation", "?")),
                str(entry.summary.get("model", "?")),
                _when(entry.created_at),
                str(size),
                "yes" if entry.is_stream else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows) - 1} entries")


def _pretty(data: bytes) -> str:
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except ValueError:
        return data.decode("utf-8", "replace")


def print_entry(key: str, entry: CacheEntry) -> None:
    summary = entry.summary
    print(f"key:        {key}")
    print(f"operation:  {summary.get('operation', '?')}  model: {summary.get('model', '?')}")
    print(f"endpoint:   {summary.get('host', '?')}{summary.get('path', '')}")
    print(f"created:    {_when(entry.created_at)}")
    if entry.expires_at is not None:
        print(f"expires:    {_when(entry.expires_at)}")
    print(f"fingerprint: {entry.system_fingerprint}")
    print(f"usage:      {json.dumps(entry.usage, sort_keys=True)}")
    print("request:")
    print(json.dumps(entry.key_material.get("body"), indent=2, sort_keys=True, ensure_ascii=False))
    print(f"response:   HTTP {entry.status}")
    for name, value in allowed_headers(entry.headers):
        print(f"  {name}: {value}")
    if entry.is_stream:
        print(f"stream of {len(entry.chunks or [])} chunks:")
        for chunk in entry.iter_chunks():
            print("  " + chunk.decode("utf-8", "replace").rstrip("\n").replace("\n", "\n  "))
    else:
        print(_pretty(entry.body))


def prune(store: CacheBackend, older_than: float) -> None:
    expire = getattr(store, "expire", None)  # rows past their TTL that a store still keeps
    if callable(expire):
        expire()
    now = time.time()
    cutoff = now - older_than
    entries = _entries(store)
    doomed = [k for k, e, _ in entries if e.created_at < cutoff or e.expired(now)]
    for key in doomed:
        store.delete(key)
    print(f"pruned {len(doomed)} of {len(entries)} entries from {_describe(store)}")


def copy(source: CacheBackend, target: CacheBackend, verb: str) -> None:
    """Copy every live entry, with a count on stderr every ``PROGRESS_EVERY`` entries."""
    now = time.time()
    done = skipped = 0
    for key, raw in source.iter_entries():
        try:
            entry = decode_entry(raw)
        except EntryError:
            skipped += 1
            continue
        if entry.expired(now):
            skipped += 1
            continue
        ttl = None if entry.expires_at is None else max(1.0, entry.expires_at - now)
        target.set(key, encode_entry(entry), ttl)
        done += 1
        if done % PROGRESS_EVERY == 0:
            print(f"{verb} {done} entries...", file=sys.stderr, flush=True)
    note = f" ({skipped} expired or unreadable skipped)" if skipped else ""
    print(f"{verb} {done} entries to {_describe(target)}{note}")
