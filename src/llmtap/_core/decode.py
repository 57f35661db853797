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


def _zstd() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


class _Adapter:
    __slots__ = ("decompress",)

    def __init__(self, process: Callable[[bytes], bytes]) -> None:
        self.decompress = process

    def flush(self) -> bytes:
        return b""


_FACTORIES: dict[str, Callable[[], Any]] = {
    "gzip": _zlib(zlib.MAX_WBITS | 16),
    "x-gzip": _zlib(zlib.MAX_WBITS | 16),
    "deflate": _zlib(zlib.MAX_WBITS),
    "br": _brotli,
    "zstd": _zstd,
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
