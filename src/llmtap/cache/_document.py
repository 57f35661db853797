"""A cache entry as a readable JSON document, and back, losslessly.

Used by :class:`llmtap.cache.files.FileCache` and by ``llmtap cache export``.
Why the care: a recording must be pleasant to read in a review (parsed JSON,
SSE events one per line) *and* rebuild the exact entry the transport stored,
because a replayed answer must be byte-identical to the recorded one (tests
assert on chunk sequences, usage chunks and tool-call deltas).

- A JSON body is stored parsed only when re-serialising it in one of a few
  known layouts gives back the very same bytes; the layout is named in
  ``body_format``. Otherwise it is stored as text (UTF-8) or base64.
- A stream is stored as its list of chunks, each a string when it is valid
  UTF-8, else ``{"base64": ...}``; the list *is* the chunk boundaries.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from llmtap._core.entry import STORED_HEADERS, CacheEntry

FORMAT = "llmtap-recording/1"

# Body fields copied next to the summary so a reader sees the prompt at a glance.
READABLE_FIELDS = ("messages", "input", "prompt", "instructions")

# Headers that differ on every call to a real API without changing the answer.
VOLATILE_HEADERS = frozenset({"x-request-id", "openai-processing-ms"})

# name -> json.dumps keywords; tried in order, with and without a trailing newline.
_LAYOUTS: dict[str, dict[str, Any]] = {
    "compact": {"separators": (",", ":"), "ensure_ascii": False},
    "compact-ascii": {"separators": (",", ":"), "ensure_ascii": True},
    "spaced": {"separators": (", ", ": "), "ensure_ascii": False},
    "spaced-ascii": {"separators": (", ", ": "), "ensure_ascii": True},
    "indent2": {"indent": 2, "ensure_ascii": False},
    "indent2-ascii": {"indent": 2, "ensure_ascii": True},
}


def sort_keys(value: Any) -> Any:
    """``value`` with every dict's keys sorted, recursively (stable file bytes)."""
    if isinstance(value, dict):
        return {k: sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sort_keys(v) for v in value]
    return value


def _json_layout(body: bytes) -> tuple[str, Any] | None:
    """``(format name, parsed)`` if some known layout reproduces ``body`` exactly."""
    try:
        text = body.decode("utf-8")
        parsed = json.loads(text)
    except ValueError:
        return None
    for name, options in _LAYOUTS.items():
        try:
            dumped = json.dumps(parsed, **options)
        except ValueError:
            return None
        if dumped == text:
            return f"json:{name}", parsed
        if dumped + "\n" == text:
            return f"json:{name}+newline", parsed
    return None


def encode_body(body: bytes) -> tuple[str, Any]:
    """``(body_format, value)`` for a non-stream body: parsed JSON, text or base64."""
    layout = _json_layout(body)
    if layout is not None:
        return layout
    try:
        return "text", body.decode("utf-8")
    except UnicodeDecodeError:
        return "base64", base64.b64encode(body).decode("ascii")


def decode_body(body_format: str, value: Any) -> bytes:
    if body_format == "text":
        return _text(value).encode("utf-8")
    if body_format == "base64":
        return base64.b64decode(_text(value), validate=True)
    if body_format.startswith("json:"):
        name, _, newline = body_format[5:].partition("+")
        if name not in _LAYOUTS or newline not in ("", "newline"):
            raise ValueError(f"unknown body_format {body_format!r}")
        text = json.dumps(value, **_LAYOUTS[name]) + ("\n" if newline else "")
        return text.encode("utf-8")
    raise ValueError(f"unknown body_format {body_format!r}")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def encode_chunk(chunk: bytes) -> str | dict[str, str]:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(chunk).decode("ascii")}


def decode_chunk(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and set(value) == {"base64"}:
        return base64.b64decode(_text(value["base64"]), validate=True)
    raise TypeError(f"a stream chunk is a string or {{'base64': ...}}, got {value!r}")


def entry_to_document(key: str, entry: CacheEntry) -> dict[str, Any]:
    """The readable document for ``entry``; every key sorted except inside a JSON body."""
    response: dict[str, Any] = {
        "status": entry.status,
        # Re-filter: an entry built by hand must not smuggle a cookie into git.
        "headers": [[k.lower(), v] for k, v in entry.headers if k.lower() in STORED_HEADERS],
    }
    if entry.is_stream:
        response["stream"] = [encode_chunk(c) for c in entry.iter_chunks()]
    else:
        response["body_format"], response["body"] = encode_body(entry.body)
    summary = sort_keys(entry.summary)
    request = dict(summary)
    body = entry.key_material.get("body")
    document: dict[str, Any] = {}
    if any(name in summary for name in READABLE_FIELDS):
        document["summary"] = summary  # keep the summary exact when it would clash
    elif isinstance(body, dict):
        request.update({f: sort_keys(body[f]) for f in READABLE_FIELDS if f in body})
    document.update(
        {
            "created_at": entry.created_at,
            "expires_at": entry.expires_at,
            "format": FORMAT,
            "key": key,
            "key_material": sort_keys(entry.key_material),
            "request": dict(sorted(request.items())),
            "response": dict(sorted(response.items())),
            "system_fingerprint": entry.system_fingerprint,
            "usage": sort_keys(entry.usage),
        }
    )
    return dict(sorted(document.items()))


def document_to_entry(document: dict[str, Any]) -> CacheEntry:
    """The entry a document was made from; raises ``ValueError``/``KeyError``/``TypeError``."""
    if document.get("format") != FORMAT:
        raise ValueError(f"format is {document.get('format')!r}, not {FORMAT!r}")
    response = document["response"]
    if not isinstance(response, dict):
        raise TypeError("response is not an object")
    headers = [(str(k), str(v)) for k, v in response["headers"]]
    headers = [(k, v) for k, v in headers if k.lower() in STORED_HEADERS]
    chunks: list[int] | None = None
    if "stream" in response:
        if not isinstance(response["stream"], list):
            raise TypeError("stream is not a list")
        parts = [decode_chunk(c) for c in response["stream"]]
        chunks = [len(p) for p in parts]
        body = b"".join(parts)
    else:
        body = decode_body(_text(response["body_format"]), response["body"])
    if "summary" in document:
        summary = dict(document["summary"])
    else:
        request = dict(document.get("request") or {})
        summary = {k: v for k, v in request.items() if k not in READABLE_FIELDS}
    expires_at = document.get("expires_at")
    return CacheEntry(
        status=int(response["status"]),
        headers=headers,
        body=body,
        created_at=float(document["created_at"]),
        chunks=chunks,
        expires_at=None if expires_at is None else float(expires_at),
        system_fingerprint=document.get("system_fingerprint"),
        summary=summary,
        key_material=dict(document["key_material"]),
        usage=document.get("usage"),
    )


def _comparable(document: dict[str, Any]) -> dict[str, Any]:
    out = dict(document)
    created, expires = out.pop("created_at", None), out.pop("expires_at", None)
    lifetime = None
    if isinstance(created, int | float) and isinstance(expires, int | float):
        lifetime = round(expires - created)
    out["~lifetime"] = (expires is not None, lifetime)
    response = dict(out.get("response") or {})
    response["headers"] = [
        h for h in response.get("headers") or [] if str(h[0]).lower() not in VOLATILE_HEADERS
    ]
    out["response"] = response
    return out


def same_recording(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two documents differ only in timestamps and per-call header values."""
    try:
        return _comparable(old) == _comparable(new)
    except (TypeError, IndexError, AttributeError):
        return False
