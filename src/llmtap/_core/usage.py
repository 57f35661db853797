"""``ensure_stream_usage``: ask upstream for stream usage, and hide the extra chunk.

TELEMETRY.md: a stream whose caller did not ask for ``include_usage`` reports
no tokens. With the option on, llmtap adds ``stream_options.include_usage`` to
the request it sends and removes the usage-only chunk (``"choices": []``) from
what the caller reads, so the caller parses the same stream either way while
the call is still metered.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# An event ends at a blank line; SSE lets lines end in LF, CRLF or CR (sse-starlette,
# behind llama-cpp-python and others, sends CRLF).
_EVENT_END = b"\n\n"
_ANY_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r|\n\r\n|\r\n\n")
_EMPTY_CHOICES = (b'"choices":[]', b'"choices": []')
# With include_usage, OpenAI adds "usage":null to every chunk, last in the object.
_NULL_USAGE = (b',"usage":null}', b', "usage": null}')


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
    lines = event.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    payload = b"\n".join(line[5:].strip() for line in lines if line.startswith(b"data:"))
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("choices") == [] and obj.get("usage") is not None


def _after_last_event(data: bytes) -> int:
    """Where the last complete event in ``data`` ends, or -1."""
    if b"\r" not in data:
        cut = data.rfind(_EVENT_END)
        return -1 if cut < 0 else cut + 2
    end = -1
    for match in _ANY_EVENT_END.finditer(data):
        end = match.end()
    return end


def _events(data: bytes) -> list[bytes]:
    """Complete events, each with its own blank line."""
    if b"\r" not in data:
        return [event + _EVENT_END for event in data.split(_EVENT_END)[:-1]]
    events, start = [], 0
    for match in _ANY_EVENT_END.finditer(data):
        events.append(data[start : match.end()])
        start = match.end()
    return events


def _without_null_usage(events: bytes) -> bytes:
    """Drop the ``"usage":null`` that asking for usage added to each chunk. It closes the
    data line (or the body): a JSON text holds no raw newline, so it cannot sit inside a
    string."""
    for tail in _NULL_USAGE:
        if tail in events:
            events = events.replace(tail + b"\n", b"}\n").replace(tail + b"\r", b"}\r")
            if events.endswith(tail):
                events = events[: -len(tail)] + b"}"
    return events


class UsageHider:
    """Passes whole SSE events through, minus the usage-only one and the null ``usage``
    added to the others: the bytes the caller's own request would have got.

    Events are released as soon as their blank line arrives, so the caller
    still sees each event the moment it is complete.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending = b""

    def visible(self, chunk: bytes) -> bytes:
        data = self._pending + chunk if self._pending else chunk
        cut = _after_last_event(data)
        if cut < 0:
            self._pending = data
            return b""
        head, self._pending = data[:cut], data[cut:]
        if any(marker in head for marker in _EMPTY_CHOICES):
            head = b"".join(e for e in _events(head) if not _usage_only(e))
        return _without_null_usage(head)

    def flush(self) -> bytes:
        """The last event, when the body ended without its blank line: filtered too."""
        tail, self._pending = self._pending, b""
        if not tail.strip():
            return tail
        if _usage_only(tail):
            return b""
        return _without_null_usage(tail)
