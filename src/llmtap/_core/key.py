"""The cache key: sha256 over canonical JSON of the request's key material.

API.md "The cache key". Headers are never part of it, so API keys and SDK
bookkeeping headers (``x-stainless-*``) neither leak into the store nor split it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from llmtap._core.request import LLMCall

KEY_FORMAT = 1

DEFAULT_KEY_IGNORE: frozenset[str] = frozenset(
    {"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"}
)

# Beyond 2**53 a float no longer holds every integer exactly; leave such floats alone.
_EXACT_INT_LIMIT = 2.0**53


def canonical_value(value: Any) -> Any:
    """``value`` with every whole-number float written as an integer, so ``1.0`` keys like ``1``."""
    # ``type() is``: the values come from orjson.loads, so no subclasses; strings, the
    # commonest leaf, leave at the first test.
    kind = type(value)
    if kind is str:
        return value
    if kind is dict:
        return {k: canonical_value(v) for k, v in value.items()}
    if kind is list:
        return [canonical_value(v) for v in value]
    if kind is float and value.is_integer() and -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
        return int(value)
    return value


def canonical_body(body: dict[str, Any], ignore: Iterable[str]) -> dict[str, Any]:
    """The body as it counts for the key: ignored fields and ``"stream": false`` dropped."""
    skip = ignore if isinstance(ignore, frozenset | set) else set(ignore)
    out = {k: canonical_value(v) for k, v in body.items() if k not in skip}
    if out.get("stream") is False:
        del out["stream"]
    return out


def key_material(call: LLMCall, namespace: str, ignore: Iterable[str]) -> dict[str, Any]:
    """Everything the key is computed from; kept with the entry so a miss can be explained."""
    return {
        "v": KEY_FORMAT,
        "method": call.method,
        "host": f"{call.host.lower()}:{call.port}",
        "path": call.path,
        "query": sorted(call.query),
        "namespace": namespace,
        "body": canonical_body(call.body, ignore),
    }


def hash_material(material: dict[str, Any]) -> str:
    """The hex key for ``material``: compact, sorted-key UTF-8 JSON through sha256."""
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
