"""Legacy Completions answers (``/completions``), plain and streamed.

Separate from chat: the legacy API streams ``text`` pieces rather than ``delta``
objects, and has no roles, tools or usage details.
"""

from __future__ import annotations

from llmtap._fake.context import (
    JSON,
    SYSTEM_FINGERPRINT,
    RequestContext,
    choice_texts,
    count_tokens,
    text_of,
)
from llmtap._fake.reply import DONE, JSON_TYPE, SSE_TYPE, Answer, dumps, sse


def completion_answer(ctx: RequestContext) -> Answer:
    prompt_text = text_of(ctx.req.get("prompt"))
    prompt = max(count_tokens(prompt_text), 1)
    texts = choice_texts(ctx, ctx.n, "max_tokens")
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
