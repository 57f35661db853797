"""The shape of a fake reply and its JSON/SSE framing, shared by every API's builder.

Kept apart from the builders so the dispatcher, the four APIs and
``FakeUpstream`` (for injected errors) frame bodies one way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the fake replies, before transport concerns (faults, compression, framing)."""

    status: int
    content_type: str
    chunks: list[bytes]
    stream: bool = False
    named_events: bool = False  # Responses API streams use ``event:`` lines

    @property
    def error_event(self) -> bytes:
        """The SSE event ``error_event_after`` appends instead of the rest of the stream."""
        data = {
            "error": {"message": "The fake upstream failed mid-stream.", "type": "server_error"}
        }
        return sse(data, "error" if self.named_events else None)


def dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def sse(obj: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return head.encode() + b"data: " + dumps(obj) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def error_answer(
    status: int, message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> Answer:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return Answer(status, JSON_TYPE, [dumps(body)])
