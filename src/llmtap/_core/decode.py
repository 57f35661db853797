"""Incremental content decoding of upstream answers.

At the transport, bodies are still content-encoded. The caller gets upstream's
bytes untouched (except a stream whose usage chunk ``ensure_stream_usage``
hides: that one is handed over decoded); llmtap decodes a copy to read the SSE
and to store the entry decoded. httpx and httpx2 each keep their decoders private (with different
signatures), so the few lines over zlib, brotli and zstandard live here.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any


class UnsupportedEncoding(ValueError):
    """An encoding llmtap cannot decode here; the answer passes through unstored."""


class CorruptBody(ValueError):
    """A body llmtap decodes for the caller is not valid in its encoding; the stream
    tees raise their library's ``DecodingError`` for it, as the library itself would."""


def _zlib(wbits: int) -> Callable[[], Any]:
    return lambda: zlib.decompressobj(wbits)


def _brotli() -> Any:
    import brotli

    return _Adapter(brotli.Decompressor().process)


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped (RFC 1950) or, as some do, raw
    (RFC 1951). httpx and httpx2 fall back to raw when the first chunk is not zlib."""

    __slots__ = ("_first", "_obj")

    def __init__(self) -> None:
        self._obj = zlib.decompressobj()
        self._first = True

    def decompress(self, data: bytes) -> bytes:
        first, self._first = self._first, False
        try:
            return self._obj.decompress(data)
        except zlib.error:
            if not first:
                raise
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._obj.decompress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


class _Zstd:
    """A zstd body may hold several frames (a server may end one per flush); a zstandard
    decompressobj stops at the end of its first. Start another on what follows, as
    httpx does."""

    __slots__ = ("_decompressor", "_obj")

    def __init__(self) -> None:
        import zstandard

        self._decompressor = zstandard.ZstdDecompressor()
        self._obj = self._decompressor.decompressobj()

    def decompress(self, data: bytes) -> bytes:
        out = b""
        while data:
            if self._obj.eof:  # a frame ended: at this chunk's start, or inside it
                self._obj = self._decompressor.decompressobj()
            out += self._obj.decompress(data)
            data = self._obj.unused_data if self._obj.eof else b""
        return out

    def flush(self) -> bytes:
        return b""


class _Adapter:
    __slots__ = ("decompress",)

    def __init__(self, process: Callable[[bytes], bytes]) -> None:
        self.decompress = process

    def flush(self) -> bytes:
        return b""


_FACTORIES: dict[str, Callable[[], Any]] = {
    "gzip": _zlib(zlib.MAX_WBITS | 16),
    "x-gzip": _zlib(zlib.MAX_WBITS | 16),
    "deflate": _Deflate,
    "br": _brotli,
    "zstd": _Zstd,
}


class Decoder:
    """Decodes ``Content-Encoding`` layers, outermost last, one chunk at a time."""

    __slots__ = ("_layers",)

    def __init__(self, content_encoding: str | None) -> None:
        names = [n.strip().lower() for n in (content_encoding or "").split(",")]
        names = [n for n in names if n and n != "identity"]
        self._layers = []
        for name in reversed(names):
            factory = _FACTORIES.get(name)
            if factory is None:
                raise UnsupportedEncoding(name)
            try:
                self._layers.append(factory())
            except ImportError:
                raise UnsupportedEncoding(name) from None

    def decode(self, data: bytes) -> bytes:
        for layer in self._layers:
            data = layer.decompress(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for layer in self._layers:
            data = layer.decompress(data) + layer.flush() if data else layer.flush()
        return data
