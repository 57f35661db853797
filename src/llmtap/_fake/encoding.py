"""Content-encoding for the fake's bodies.

Streams are compressed incrementally with a flush after every event, so each
compressed chunk still decodes to exactly one SSE event on arrival.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

ENCODINGS = ("gzip", "deflate", "br", "zstd")


def encode(chunks: list[bytes], encoding: str, *, finish: bool = True) -> list[bytes]:
    """Compress ``chunks`` as one body, returning one compressed chunk per input chunk.

    ``finish=False`` leaves the compressed stream unterminated (for a dropped stream).
    """
    step, end = _compressor(encoding)
    out = [step(chunk) for chunk in chunks]
    if finish:
        tail = end()
        if out:
            out[-1] += tail
        else:
            out.append(tail)
    return out


def _compressor(encoding: str) -> tuple[Callable[[bytes], bytes], Callable[[], bytes]]:
    if encoding in ("gzip", "deflate"):
        z = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
        return (lambda b: z.compress(b) + z.flush(zlib.Z_SYNC_FLUSH)), z.flush
    if encoding == "br":
        import brotli

        br: Any = brotli.Compressor()
        return (lambda b: br.process(b) + br.flush()), br.finish
    if encoding == "zstd":
        import zstandard

        zs: Any = zstandard.ZstdCompressor().compressobj()
        block = zstandard.COMPRESSOBJ_FLUSH_BLOCK
        return (lambda b: zs.compress(b) + zs.flush(block)), zs.flush
    raise ValueError(f"unsupported content_encoding {encoding!r}; use one of {ENCODINGS}")
