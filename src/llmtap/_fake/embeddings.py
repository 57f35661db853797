"""Embeddings answers (``/embeddings``): unit vectors derived from each input.

Separate from the text APIs: no words, no streaming, just vectors whose float and
base64 encodings carry equal values.
"""

from __future__ import annotations

import base64
import hashlib
import struct

from llmtap._fake.context import RequestContext, count_tokens, sha, text_of
from llmtap._fake.reply import JSON_TYPE, Answer, dumps


def embeddings_answer(ctx: RequestContext) -> Answer:
    raw = ctx.req.get("input")
    if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
        inputs: list[object] = [raw]
    else:
        inputs = raw if isinstance(raw, list) else [raw]
    dims = ctx.req.get("dimensions")
    dims = dims if isinstance(dims, int) and not isinstance(dims, bool) and 0 < dims <= 4096 else 8
    as_base64 = ctx.req.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, item in enumerate(inputs):
        tokens += len(item) if isinstance(item, list) else count_tokens(text_of(item))
        vector = _vector(sha([ctx.model, dims, item]), dims)
        packed = struct.pack(f"<{dims}f", *vector)
        embedding: object = base64.b64encode(packed).decode() if as_base64 else vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    body = {"object": "list", "data": data, "model": ctx.model, "usage": usage}
    return Answer(200, JSON_TYPE, [dumps(body)])


def _vector(seed: bytes, dims: int) -> list[float]:
    raw = []
    for i in range(dims):
        block = hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        raw.append(int.from_bytes(block[:4], "big") / 2**31 - 1.0)
    norm = sum(v * v for v in raw) ** 0.5 or 1.0
    # Round through float32 so the "float" and "base64" encodings carry equal values.
    return list(struct.unpack(f"<{dims}f", struct.pack(f"<{dims}f", *(v / norm for v in raw))))
