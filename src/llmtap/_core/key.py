"""The cache key: sha256 over canonical JSON of the request's key material.

API.md "The cache key". Headers are never part of it, so API keys and SDK
bookkeeping headers (``x-stainless-*``) neither leak into the store nor split it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from llmtap._core.request import LLMCall

KEY_FORMAT = 1

DEFAULT_KEY_IGNORE: frozenset[str] = frozenset(
    {"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"}
)

#: Query parameters that carry credentials (Azure's ``api-key``, Google's ``key``, Azure
#: Functions' ``code``, SAS ``sig``, ...): like headers, never part of the key nor stored.
CREDENTIAL_PARAMS: frozenset[str] = frozenset(
    {
        "api-key", "api_key", "apikey", "key", "access_token", "token", "code", "sig",
        "signature", "subscription-key", "password", "secret",
    }
)  # fmt: skip

# Beyond 2**53 a float no longer holds every integer exactly; leave such floats alone.
_EXACT_INT_LIMIT = 2.0**53
# orjson reads an integer beyond 64 bits as a float: two such numbers may become one.
_ROUNDED_INT_LIMIT = 2.0**63


class RoundedNumber(ValueError):
    """A whole float this large may be an integer the parser rounded."""


def _canonicalizer(rounded_limit: float) -> Callable[[Any], Any]:
    """A :func:`canonical_value` that raises :class:`RoundedNumber` for a whole float
    from ``rounded_limit`` up (one walk, the limit in a closure rather than an argument
    passed down every level)."""

    def canonical(value: Any) -> Any:
        # ``type() is``: the values come from a JSON parser, so no subclasses; strings,
        # the commonest leaf, leave at the first test.
        kind = type(value)
        if kind is str:
            return value
        if kind is dict:
            return {k: canonical(v) for k, v in value.items()}
        if kind is list:
            return [canonical(v) for v in value]
        if kind is float and value.is_integer():
            if -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
                return int(value)
            if abs(value) >= rounded_limit:
                raise RoundedNumber(f"the number {value:g} may be a rounded integer")
        return value

    return canonical


#: ``value`` with every whole-number float written as an integer, so ``1.0`` keys like ``1``.
canonical_value = _canonicalizer(math.inf)
_checked_value = _canonicalizer(_ROUNDED_INT_LIMIT)


def canonical_body(
    body: dict[str, Any], ignore: Iterable[str], value: Callable[[Any], Any] = canonical_value
) -> dict[str, Any]:
    """The body as it counts for the key: ignored fields and ``"stream": false`` dropped."""
    skip = ignore if isinstance(ignore, frozenset | set) else set(ignore)
    out = {k: value(v) for k, v in body.items() if k not in skip}
    if out.get("stream") is False:
        del out["stream"]
    return out


def _canonical_request_body(call: LLMCall, ignore: Iterable[str]) -> dict[str, Any]:
    try:
        return canonical_body(call.body, ignore, _checked_value)
    except RoundedNumber:
        # Read the body again with ``json``, which keeps every integer exact: a float
        # literal as large (``1e300`` in a tool's schema) keys as usual, and an integer
        # beyond 64 bits fails to serialise below, so that call goes uncached.
        return canonical_body(json.loads(call.request.body), ignore)


def key_material(call: LLMCall, namespace: str, ignore: Iterable[str]) -> dict[str, Any]:
    """Everything the key is computed from; kept with the entry so a miss can be explained."""
    return {
        "v": KEY_FORMAT,
        "method": call.method,
        "host": f"{call.host.lower()}:{call.port}",
        "path": call.path,
        "query": [[k, v] for k, v in sorted(call.query) if k.lower() not in CREDENTIAL_PARAMS],
        "namespace": namespace,
        "body": _canonical_request_body(call, ignore),
    }


def hash_material(material: dict[str, Any]) -> str:
    """The hex key for ``material``: compact, sorted-key UTF-8 JSON through sha256."""
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()
