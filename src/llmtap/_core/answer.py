"""What an answer said: usage, finish reasons, ids and stream timing.

One accumulator serves streamed (SSE) and whole JSON answers of the chat,
completions, embeddings and Responses APIs. It never sums usage across chunks
and never estimates: usage is the last non-null ``usage`` object seen
(TELEMETRY.md), and a stream is complete only once its terminal event passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

_EVENT_END = b"\n\n"
# Responses API events that carry the response object.
_RESPONSE_EVENTS = (
    "response.created",
    "response.in_progress",
    "response.completed",
    "response.incomplete",
)
# An incomplete response (max_output_tokens, content filter) is a whole answer too.
_RESPONSE_TERMINAL = ("response.completed", "response.incomplete")
_RESPONSE_FAILURES = ("response.failed", "error")
_ONLY_FIRST = frozenset({0})
# How a compact middle chunk ends, with and without stream_options.include_usage.
_COMPACT_TAILS = (b'"finish_reason":null}]}', b'"finish_reason":null}],"usage":null}')
_COMPACT_EVENT_TAILS = tuple(tail + b"\n\n" for tail in _COMPACT_TAILS)


@dataclass(slots=True)
class AnswerFacts:
    """Facts about one answer, filled as it arrives."""

    response_id: str | None = None
    response_model: str | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    usage: dict[str, Any] | None = None
    finish_reasons: dict[int, str] = field(default_factory=dict)
    choices: set[int] = field(default_factory=set)
    first_token_at: float | None = None
    last_token_at: float | None = None
    #: When the first event of a stream arrived, content or not (the conventions'
    #: "first chunk"); the token times above are the first and last with content.
    first_chunk_at: float | None = None
    #: When each event of a stream arrived (``[DONE]`` is not a chunk), kept only for
    #: the OTel ``time_per_output_chunk`` histogram, which records every gap.
    chunk_times: list[float] | None = None
    terminal: bool = False
    error: str | None = None
    #: ``error.type`` of a whole (non-streamed) 2xx answer that reports its own failure:
    #: an ``{"error": ...}`` document (OpenRouter answers 200 so) or a choice finished
    #: with ``"error"``. Never stored.
    error_type: str | None = None
    events: int = 0
    outputs: dict[int, list[str]] = field(default_factory=dict)
    #: Tool calls per choice, by their own index: id, name and the arguments so far
    #: (a stream sends them in pieces). For content capture.
    tool_calls: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)

    def ordered_finish_reasons(self) -> list[str]:
        """One reason per choice, in index order; a choice that never finished is ``error``."""
        if len(self.finish_reasons) == 1 and self.choices <= self.finish_reasons.keys():
            return list(self.finish_reasons.values())  # one choice, finished: the usual case
        indices = sorted(self.choices | set(self.finish_reasons))
        return [self.finish_reasons.get(i, "error") for i in indices]


def response_summary(facts: AnswerFacts) -> dict[str, Any]:
    """What a hit's span reports about the recorded answer, kept with the entry."""
    return {
        "id": facts.response_id,
        "model": facts.response_model,
        "service_tier": facts.service_tier,
        "finish_reasons": facts.ordered_finish_reasons(),
    }


def summary_facts(summary: dict[str, Any], fingerprint: str | None) -> AnswerFacts | None:
    """:func:`response_summary` read back; ``None`` if the stored one is not well-formed."""
    reasons = summary.get("finish_reasons")
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        return None
    facts = AnswerFacts(system_fingerprint=fingerprint, terminal=True)
    for name, attr in (
        ("id", "response_id"),
        ("model", "response_model"),
        ("service_tier", "service_tier"),
    ):
        value = summary.get(name)
        if value is not None and not isinstance(value, str):
            return None
        setattr(facts, attr, value)
    facts.finish_reasons = dict(enumerate(reasons))
    return facts


class AnswerAccumulator:
    """Feed it the decoded bytes of an answer; read :attr:`facts` at any time."""

    __slots__ = ("_buffer", "_keep_text", "_parts", "_stream", "facts")

    def __init__(self, stream: bool, keep_text: bool = True, chunk_times: bool = False) -> None:
        self._stream = stream
        self._keep_text = keep_text
        self._buffer = b""
        self._parts: list[bytes] = []
        self.facts = AnswerFacts(chunk_times=[] if chunk_times and stream else None)

    def feed(self, data: bytes, now: float) -> None:
        if not self._stream:
            self._parts.append(data)  # joined once at the end: no quadratic copying
            return
        if not self._buffer and self._plain_middle_event(data):
            facts = self.facts  # inline: the per-chunk path of every stream
            facts.events += 1
            facts.last_token_at = now
            if facts.chunk_times is not None:
                facts.chunk_times.append(now)
            return
        buffer = self._buffer + data
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        start = 0
        while (end := buffer.find(_EVENT_END, start)) >= 0:
            self._event(buffer[start:end], now)
            start = end + 2
        self._buffer = buffer[start:]

    def end_of_body(self, now: float) -> None:
        """The body ended cleanly: parse a whole JSON answer, or a stream's last event."""
        if not self._stream:
            self._absorb_document()
        elif self._buffer.strip():
            self._event(self._buffer, now)
            self._buffer = b""

    def complete(self, ended: bool) -> bool:
        """Whether the answer is whole and may be stored.

        A stream is whole once its terminal event passed, or, with no ``[DONE]``,
        at a clean end of the body after every choice finished (API.md).
        """
        facts = self.facts
        if facts.error is not None:
            return False
        if not self._stream:
            return ended and facts.events == 1
        if facts.terminal:
            return True
        finished = bool(facts.choices) and facts.choices <= set(facts.finish_reasons)
        return ended and finished

    def _absorb_document(self) -> None:
        document, self._parts = b"".join(self._parts), []
        try:
            obj = orjson.loads(document)
        except orjson.JSONDecodeError:
            self.facts.error = "invalid_json"
            return
        if not isinstance(obj, dict):
            self.facts.error = "invalid_json"
            return
        facts = self.facts
        facts.events = 1
        if obj.get("object") == "response":
            self._absorb_response(obj)  # a failed one too: its id, model and usage
        if obj.get("error"):  # also a Responses object with status "failed"
            facts.error = _error_message(obj)
            facts.error_type = _error_type(obj["error"])
        elif obj.get("object") != "response":
            self._absorb(obj, None)
            if facts.error is not None:
                facts.error_type = "upstream_error"

    def _event(self, raw: bytes, now: float) -> None:
        kind = b""
        if raw.startswith(b"data: ") and b"\n" not in raw:
            payload = raw[6:]  # the common case: one data line (chat and completions chunks)
            if self._plain_middle(payload):
                self._middle(now)
                return
        else:
            data: list[bytes] = []
            for line in raw.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].removeprefix(b" "))
                elif line.startswith(b"event:"):
                    kind = line[6:].strip()
            if not data:
                return
            payload = b"\n".join(data)
        facts = self.facts
        facts.events += 1
        if payload.strip() == b"[DONE]":
            facts.terminal = True
            return
        if facts.first_chunk_at is None:
            facts.first_chunk_at = now
        if facts.chunk_times is not None:
            facts.chunk_times.append(now)
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.facts.error = "invalid_sse_data"
            return
        if not isinstance(obj, dict):
            return
        event_type = obj.get("type") or kind.decode("utf-8", "replace")
        if isinstance(event_type, str) and event_type.startswith("response."):
            self._responses_event(event_type, obj, now)
        elif obj.get("error") or event_type == "error":
            self.facts.error = _error_message(obj)
        else:
            self._absorb(obj, now)

    def _middle(self, now: float) -> None:
        """A plain middle event arrived: it is counted, moves the last-token time and,
        when chunk times are kept, adds its own; nothing in it needs reading."""
        facts = self.facts
        facts.events += 1
        facts.last_token_at = now
        if facts.chunk_times is not None:
            facts.chunk_times.append(now)

    def _plain_middle_event(self, data: bytes) -> bool:
        """:meth:`_plain_middle` for a chunk that is exactly one one-line event, checked
        in place: the usual shape of a stream's chunks, so no buffering or slicing."""
        return (
            data.startswith(b"data: ")
            and data.endswith(b"\n\n")
            and data.count(b"\n") == 2
            and self._plain_middle(data, _COMPACT_EVENT_TAILS)
        )

    def _plain_middle(self, payload: bytes, tails: tuple[bytes, ...] = _COMPACT_TAILS) -> bool:
        """A middle chunk of a one-choice stream that can only carry more text.

        Once the ids and the first token are known, such a chunk changes nothing
        but the last-token time, unless its text is wanted (content capture). The
        byte checks are conservative (anything else is parsed) and accept JSON
        with or without a space after the colon. A quoted key cannot occur
        inside a JSON string, where its quotes would be escaped.
        """
        facts = self.facts
        if self._keep_text or facts.first_token_at is None or facts.choices != _ONLY_FIRST:
            return False
        if payload.count(b'"index"') != 1 or b'"error"' in payload:
            return False
        if payload.endswith(tails):  # OpenAI's own shape, the common case: compact JSON
            # ... unless usage sits ahead of the choices (one scan for the compact form)
            return b'"index":0' in payload and b'"usage":{' not in payload
        if b'"index":0' not in payload and b'"index": 0' not in payload:
            return False
        if b'"usage":{' in payload or b'"usage": {' in payload:
            return False
        return b'"finish_reason"' not in payload or (
            b'"finish_reason":null' in payload or b'"finish_reason": null' in payload
        )

    def _absorb(self, obj: dict[str, Any], now: float | None) -> None:
        facts = self.facts
        # The same on every chunk: read once, but not from an empty first chunk (Azure
        # opens a stream with its prompt filter results, "id" and "model" empty).
        if not facts.response_id:
            facts.response_id = obj.get("id") or None
        if not facts.response_model:
            facts.response_model = obj.get("model") or None
        if facts.system_fingerprint is None:
            facts.system_fingerprint = obj.get("system_fingerprint")
        if facts.service_tier is None:
            facts.service_tier = obj.get("service_tier")
        usage = obj.get("usage")
        if usage is not None:
            facts.usage = usage
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            facts.choices.add(index)
            reason = choice.get("finish_reason")
            if reason:
                facts.finish_reasons[index] = reason
                if reason == "error":  # the provider failed mid-answer (OpenRouter)
                    facts.error = f'choice {index} finished with "error"'
            delta = choice.get("delta")
            if delta is None:
                delta = choice.get("message")
            if isinstance(delta, dict):
                text = delta.get("content")
                calls = delta.get("tool_calls")
                token = bool(text or calls or delta.get("refusal"))
                if calls and self._keep_text and isinstance(calls, list):
                    _add_tool_calls(facts.tool_calls.setdefault(index, {}), calls)
            else:
                text = choice.get("text")
                token = bool(text)
            if isinstance(text, str):
                outputs = facts.outputs.get(index)
                if outputs is None:
                    outputs = facts.outputs[index] = []
                outputs.append(text)
            if token and now is not None:
                facts.first_token_at = facts.first_token_at or now
                facts.last_token_at = now

    def _responses_event(self, event_type: str, obj: dict[str, Any], now: float) -> None:
        facts = self.facts
        if event_type.endswith(".delta"):
            facts.first_token_at = facts.first_token_at or now
            facts.last_token_at = now
            delta = obj.get("delta")
            if event_type == "response.output_text.delta" and isinstance(delta, str):
                facts.outputs.setdefault(0, []).append(delta)
        if (event_type in _RESPONSE_EVENTS or event_type in _RESPONSE_FAILURES) and isinstance(
            obj.get("response"), dict
        ):
            self._absorb_response(obj["response"])  # a failed one still billed its usage
        if event_type in _RESPONSE_TERMINAL:
            facts.terminal = True
        elif event_type in _RESPONSE_FAILURES:
            facts.error = _error_message(obj.get("response") or obj)

    def _absorb_response(self, response: dict[str, Any]) -> None:
        facts = self.facts
        facts.response_id = response.get("id") or facts.response_id
        facts.response_model = response.get("model") or facts.response_model
        facts.service_tier = response.get("service_tier") or facts.service_tier
        if response.get("usage") is not None:
            facts.usage = response["usage"]
        status = response.get("status")
        if status in ("completed", "incomplete"):
            facts.choices.add(0)
            facts.finish_reasons[0] = _responses_finish_reason(response)
            if not facts.outputs:
                text = _response_text(response)
                if text:
                    facts.outputs[0] = [text]
            calls = [
                {"id": o.get("call_id"), "function": o}
                for o in response.get("output") or ()
                if isinstance(o, dict) and o.get("type") == "function_call"
            ]
            if calls and self._keep_text and not facts.tool_calls:
                _add_tool_calls(facts.tool_calls.setdefault(0, {}), calls)


def _add_tool_calls(known: dict[int, dict[str, Any]], calls: list[Any]) -> None:
    """Chat tool calls (whole, or a stream's pieces) into ``known``: by their ``index``;
    without one, by ``id`` (a new id is a new call); a bare piece continues the last."""
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        call_id = call.get("id")
        index = call.get("index")
        if type(index) is not int:
            ids = {entry["id"]: key for key, entry in known.items()}
            if isinstance(call_id, str) and call_id:
                index = ids.get(call_id, len(known))
            else:
                index = max(known, default=0)
        entry = known.setdefault(index, {"id": "", "name": "", "arguments": []})
        if isinstance(call_id, str):
            entry["id"] = call_id
        if isinstance(function.get("name"), str):
            entry["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            entry["arguments"].append(function["arguments"])  # a stream sends pieces


def _error_message(obj: dict[str, Any]) -> str:
    error = obj.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "error")
    return str(error or obj.get("message") or "error")


def _error_type(error: Any) -> str:
    """An in-band error's ``error.type``: its code when that is an HTTP status."""
    code = error.get("code") if isinstance(error, dict) else None
    if type(code) is int and 400 <= code <= 599:
        return str(code)
    return "upstream_error"


def _responses_finish_reason(response: dict[str, Any]) -> str:
    if response.get("status") == "completed":
        output = response.get("output") or []
        calls = any(isinstance(o, dict) and o.get("type") == "function_call" for o in output)
        return "tool_calls" if calls else "stop"
    details = response.get("incomplete_details") or {}
    reason = details.get("reason") if isinstance(details, dict) else None
    return "length" if reason == "max_output_tokens" else "content_filter"


def _response_text(response: dict[str, Any]) -> str:
    parts = []
    for item in response.get("output") or ():
        for content in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(content, dict) and isinstance(content.get("text"), str):
                parts.append(content["text"])
    return "".join(parts)
