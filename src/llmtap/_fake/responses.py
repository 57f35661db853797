"""Responses API answers (``/responses``), plain and as named SSE events.

Separate from chat: one output item per response, a full response object at
start and end, and ``event:``-named stream events with sequence numbers.
"""

from __future__ import annotations

from llmtap._fake.context import (
    JSON,
    RequestContext,
    cached_tokens,
    choice_texts,
    count_tokens,
    fragments,
    text_of,
)
from llmtap._fake.reply import JSON_TYPE, SSE_TYPE, Answer, dumps, sse


def responses_answer(ctx: RequestContext) -> Answer:
    raw = ctx.req.get("input")
    items = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    prompt = sum(
        count_tokens(text_of(i.get("content") if isinstance(i, dict) else i)) + 3 for i in items
    )
    if isinstance(ctx.req.get("instructions"), str):
        prompt += count_tokens(ctx.req["instructions"]) + 3
    rid = f"resp_{ctx.id_hex}"
    tool = ctx.tool()
    [(deltas, complete)] = choice_texts(ctx, 1, "max_output_tokens")
    complete = complete or tool is not None
    reasoning = ctx.reasoning_tokens
    output_tokens = (len(fragments(tool[1])) if tool else len(deltas)) + reasoning
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached_tokens(prompt), "cache_write_tokens": 0},
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
        for piece in fragments(tool[1]):
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
