"""``ensure_stream_usage``: ask upstream for stream usage, and hide the extra chunk.

TELEMETRY.md: a stream whose caller did not ask for ``include_usage`` reports
no tokens. With the option on, llmtap adds ``stream_options.include_usage`` to
the request it sends and removes the usage-only chunk (``"choices": []``) from
what the caller reads, so the caller parses the same stream either way while
the call is still metered.
"""

from __future__ import annotations

from typing import Any

import orjson

_EVENT_END = b"\n\n"
_EMPTY_CHOICES = (b'"choices":[]', b'"choices": []')


def needs_usage(body: dict[str, Any], api_type: str) -> bool:
    """A streamed chat or text completion that did not ask for usage."""
    if body.get("stream") is not True or api_type not in ("chat", "text_completion"):
        return False
    options = body.get("stream_options")
    return not (isinstance(options, dict) and options.get("include_usage") is True)


def with_usage(body: dict[str, Any]) -> bytes:
    """The request body to send instead: the caller's, asking for usage."""
    options = body.get("stream_options")
    merged = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return orjson.dumps({**body, "stream_options": merged})


def _usage_only(event: bytes) -> bool:
    if not any(marker in event for marker in _EMPTY_CHOICES):
        return False
    payload = b"\n".join(
        line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")
    )
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and obj.get("usage") is not None


class UsageHider:
    """Passes whole SSE events through, minus the usage-only one.

    Events are released as soon as their blank line arrives, so the caller
    still sees each event the moment it is complete.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def visible(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        cut = data.rfind(_EVENT_END)
        if cut < 0:
            self._pending = data
            return b""
        head, self._pending = data[: cut + 2], data[cut + 2 :]
        if not any(marker in head for marker in _EMPTY_CHOICES):
            return head
        events = head.split(_EVENT_END)[:-1]
        return b"".join(e + _EVENT_END for e in events if not _usage_only(e))

    def flush(self) -> bytes:
        tail, self._pending = self._pending, b""
        return tail
