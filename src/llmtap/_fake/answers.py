"""Deterministic OpenAI-shaped answers: request JSON in, status and body chunks out.

Everything here is a pure function of the request body. Word choice depends only
on the *content* fields (model, seed, prompt, tools, ...), never on ``stream``,
``stream_options`` or the length limits, so a streamed answer spells the same
text as the non-streamed one, ``include_usage`` changes nothing but the usage
fields, and a ``max_tokens``-truncated answer is a prefix of the full one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

SYSTEM_FINGERPRINT = "fp_llmtap_fake"
JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream; charset=utf-8"

WORDS = (
    "amber", "anchor", "autumn", "beacon", "birch", "bright", "canyon", "cedar",
    "cinder", "clover", "comet", "copper", "coral", "crystal", "dawn", "delta",
    "ember", "falcon", "fern", "forest", "glacier", "granite", "harbor", "hazel",
    "horizon", "island", "ivory", "jasmine", "lagoon", "lantern", "linen", "maple",
    "meadow", "mesa", "meteor", "mist", "nectar", "north", "oasis", "ocean",
    "orchid", "pebble", "pine", "prairie", "quartz", "quiet", "raven", "reef",
    "ridge", "river", "saffron", "shore", "silver", "slate", "spruce", "summit",
    "thistle", "tide", "timber", "valley", "velvet", "willow", "winter", "zephyr",
)  # fmt: skip

# Fields that decide what the fake "model" says. Nothing else changes the words.
_CONTENT_FIELDS = (
    "model", "seed", "messages", "prompt", "input", "instructions", "tools",
    "dimensions", "reasoning_effort", "reasoning", "suffix",
)  # fmt: skip
# Fields that additionally decide the ids (but not the words).
_ID_FIELDS = ("n", "max_tokens", "max_completion_tokens", "max_output_tokens")


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


def build_answer(method: str, path: str, body: bytes) -> Answer:
    """The one place that decides a reply; both the mock handler and the server use it."""
    route = next(((s, fn) for s, fn in _ROUTES if path.endswith(s)), None)
    if method.upper() != "POST" or route is None:
        return error_answer(404, f"Invalid URL ({method.upper()} {path})", "invalid_request_error")
    try:
        req = json.loads(body)
    except (ValueError, RecursionError):
        req = None
    if not isinstance(req, dict):
        message = "We could not parse the JSON body of your request: expected a JSON object."
        return error_answer(400, message, "invalid_request_error")
    suffix, fn = route
    return fn(_Ctx(suffix, req))


class _Ctx:
    """Hashes and shared fields of one request."""

    def __init__(self, kind: str, req: JSON) -> None:
        self.req = req
        content = {k: req[k] for k in _CONTENT_FIELDS if k in req} | {"~kind": kind}
        self.content_digest = _sha(content)
        ids = {k: req[k] for k in _ID_FIELDS if k in req} | {"~stream": self.stream}
        self.id_hex = _sha({"content": self.content_digest.hex(), **ids}).hex()[:24]
        self.created = 1_700_000_000 + int.from_bytes(self.content_digest[:3], "big") % 10_000_000
        model = req.get("model")
        self.model = model if isinstance(model, str) else "fake-model"

    @property
    def stream(self) -> bool:
        return self.req.get("stream") is True

    @property
    def include_usage(self) -> bool:
        opts = self.req.get("stream_options")
        return isinstance(opts, dict) and opts.get("include_usage") is True

    @property
    def n(self) -> int:
        n = self.req.get("n")
        return n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 128 else 1

    def limit(self, *names: str) -> int | None:
        for name in names:
            value = self.req.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None

    def words(self, index: int) -> list[str]:
        """12-30 words for choice ``index``; choice 0 never depends on ``n``."""
        digest = hashlib.sha256(self.content_digest + index.to_bytes(4, "big")).digest()
        count = 12 + digest[0] % 19
        return [WORDS[b % len(WORDS)] for b in digest[1 : 1 + count]]

    def call_id(self, index: int) -> str:
        """Tool call ids depend on content only: streamed and plain answers agree."""
        return f"call_{_sha([self.content_digest.hex(), index]).hex()[:24]}"

    @property
    def reasoning_tokens(self) -> int:
        effort = self.req.get("reasoning_effort")
        reasoning = self.req.get("reasoning")
        if self.model.startswith("o") or effort or (isinstance(reasoning, dict) and reasoning):
            return 16 * (1 + self.content_digest[4] % 8)
        return 0

    def tool(self) -> tuple[str, str] | None:
        """``(name, arguments)`` of the call to the first tool, if the request offers tools."""
        tools = self.req.get("tools")
        if not isinstance(tools, list) or not tools or self.req.get("tool_choice") == "none":
            return None
        first: JSON = tools[0] if isinstance(tools[0], dict) else {}
        fn: JSON = first["function"] if isinstance(first.get("function"), dict) else first
        name = fn["name"] if isinstance(fn.get("name"), str) else "tool"
        params = fn.get("parameters")
        props = params.get("properties") if isinstance(params, dict) else None
        if not isinstance(props, dict) or not props:
            props = {"query": {"type": "string"}}
        words = self.words(1_000_000)
        args = {
            key: _example_value(props[key], words[i % len(words)], self.content_digest[i % 32])
            for i, key in enumerate(sorted(props))
        }
        return str(name), json.dumps(args, separators=(",", ":"))


def _sha(obj: object) -> bytes:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).digest()


def _example_value(spec: object, word: str, byte: int) -> object:
    kind = spec.get("type") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and isinstance(spec.get("enum"), list) and spec["enum"]:
        return spec["enum"][byte % len(spec["enum"])]
    if kind == "integer":
        return byte
    if kind == "number":
        return byte / 4
    if kind == "boolean":
        return byte % 2 == 0
    if kind == "array":
        return [word]
    if kind == "object":
        return {}
    return word


def _fragments(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(p.get("text") if isinstance(p, dict) else p) for p in content)
    return ""


def _count(text: str) -> int:
    return len(text.split())


def _deltas(words: list[str], complete: bool) -> list[str]:
    """The stream deltas ``"word "``; the last word gets a full stop when complete."""
    if not words:
        return []
    return [w + " " for w in words[:-1]] + [words[-1] + ("." if complete else "")]


def _choice_texts(ctx: _Ctx, n: int, *limit_names: str) -> list[tuple[list[str], bool]]:
    """Per choice: its deltas and whether it ran to completion (else truncated by a limit)."""
    limit = ctx.limit(*limit_names)
    out = []
    for i in range(n):
        words = ctx.words(i)
        complete = limit is None or limit >= len(words)
        out.append((_deltas(words if complete else words[:limit], complete), complete))
    return out


def _chat_usage(ctx: _Ctx, prompt: int, completion: int) -> JSON:
    reasoning = ctx.reasoning_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": _cached(prompt), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _cached(prompt_tokens: int) -> int:
    return prompt_tokens // 16 * 16 if prompt_tokens >= 32 else 0


# --------------------------------------------------------------------------- chat


def _chat(ctx: _Ctx) -> Answer:
    messages = ctx.req.get("messages")
    messages = messages if isinstance(messages, list) else []
    prompt = sum(
        _count(_text_of(m.get("content") if isinstance(m, dict) else m)) + 3 for m in messages
    )
    cid = f"chatcmpl-{ctx.id_hex}"
    tool = ctx.tool()
    texts = _choice_texts(ctx, ctx.n, "max_completion_tokens", "max_tokens")
    head = {"id": cid, "created": ctx.created, "model": ctx.model}
    finish = ["tool_calls" if tool else ("stop" if ok else "length") for _, ok in texts]
    call_ids = [ctx.call_id(i) for i in range(ctx.n)]
    arg_parts = _fragments(tool[1]) if tool else []
    completion = ctx.n * len(arg_parts) if tool else sum(len(d) for d, _ in texts)
    usage = _chat_usage(ctx, prompt, completion)

    if not ctx.stream:
        choices = []
        for i, (deltas, _) in enumerate(texts):
            message: JSON = {"role": "assistant", "content": "".join(deltas), "refusal": None}
            if tool:
                fn = {"name": tool[0], "arguments": tool[1]}
                call = {"id": call_ids[i], "type": "function", "function": fn}
                message |= {"content": None, "tool_calls": [call]}
            message["annotations"] = []
            choices.append(
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish[i]}
            )
        body = {"object": "chat.completion", **head, "choices": choices, "usage": usage}
        body |= {"service_tier": "default", "system_fingerprint": SYSTEM_FINGERPRINT}
        return Answer(200, JSON_TYPE, [dumps(body)])

    def chunk(choices: list[JSON], chunk_usage: JSON | None = None) -> bytes:
        obj = {"object": "chat.completion.chunk", **head, "service_tier": "default"}
        obj |= {"system_fingerprint": SYSTEM_FINGERPRINT, "choices": choices}
        return sse(obj | {"usage": chunk_usage} if ctx.include_usage else obj)

    def choice(i: int, delta: JSON, reason: str | None = None) -> JSON:
        return {"index": i, "delta": delta, "logprobs": None, "finish_reason": reason}

    events = []
    for i in range(ctx.n):
        role = {"role": "assistant", "content": None if tool else "", "refusal": None}
        events.append(chunk([choice(i, role)]))
    for i, (deltas, _) in enumerate(texts):
        if tool:
            start: JSON = {"index": 0, "id": call_ids[i], "type": "function"}
            start["function"] = {"name": tool[0], "arguments": ""}
            events.append(chunk([choice(i, {"tool_calls": [start]})]))
            for part in arg_parts:
                piece: JSON = {"index": 0, "function": {"arguments": part}}
                events.append(chunk([choice(i, {"tool_calls": [piece]})]))
        else:
            events.extend(chunk([choice(i, {"content": d})]) for d in deltas)
    events.extend(chunk([choice(i, {}, finish[i])]) for i in range(ctx.n))
    if ctx.include_usage:
        events.append(chunk([], usage))
    events.append(DONE)
    return Answer(200, SSE_TYPE, events, stream=True)


# --------------------------------------------------------------------------- completions


def _completions(ctx: _Ctx) -> Answer:
    prompt_text = _text_of(ctx.req.get("prompt"))
    prompt = max(_count(prompt_text), 1)
    texts = _choice_texts(ctx, ctx.n, "max_tokens")
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": sum(len(d) for d, _ in texts),
        "total_tokens": prompt + sum(len(d) for d, _ in texts),
    }
    head = {"id": f"cmpl-{ctx.id_hex}", "object": "text_completion", "created": ctx.created}
    tail = {"model": ctx.model, "system_fingerprint": SYSTEM_FINGERPRINT}

    def choice(i: int, text: str, reason: str | None) -> JSON:
        return {"text": text, "index": i, "logprobs": None, "finish_reason": reason}

    if not ctx.stream:
        choices = [
            choice(i, "".join(d), "stop" if ok else "length") for i, (d, ok) in enumerate(texts)
        ]
        return Answer(
            200, JSON_TYPE, [dumps(head | {"choices": choices} | tail | {"usage": usage})]
        )

    extra: JSON = {"usage": None} if ctx.include_usage else {}
    events = [
        sse(head | {"choices": [choice(i, d, None)]} | tail | extra)
        for i, (deltas, _) in enumerate(texts)
        for d in deltas
    ]
    events.extend(
        sse(head | {"choices": [choice(i, "", "stop" if ok else "length")]} | tail | extra)
        for i, (_, ok) in enumerate(texts)
    )
    if ctx.include_usage:
        events.append(sse(head | {"choices": []} | tail | {"usage": usage}))
    events.append(DONE)
    return Answer(200, SSE_TYPE, events, stream=True)


# --------------------------------------------------------------------------- embeddings


def _embeddings(ctx: _Ctx) -> Answer:
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
        tokens += len(item) if isinstance(item, list) else _count(_text_of(item))
        vector = _vector(_sha([ctx.model, dims, item]), dims)
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


# --------------------------------------------------------------------------- responses


def _responses(ctx: _Ctx) -> Answer:
    raw = ctx.req.get("input")
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    prompt = sum(
        _count(_text_of(i.get("content") if isinstance(i, dict) else i)) + 3 for i in items
    )
    if isinstance(ctx.req.get("instructions"), str):
        prompt += _count(ctx.req["instructions"]) + 3
    rid = f"resp_{ctx.id_hex}"
    tool = ctx.tool()
    [(deltas, complete)] = _choice_texts(ctx, 1, "max_output_tokens")
    complete = complete or tool is not None
    reasoning = ctx.reasoning_tokens
    output_tokens = (len(_fragments(tool[1])) if tool else len(deltas)) + reasoning
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": _cached(prompt), "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + output_tokens,
    }
    item_status = "completed" if complete else "incomplete"
    if tool:
        call_id = ctx.call_id(0)
        item: JSON = {"id": f"fc_{ctx.id_hex}", "type": "function_call", "status": item_status}
        item |= {"arguments": tool[1], "call_id": call_id, "name": tool[0]}
    else:
        text = "".join(deltas)
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        item = {"id": f"msg_{ctx.id_hex}", "type": "message", "status": item_status}
        item |= {"content": [part], "role": "assistant"}

    def response(status: str, output: list[JSON], use: JSON | None) -> JSON:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        tools = ctx.req.get("tools") if isinstance(ctx.req.get("tools"), list) else []
        effort = ctx.req.get("reasoning")
        return {
            "id": rid, "object": "response", "created_at": ctx.created, "status": status,
            "background": False, "error": None, "incomplete_details": incomplete,
            "instructions": ctx.req.get("instructions"),
            "max_output_tokens": ctx.req.get("max_output_tokens"), "model": ctx.model,
            "output": output, "parallel_tool_calls": True, "previous_response_id": None,
            "reasoning": effort if isinstance(effort, dict) else {"effort": None, "summary": None},
            "service_tier": "default", "store": True, "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto", "tools": tools, "top_p": 1.0, "truncation": "disabled",
            "usage": use, "user": None, "metadata": {},
        }  # fmt: skip

    final_status = "completed" if complete else "incomplete"
    if not ctx.stream:
        return Answer(200, JSON_TYPE, [dumps(response(final_status, [item], usage))])

    events: list[bytes] = []

    def emit(type_: str, **fields: object) -> None:
        events.append(sse({"type": type_, "sequence_number": len(events), **fields}, type_))

    emit("response.created", response=response("in_progress", [], None))
    emit("response.in_progress", response=response("in_progress", [], None))
    where = {"item_id": item["id"], "output_index": 0}
    if tool:
        emit("response.output_item.added", output_index=0, item=item | _PENDING_CALL)
        for piece in _fragments(tool[1]):
            emit("response.function_call_arguments.delta", **where, delta=piece)
        emit("response.function_call_arguments.done", **where, arguments=tool[1], name=tool[0])
    else:
        empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        emit("response.output_item.added", output_index=0, item=item | _PENDING_MESSAGE)
        emit("response.content_part.added", **where, content_index=0, part=empty)
        for delta in deltas:
            emit("response.output_text.delta", **where, content_index=0, delta=delta, logprobs=[])
        emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
        emit("response.content_part.done", **where, content_index=0, part=part)
    emit("response.output_item.done", output_index=0, item=item)
    emit(f"response.{final_status}", response=response(final_status, [item], usage))
    return Answer(200, SSE_TYPE, events, stream=True, named_events=True)


_PENDING_CALL: JSON = {"status": "in_progress", "arguments": ""}
_PENDING_MESSAGE: JSON = {"status": "in_progress", "content": []}


_ROUTES: tuple[tuple[str, Callable[[_Ctx], Answer]], ...] = (
    ("/chat/completions", _chat),
    ("/completions", _completions),
    ("/embeddings", _embeddings),
    ("/responses", _responses),
)
