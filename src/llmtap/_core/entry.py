"""Cache entries and their byte format.

API.md "What is stored". Values are bytes in a versioned format of our own —
never pickle — so a shared or tampered store cannot run code when read:

    b"llmtap-entry:1\\n" | 4-byte big-endian length of the meta JSON | meta JSON | body

The body is stored decoded (no ``content-encoding``); a stream keeps its chunk
boundaries as a list of chunk lengths, so a hit replays the recorded events
without re-splitting anything per serve.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

MAGIC = b"llmtap-entry:"
FORMAT_VERSION = 1
_HEADER = MAGIC + str(FORMAT_VERSION).encode() + b"\n"
_LENGTH = struct.Struct(">I")

# Response headers worth replaying. Anything else (set-cookie, openai-organization,
# openai-project, rate-limit details, content-encoding) is dropped before storing.
STORED_HEADERS: tuple[str, ...] = (
    "content-type",
    "openai-version",
    "openai-processing-ms",
    "x-request-id",
)


class EntryError(ValueError):
    """Bytes that are not a llmtap entry this version can read."""


@dataclass(slots=True)
class CacheEntry:
    """One stored answer, with what is needed to serve and to explain it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    created_at: float
    chunks: list[int] | None = None
    expires_at: float | None = None
    system_fingerprint: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    key_material: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, Any] | None = None

    @property
    def is_stream(self) -> bool:
        return self.chunks is not None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def iter_chunks(self) -> list[bytes]:
        """The recorded chunks, sliced from the body by their stored lengths."""
        if self.chunks is None:
            return [self.body] if self.body else []
        out, offset = [], 0
        for length in self.chunks:
            out.append(self.body[offset : offset + length])
            offset += length
        return out


def allowed_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Only the allow-listed response headers, lower-cased, in their order."""
    return [(k.lower(), v) for k, v in headers if k.lower() in STORED_HEADERS]


def encode_entry(entry: CacheEntry) -> bytes:
    meta = {
        "status": entry.status,
        "headers": entry.headers,
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
        "chunks": entry.chunks,
        "system_fingerprint": entry.system_fingerprint,
        "summary": entry.summary,
        "key_material": entry.key_material,
        "usage": entry.usage,
    }
    blob = orjson.dumps(meta)
    return b"".join((_HEADER, _LENGTH.pack(len(blob)), blob, entry.body))


def decode_entry(data: bytes) -> CacheEntry:
    """Parse entry bytes; anything unexpected is an :class:`EntryError`, never a guess."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EntryError(f"entry is {type(data).__name__}, not bytes")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise EntryError("not a llmtap entry (bad magic)")
    line_end = data.find(b"\n", len(MAGIC))
    version = data[len(MAGIC) : line_end]
    if line_end < 0 or version != str(FORMAT_VERSION).encode():
        raise EntryError(f"entry format {version[:16]!r} is not {FORMAT_VERSION}")
    start = line_end + 1 + _LENGTH.size
    if len(data) < start:
        raise EntryError("entry is truncated")
    (meta_len,) = _LENGTH.unpack_from(data, line_end + 1)
    if len(data) < start + meta_len:
        raise EntryError("entry is truncated")
    try:
        meta = orjson.loads(data[start : start + meta_len])
        body = data[start + meta_len :]
        chunks = meta["chunks"]
        if chunks is not None and (
            not all(isinstance(n, int) and n >= 0 for n in chunks) or sum(chunks) != len(body)
        ):
            raise EntryError("entry chunk lengths do not match its body")
        return CacheEntry(
            status=int(meta["status"]),
            headers=[(str(k), str(v)) for k, v in meta["headers"]],
            body=body,
            created_at=float(meta["created_at"]),
            chunks=chunks,
            expires_at=meta["expires_at"],
            system_fingerprint=meta["system_fingerprint"],
            summary=dict(meta["summary"]),
            key_material=dict(meta["key_material"]),
            usage=meta["usage"],
        )
    except EntryError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EntryError(f"entry metadata is unreadable: {exc}") from None
