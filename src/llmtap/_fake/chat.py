"""Chat Completions answers (``/chat/completions``), plain and streamed.

Its own module because chat is the richest shape the fake speaks: ``n`` choices,
tool calls and per-choice stream chunks.
"""

from __future__ import annotations

from llmtap._fake.context import (
    JSON,
    SYSTEM_FINGERPRINT,
    RequestContext,
    cached_tokens,
    choice_texts,
    count_tokens,
    fragments,
    text_of,
)
from llmtap._fake.reply import DONE, JSON_TYPE, SSE_TYPE, Answer, dumps, sse


def chat_usage(ctx: RequestContext, prompt: int, completion: int) -> JSON:
    reasoning = ctx.reasoning_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion + reasoning,
        "total_tokens": prompt + completion + reasoning,
        "prompt_tokens_details": {"cached_tokens": cached_tokens(prompt), "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_answer(ctx: RequestContext) -> Answer:
    messages = ctx.req.get("messages")
    messages = messages if isinstance(messages, list) else []
    prompt = sum(
        count_tokens(text_of(m.get("content") if isinstance(m, dict) else m)) + 3 for m in messages
    )
    cid = f"chatcmpl-{ctx.id_hex}"
    tool = ctx.tool()
    texts = choice_texts(ctx, ctx.n, "max_completion_tokens", "max_tokens")
    head = {"id": cid, "created": ctx.created, "model": ctx.model}
    finish = ["tool_calls" if tool else ("stop" if ok else "length") for _, ok in texts]
    call_ids = [ctx.call_id(i) for i in range(ctx.n)]
    arg_parts = fragments(tool[1]) if tool else []
    completion = ctx.n * len(arg_parts) if tool else sum(len(d) for d, _ in texts)
    usage = chat_usage(ctx, prompt, completion)

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
