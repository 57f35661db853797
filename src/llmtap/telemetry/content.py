"""Opt-in capture of prompts and completions, in the conventions' message schema.

Off by default: prompts hold personal data. The mode comes from
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (``NO_CONTENT`` |
``SPAN_ONLY`` | ``EVENT_ONLY`` | ``SPAN_AND_EVENT``) unless ``capture_content=``
says otherwise. The legacy value ``true`` means ``SPAN_ONLY`` and warns once:
peers silently ignore it, which is the most reported confusion
(opentelemetry-python-contrib#4038). Only the body's messages are captured,
never headers, so API keys cannot reach a span.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import orjson

from llmtap._core.answer import AnswerFacts
from llmtap._core.request import LLMCall

log = logging.getLogger("llmtap")

ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MODES = ("NO_CONTENT", "SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT")
EVENT_NAME = "gen_ai.client.inference.operation.details"
_warned: set[str] = set()
_warn_lock = threading.Lock()


def _warn_once(topic: str, message: str) -> None:
    with _warn_lock:
        if topic in _warned:
            return
        _warned.add(topic)
    log.warning(message)


def capture_mode(setting: bool | str | None) -> str:
    """The capture mode: the keyword wins over the environment; anything unknown is off."""
    if isinstance(setting, bool):
        return "SPAN_ONLY" if setting else "NO_CONTENT"
    if setting is not None:
        mode = setting.strip().upper()
        if mode not in MODES:
            raise ValueError(f"capture_content must be a bool or one of {MODES}, got {setting!r}")
        return mode
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return "NO_CONTENT"
    mode = raw.upper()
    if mode in MODES:
        return mode
    if mode == "TRUE":
        _warn_once(
            "legacy",
            f"llmtap: {ENV}=true is the legacy form; capturing content on spans (SPAN_ONLY). "
            f"Set {ENV}=SPAN_ONLY to silence this warning.",
        )
        return "SPAN_ONLY"
    if mode != "FALSE":
        _warn_once("unknown", f"llmtap: ignoring unknown {ENV}={raw!r}; not capturing content")
    return "NO_CONTENT"


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def input_messages(call: LLMCall) -> list[dict[str, Any]] | None:
    """The request's messages as ``gen_ai.input.messages`` (chat, Responses, completions)."""
    body = call.body
    messages = body.get("messages")
    if isinstance(messages, list):
        return [_message(m) for m in messages if isinstance(m, dict)]
    source = body.get("input") if call.api_type == "responses" else body.get("prompt")
    if isinstance(source, str):
        return [{"role": "user", "parts": [_text(source)]}]
    if isinstance(source, list) and call.api_type == "responses":
        return [_message(m) for m in source if isinstance(m, dict)]
    return None


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if role == "tool" or message.get("type") == "function_call_output":
        response = content if content is not None else message.get("output")
        call_id = message.get("tool_call_id") or message.get("call_id")
        return {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": call_id, "response": response}],
        }
    if isinstance(content, str):
        parts.append(_text(content))
    elif isinstance(content, list):
        parts.extend(_part(p) for p in content if isinstance(p, dict))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
    return {"role": role if isinstance(role, str) else "user", "parts": parts}


def _part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    text = part.get("text")
    if isinstance(text, str):
        return _text(text)
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return {"type": "uri", "modality": "image", "uri": url}
    return {"type": kind if isinstance(kind, str) else "unknown"}


_FINISH = {"tool_calls": "tool_call", "function_call": "tool_call"}
_SCHEMA_FINISH = frozenset({"stop", "length", "content_filter", "tool_call", "error"})


def output_messages(facts: AnswerFacts) -> list[dict[str, Any]]:
    """One assistant message per choice; finish reasons mapped to the schema's enum."""
    messages = []
    indices = sorted(
        facts.choices | set(facts.finish_reasons) | set(facts.outputs) | set(facts.tool_calls)
    )
    for index in indices:
        raw = facts.finish_reasons.get(index, "error")
        reason = _FINISH.get(raw) or (raw if raw in _SCHEMA_FINISH else "error")
        text = "".join(facts.outputs.get(index, ()))
        parts = [_text(text)] if text else []
        for _, call in sorted(facts.tool_calls.get(index, {}).items()):
            arguments = "".join(call["arguments"])  # a stream's pieces, joined once
            part = {"type": "tool_call", "id": call["id"], "name": call["name"]}
            parts.append({**part, "arguments": arguments})
        messages.append({"role": "assistant", "parts": parts, "finish_reason": reason})
    return messages
