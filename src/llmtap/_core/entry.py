"""Cache entries and their byte format.

API.md "What is stored". Values are bytes in a versioned format of our own —
never pickle — so a shared or tampered store cannot run code when read:

    b"llmtap-entry:2\\n" | length | meta JSON | length | key material JSON | body

(lengths are 4-byte big-endian). The body is stored decoded (no
``content-encoding``); a stream keeps its chunk boundaries as a list of chunk
lengths, so a hit replays the recorded events without re-splitting anything
per serve. The key material (the whole canonical request) sits in its own
section because only a replay miss's explanation and the CLI read it: a hit
skips it without parsing. Format 1 (key material inside the meta) is still read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

MAGIC = b"llmtap-entry:"
FORMAT_VERSION = 2
_HEADER = MAGIC + str(FORMAT_VERSION).encode() + b"\n"
_READABLE = (b"1", b"2")
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
    #: What the answer said (id, model, service tier, finish reasons), so a hit's span
    #: gets its response attributes without re-reading the body. ``None`` in old entries.
    response: dict[str, Any] | None = None

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
        "usage": entry.usage,
        "response": entry.response,
    }
    blob = orjson.dumps(meta)
    material = orjson.dumps(entry.key_material)
    return b"".join(
        (_HEADER, _LENGTH.pack(len(blob)), blob, _LENGTH.pack(len(material)), material, entry.body)
    )


def _section(data: bytes, at: int) -> tuple[bytes, int]:
    """The length-prefixed section at ``at``, and the offset after it."""
    start = at + _LENGTH.size
    if len(data) < start:
        raise EntryError("entry is truncated")
    (length,) = _LENGTH.unpack_from(data, at)
    end = start + length
    if len(data) < end:
        raise EntryError("entry is truncated")
    return data[start:end], end


def _object(blob: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(blob)
    except orjson.JSONDecodeError as exc:
        raise EntryError(f"entry {what} is unreadable: {exc}") from None
    if not isinstance(value, dict):
        raise EntryError(f"entry {what} is not a JSON object")
    return value


def decode_entry(data: bytes, material: bool = True) -> CacheEntry:
    """Parse entry bytes; anything unexpected is an :class:`EntryError`, never a guess.

    ``material=False`` leaves ``key_material`` empty without parsing it: serving a
    hit never needs the request it was keyed on.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EntryError(f"entry is {type(data).__name__}, not bytes")
    data = bytes(data)
    if not data.startswith(MAGIC):
        raise EntryError("not a llmtap entry (bad magic)")
    line_end = data.find(b"\n", len(MAGIC))
    version = data[len(MAGIC) : line_end]
    if line_end < 0 or version not in _READABLE:
        raise EntryError(f"entry format {version[:16]!r} is not {FORMAT_VERSION}")
    blob, end = _section(data, line_end + 1)
    meta = _object(blob, "metadata")
    if version == b"1":
        key_material = _field(meta, "key_material", dict)
    else:
        blob, end = _section(data, end)
        key_material = _object(blob, "key material") if material else {}
    body = data[end:]
    # A tampered store may hold any JSON here: check every field's type, so what
    # decodes can be served and compared without raising later (e.g. a string
    # ``expires_at`` would break the expiry check on every read).
    status = _field(meta, "status", int)
    if isinstance(status, bool) or not 100 <= status <= 599:
        raise EntryError(f"entry status {status!r} is not an HTTP status")
    pairs = []
    for header in _field(meta, "headers", list):
        if type(header) is not list or len(header) != 2:
            raise EntryError("entry headers are not a list of [name, value] strings")
        name, value = header
        if type(name) is not str or type(value) is not str:
            raise EntryError("entry headers are not a list of [name, value] strings")
        pairs.append((name, value))
    chunks = _field(meta, "chunks", list, optional=True)
    if chunks is not None and not (
        all(type(n) is int and n >= 0 for n in chunks) and sum(chunks) == len(body)
    ):
        raise EntryError("entry chunk lengths do not match its body")
    return CacheEntry(
        status=status,
        headers=pairs,
        body=body,
        created_at=float(_number(meta, "created_at", optional=False)),
        chunks=chunks,
        expires_at=_number(meta, "expires_at", optional=True),
        system_fingerprint=_field(meta, "system_fingerprint", str, optional=True),
        summary=_field(meta, "summary", dict),
        key_material=key_material,
        usage=_field(meta, "usage", dict, optional=True),
        response=_field(meta, "response", dict, optional=True) if "response" in meta else None,
    )


def _field(meta: dict[str, Any], name: str, kind: type, optional: bool = False) -> Any:
    if name not in meta:
        raise EntryError(f"entry metadata has no {name!r}")
    value = meta[name]
    if (value is None and optional) or isinstance(value, kind):
        return value
    raise EntryError(f"entry {name} is {type(value).__name__}, not {kind.__name__}")


def _number(meta: dict[str, Any], name: str, optional: bool) -> Any:
    if name not in meta:
        raise EntryError(f"entry metadata has no {name!r}")
    value = meta[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EntryError(f"entry {name} is {type(value).__name__}, not a number")
    return value
