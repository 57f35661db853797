"""Recordings for git: one pretty-printed JSON file per key (API.md "Cache backends").

Why JSON files and not diskcache: recordings committed next to the tests must be
readable in a code review, diffable, merge-friendly, and safe to load from an
untrusted checkout (``json`` only, never pickle). Each file is a *document*
(``llmtap.cache._document``) that rebuilds the exact entry bytes the transport stored:
status, allow-listed headers, a byte-identical body, identical stream chunk boundaries.

Stable bytes: a re-record that changes nothing must change no byte, or every
test run would dirty the work tree. Volatile fields (``created_at``,
``expires_at``, ``x-request-id``, ``openai-processing-ms``) are therefore
ignored when comparing a new recording with the file already there: if nothing
else differs the old file is kept untouched (and so is its ``created_at``,
which then means "first recorded with this content").

Writes go to a temporary file in the same directory, then ``os.replace``: a
reader (another pytest-xdist worker, a concurrent test run) sees the old file or
the new one, never half of one; concurrent writers of one key leave one whole
winner.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from llmtap._core.entry import EntryError, decode_entry, encode_entry
from llmtap.cache._document import document_to_entry, entry_to_document, same_recording
from llmtap.cache.base import ThreadedAsync, check_value

__all__ = ["FileCache", "RecordingError"]

# Keys become file names: refuse anything that could leave the directory or hide a file.
_SAFE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
SUFFIX = ".json"


# 19 digits in a row may be an integer beyond 64 bits, which orjson reads as a float:
# the rebuilt body would no longer be byte-identical.
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def _loads(raw: bytes) -> Any:
    """orjson, which reads a recording several times faster than ``json``; ``json`` when
    the file may hold an integer orjson cannot keep exact."""
    if _LONG_NUMBER.search(raw):
        return json.loads(raw)
    return orjson.loads(raw)


def _expired(document: dict[str, Any]) -> bool:
    """An expired recording is rewritten even when its answer is the same: kept, its old
    ``expires_at`` would make every later read a miss."""
    expires = document.get("expires_at")
    return isinstance(expires, int | float) and expires <= time.time()


class RecordingError(ValueError):
    """A recording file that is not a llmtap recording this version can read."""


def dump_document(document: dict[str, Any]) -> bytes:
    """The one byte layout of a recording: 2-space indent, UTF-8, trailing newline.

    Keys are sorted by ``entry_to_document`` everywhere except inside a stored JSON
    response body, whose member order is the upstream's and is needed to rebuild
    the exact body bytes; it is just as stable, since it comes from those bytes.
    """
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


class FileCache(ThreadedAsync):
    """A directory of ``<key>.json`` recordings, for test suites that commit them.

    Values must be llmtap entry bytes (``llmtap._core.entry`` format): the file
    holds them as readable JSON, not as an opaque blob. ``ttl`` is not stored
    separately: the entry's own ``expires_at`` carries it and the transport
    checks it on every read.

    >>> from llmtap import FileCache
    >>> cache = FileCache("tests/llmtap_recordings")
    """

    name = "files"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path_for(self, key: str) -> Path:
        if not isinstance(key, str) or not _SAFE_KEY.fullmatch(key):
            raise ValueError(
                f"FileCache keys are file names of letters, digits, '_', '.' and '-' "
                f"(not starting with '.' or '-'), got {key!r}"
            )
        return self.directory / f"{key}{SUFFIX}"

    # -- reading ----------------------------------------------------------------

    def read_document(self, key: str) -> dict[str, Any] | None:
        """The parsed file for ``key``, or ``None`` if there is none."""
        path = self.path_for(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            document = _loads(raw)
        except ValueError as exc:
            raise RecordingError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(document, dict):
            raise RecordingError(f"{path} does not hold a JSON object")
        if document.get("key", key) != key:
            raise RecordingError(f"{path} holds the recording of key {document.get('key')!r}")
        return document

    def get(self, key: str) -> bytes | None:
        """The entry bytes for ``key``; an unreadable file raises :class:`RecordingError`.

        The transport treats any backend error as a miss (and warns), so a
        hand-edited file gone wrong never breaks a call — it is reported instead.
        """
        document = self.read_document(key)
        if document is None:
            return None
        try:
            return encode_entry(document_to_entry(document))
        except (EntryError, KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{self.path_for(key)} is not a llmtap recording: {exc}") from None

    # -- writing ----------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_value(key, value)
        path = self.path_for(key)
        document = entry_to_document(key, decode_entry(value))
        try:
            previous = self.read_document(key)
        except RecordingError:
            previous = None  # a broken file is simply replaced
        if previous is not None and same_recording(previous, document) and not _expired(previous):
            return  # keep the old bytes: no churn in git for an identical re-record
        self.write_bytes(path, dump_document(document))

    def write_bytes(self, path: Path, data: bytes) -> None:
        """Write ``data`` to ``path`` atomically (temp file in the same dir + rename)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; recordings are shared files
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def delete(self, key: str) -> bool:
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def clear(self) -> None:
        for key in self.recorded_keys():
            self.delete(key)

    # -- listing ----------------------------------------------------------------

    def recorded_keys(self) -> list[str]:
        """Every recording's key, sorted; temp files and other files are ignored."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            if name.endswith(SUFFIX):
                key = name[: -len(SUFFIX)]
                if _SAFE_KEY.fullmatch(key):
                    out.append(key)
        return sorted(out)

    def iter_entries(self) -> Iterator[tuple[str, bytes]]:
        """``(key, entry bytes)`` for every readable recording; unreadable ones are skipped."""
        for key in self.recorded_keys():
            try:
                value = self.get(key)
            except (RecordingError, OSError):
                continue
            if value is not None:
                yield key, value

    def stats(self) -> dict[str, Any]:
        keys = self.recorded_keys()
        size = 0
        for key in keys:
            try:
                size += self.path_for(key).stat().st_size
            except OSError:
                continue
        return {
            "backend": self.name,
            "directory": str(self.directory),
            "entries": len(keys),
            "size_bytes": size,
        }

    def __repr__(self) -> str:
        return f"FileCache({str(self.directory)!r})"
