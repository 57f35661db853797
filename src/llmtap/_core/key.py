"""The cache key: sha256 over canonical JSON of the request's key material.

API.md "The cache key". Headers are never part of it, so API keys and SDK
bookkeeping headers (``x-stainless-*``) neither leak into the store nor split it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
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
# Such an integer literal has 19 digits or more (-2**63 - 1 has 19); not the fraction or
# the integer part of a float literal.
_LONG_INTEGER = re.compile(rb"(?:^|[^0-9.eE+\-])-?[0-9]{19,}(?![.eE0-9])")


class RoundedNumber(ValueError):
    """The body holds an integer beyond 64 bits, which its parsed form no longer keeps
    exactly: a key from it could serve another number's answer."""


def canonical_value(value: Any, rounded_limit: float = math.inf) -> Any:
    """``value`` with every whole-number float written as an integer, so ``1.0`` keys like
    ``1``. A whole float from ``rounded_limit`` up raises :class:`RoundedNumber`: it may
    be an integer the parser rounded (checked against the raw body by the caller)."""
    # ``type() is``: the values come from orjson.loads, so no subclasses; strings, the
    # commonest leaf, leave at the first test.
    kind = type(value)
    if kind is str:
        return value
    if kind is dict:
        return {k: canonical_value(v, rounded_limit) for k, v in value.items()}
    if kind is list:
        return [canonical_value(v, rounded_limit) for v in value]
    if kind is float and value.is_integer():
        if -_EXACT_INT_LIMIT <= value <= _EXACT_INT_LIMIT:
            return int(value)
        if abs(value) >= rounded_limit:
            raise RoundedNumber(f"the number {value:g} may be a rounded integer beyond 64 bits")
    return value


def canonical_body(
    body: dict[str, Any], ignore: Iterable[str], rounded_limit: float = math.inf
) -> dict[str, Any]:
    """The body as it counts for the key: ignored fields and ``"stream": false`` dropped."""
    skip = ignore if isinstance(ignore, frozenset | set) else set(ignore)
    out = {k: canonical_value(v, rounded_limit) for k, v in body.items() if k not in skip}
    if out.get("stream") is False:
        del out["stream"]
    return out


def _canonical_request_body(call: LLMCall, ignore: Iterable[str]) -> dict[str, Any]:
    try:
        return canonical_body(call.body, ignore, rounded_limit=_ROUNDED_INT_LIMIT)
    except RoundedNumber:
        if _LONG_INTEGER.search(call.request.body):
            raise  # an integer orjson rounded: the call is sent uncached
        # Only float literals as large (``1e300`` in a tool's JSON schema): exact as read.
        return canonical_body(call.body, ignore)


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
