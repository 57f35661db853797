"""Answers as OpenAI-compatible providers really send them: errors inside a 200, Azure's
empty first chunk, a Responses stream cut by ``max_output_tokens``, CRLF event streams,
and request numbers no float can hold. What the caller reads, what is stored, what is
reported."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from llmtap._core.usage import UsageHider
from telemetry.telemetry_rig import LIB_IDS, LIBS, Rig, make_rig

PATH = "/chat/completions"
ANSWER = {
    "id": "chatcmpl-ok",
    "object": "chat.completion",
    "model": "m-1",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
}


def _handler(rig: Rig, replies: list[tuple[str, bytes]]) -> Callable[[Any], Any]:
    """Answers each request with the next ``(content_type, body)``; the last repeats."""
    sent: list[Any] = []

    def handle(request: Any) -> Any:
        content_type, body = replies[min(len(sent), len(replies) - 1)]
        sent.append(request)
        return rig.lib.Response(200, headers={"content-type": content_type}, content=body)

    handle.sent = sent  # type: ignore[attr-defined]
    return handle


def _post(
    rig: Rig, handler: Any, body: dict[str, Any], n: int, path: str = PATH, **kw: Any
) -> list[Any]:
    """``n`` identical posts through one transport (to FakeUpstream without a ``handler``);
    each response, read."""
    client = rig.client(rig.lib.MockTransport(handler or rig.fake), **kw)
    if not rig.is_async:
        with client:
            return [client.post(path, json=body) for _ in range(n)]

    async def run() -> list[Any]:
        async with client:
            return [await client.post(path, json=body) for _ in range(n)]

    return asyncio.run(run())


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "seed": 1, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.fixture(params=LIBS, ids=LIB_IDS)
def rig(request: pytest.FixtureRequest) -> Rig:
    lib_name, is_async = request.param
    return make_rig(lib_name, is_async)


@pytest.mark.parametrize(
    ("error", "error_type"),
    [
        ({"code": 502, "message": "Provider returned error"}, "502"),
        ({"code": "server_error", "message": "Provider returned error"}, "upstream_error"),
    ],
)
def test_a_200_whose_body_is_an_error_is_reported_and_never_stored(
    rig: Rig, error: dict[str, Any], error_type: str
) -> None:
    """OpenRouter answers 200 with ``{"error": ...}`` when a provider fails after the
    request was accepted: one transient failure must not become the cached answer."""
    failing = orjson.dumps({"error": error})
    handler = _handler(
        rig, [("application/json", failing), ("application/json", orjson.dumps(ANSWER))]
    )
    responses = _post(rig, handler, _chat(), 3)
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["miss", "miss", "hit"]
    assert responses[0].content == failing  # the caller still reads what upstream sent
    assert len(handler.sent) == 2  # type: ignore[attr-defined]
    first = rig.spans()[0]
    assert first.attributes is not None and first.attributes["error.type"] == error_type
    assert first.status.description is not None
    assert "Provider returned error" in first.status.description
    assert rig.value("llmtap_requests_total", outcome="error") == 1
    assert rig.value("llmtap_request_errors_total", error_type=error_type) == 1


def test_a_whole_answer_with_a_choice_finished_by_error_is_not_stored(rig: Rig) -> None:
    broken = {**ANSWER, "choices": [{**ANSWER["choices"][0], "finish_reason": "error"}]}
    handler = _handler(rig, [("application/json", orjson.dumps(broken))])
    responses = _post(rig, handler, _chat(), 2)
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["miss", "miss"]
    assert rig.value("llmtap_request_errors_total", error_type="upstream_error") == 2


def test_a_stream_with_a_choice_finished_by_error_is_not_stored(rig: Rig) -> None:
    def event(delta: dict[str, Any], finish: str | None) -> bytes:
        chunk = {
            "id": "c",
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    stream = event({"content": "Hel"}, None) + event({}, "error") + b"data: [DONE]\n\n"
    handler = _handler(rig, [("text/event-stream", stream)])
    responses = _post(rig, handler, _chat(stream=True), 2)
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["miss", "miss"]
    assert all(r.content == stream for r in responses)
    assert rig.value("llmtap_request_errors_total", error_type="stream_interrupted") == 2


def test_a_responses_stream_cut_by_max_output_tokens_is_a_whole_answer(rig: Rig) -> None:
    """It ends with ``response.incomplete``, not ``response.completed``: still a success,
    metered, and stored like the same answer not streamed."""
    body = {"model": "o4-mini", "seed": 1, "input": "Think hard.", "max_output_tokens": 3}
    responses = _post(rig, None, {**body, "stream": True}, 2, path="/responses")
    assert b"event: response.incomplete" in responses[0].content
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["miss", "hit"]
    assert responses[1].content == responses[0].content
    miss = rig.spans()[0]
    assert miss.status.is_ok
    attributes = miss.attributes or {}
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["gen_ai.usage.output_tokens"] > 0
    assert rig.value("llmtap_requests_total", outcome="success") == 2


def test_an_azure_stream_opening_with_empty_ids_keeps_the_response_id_and_model(rig: Rig) -> None:
    filters = {"id": "", "model": "", "object": "", "choices": [], "prompt_filter_results": []}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {"id": "chatcmpl-AZ", "model": "gpt-4o-2024-11-20", "choices": [choice]}

    events = [filters, chunk({"content": "Hi"}), chunk({}, "stop")]
    stream = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    _post(rig, _handler(rig, [("text/event-stream", stream)]), _chat(stream=True), 2)
    for span in rig.spans():  # the miss, and the hit from its stored summary
        attributes = span.attributes or {}
        assert attributes["gen_ai.response.id"] == "chatcmpl-AZ"
        assert attributes["gen_ai.response.model"] == "gpt-4o-2024-11-20"


def test_ensure_stream_usage_over_crlf_releases_each_event_at_once_and_hides_usage() -> None:
    """sse-starlette (llama-cpp-python's server and others) ends lines with CRLF."""
    hider = UsageHider()
    first = b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\r\n\r\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\r\n\r\n'
    assert hider.visible(first) == first.replace(b',"usage":null', b"")
    assert hider.visible(usage[:20]) == b""  # half an event is held back
    assert hider.visible(usage[20:] + b"data: [DONE]\r\n\r\n") == b"data: [DONE]\r\n\r\n"
    assert hider.flush() == b""


def test_ensure_stream_usage_over_crlf_meters_the_stream(rig: Rig) -> None:
    def event(obj: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\r\n\r\n"

    head = {"id": "c", "model": "m"}
    stream = (
        event(
            {
                **head,
                "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
                "usage": None,
            }
        )
        + event(
            {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}
        )
        + event({**head, "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}})
        + b"data: [DONE]\r\n\r\n"
    )
    responses = _post(
        rig, _handler(rig, [("text/event-stream", stream)]), _chat(stream=True), 2,
        ensure_stream_usage=True,
    )  # fmt: skip
    seen = responses[0].content
    assert b'"choices":[]' not in seen and b'"usage":null' not in seen
    assert seen.count(b"\r\n\r\n") == 3 and seen.endswith(b"data: [DONE]\r\n\r\n")
    assert responses[1].content == seen
    assert rig.value("llmtap_tokens_total", token_type="input") == 4


@pytest.mark.parametrize("field", ["max_tokens", "seed"])
def test_integers_beyond_64_bits_never_share_a_key(rig: Rig, field: str) -> None:
    """orjson reads both as the same float: neither may be served the other's answer."""
    handler = _handler(rig, [("application/json", orjson.dumps(ANSWER))])
    for value in (2**70, 2**70 + 1):
        (response,) = _post(rig, handler, _chat(**{field: value}), 1)
        assert response.headers["x-llmtap-cache"] == "bypass"  # sent uncached
    assert len(handler.sent) == 2  # type: ignore[attr-defined]


def test_a_huge_float_literal_is_still_cached(rig: Rig) -> None:
    """Beside an unsigned 64-bit seed and a 19-digit id in the prompt, neither of which is
    an integer orjson rounded."""
    schema = {"type": "number", "maximum": 1e300}
    body = {
        **_chat(response_format={"type": "json_schema", "json_schema": {"schema": schema}}),
        "seed": 2**64 - 1,
        "messages": [{"role": "user", "content": "Summarise tweet 1234567890123456789."}],
    }
    handler = _handler(rig, [("application/json", orjson.dumps(ANSWER))])
    responses = _post(rig, handler, body, 2)
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["miss", "hit"]


def test_a_stream_closed_early_is_not_counted_as_missing_usage(rig: Rig) -> None:
    """It asked for usage and was closed before the usage chunk: the dashboard's advice
    ("set include_usage") would be wrong for it."""
    body = _chat(stream=True, stream_options={"include_usage": True})
    client = rig.client()
    if rig.is_async:

        async def run() -> None:
            async with client, client.stream("POST", PATH, json=body) as response:
                async for _ in response.aiter_raw():
                    break

        asyncio.run(run())
    else:
        with client, client.stream("POST", PATH, json=body) as response:
            next(iter(response.iter_raw()))
    assert rig.value("llmtap_requests_total", outcome="cancelled") == 1
    assert rig.value("llmtap_stream_usage_missing_total") == 0


def test_usage_ahead_of_the_choices_is_read_without_content_capture(rig: Rig) -> None:
    def event(text: bytes) -> bytes:
        return b"data: " + text + b"\n\n"

    stream = (
        event(b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
              b'"content":"Hi"},"finish_reason":null}]}')
        + event(b'{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":" there"},'
                b'"finish_reason":null}]}')
        + event(b'{"id":"c","model":"m","usage":{"prompt_tokens":3,"completion_tokens":2},'
                b'"choices":[{"index":0,"delta":{"content":""},"finish_reason":null}]}')
        + event(b'{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
        + b"data: [DONE]\n\n"
    )  # fmt: skip
    _post(rig, _handler(rig, [("text/event-stream", stream)]), _chat(stream=True), 1)
    attributes = rig.span().attributes or {}
    assert attributes["gen_ai.usage.input_tokens"] == 3
    assert attributes["gen_ai.usage.output_tokens"] == 2


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "stream"])
def test_a_failed_responses_answer_still_reports_its_usage(rig: Rig, streamed: bool) -> None:
    failed = {
        "id": "resp_1",
        "object": "response",
        "model": "o4-mini",
        "status": "failed",
        "error": {"code": "server_error", "message": "The model failed"},
        "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12},
    }
    if streamed:
        event = {"type": "response.failed", "response": failed}
        content = b"event: response.failed\ndata: " + orjson.dumps(event) + b"\n\n"
        reply = ("text/event-stream", content)
    else:
        reply = ("application/json", orjson.dumps(failed))
    body = {"model": "o4-mini", "seed": 1, "input": "hi", "stream": streamed}
    _post(rig, _handler(rig, [reply]), body, 1, path="/responses")
    attributes = rig.span().attributes or {}
    assert attributes["gen_ai.usage.input_tokens"] == 5
    assert attributes["gen_ai.usage.output_tokens"] == 7
    assert attributes["gen_ai.response.id"] == "resp_1"
    assert "error.type" in attributes
    assert rig.value("llmtap_tokens_total", token_type="output") == 7


def test_a_seed_beyond_signed_64_bits_stays_off_the_span(rig: Rig) -> None:
    """OTLP encodes signed 64-bit integers only: an exporter would drop the attribute
    with a traceback on every span."""
    _post(rig, None, _chat(seed=2**64 - 1), 1)
    assert "gen_ai.request.seed" not in (rig.span().attributes or {})


@pytest.mark.parametrize("api", ["chat", "chat-stream", "responses", "responses-stream"])
def test_captured_output_holds_the_tool_calls(api: str) -> None:
    """With content capture on, an answer that calls a tool shows the call (id, name and
    the whole arguments, however a stream split them), not an empty message."""
    rig = make_rig("httpx2", is_async=False)
    weather = {"type": "object", "properties": {"city": {"type": "string"}}}
    stream = api.endswith("stream")
    if api.startswith("chat"):
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": weather}}]
        body: dict[str, Any] = {**_chat(tools=tools), "stream": stream}
        path = PATH
    else:
        tools = [{"type": "function", "name": "get_weather", "parameters": weather}]
        body = {"model": "o4-mini", "seed": 1, "input": "weather?", "tools": tools}
        body["stream"] = stream
        path = "/responses"
    _post(rig, None, body, 1, path=path, capture_content="SPAN_ONLY")
    (message,) = orjson.loads((rig.span().attributes or {})["gen_ai.output.messages"])
    (call,) = [p for p in message["parts"] if p["type"] == "tool_call"]
    assert call["name"] == "get_weather" and call["id"]
    assert "city" in orjson.loads(call["arguments"])  # a stream's pieces joined whole
    assert message["finish_reason"] == "tool_call"


def _chunked(rig: Rig, chunks: list[bytes], **headers: str) -> Callable[[Any], Any]:
    """A handler streaming ``chunks`` as they are (with the given response headers)."""
    lib = rig.lib

    class Chunks(lib.SyncByteStream, lib.AsyncByteStream):  # type: ignore[misc,name-defined]
        def __iter__(self) -> Any:
            yield from chunks

        async def __aiter__(self) -> Any:
            for chunk in chunks:
                yield chunk

    def handle(request: Any) -> Any:
        return lib.Response(200, headers=headers, stream=Chunks())

    return handle


SSE_OK = (
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},'
    b'"finish_reason":null}]}\n\n'
    b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    b"data: [DONE]\n\n"
)


def _raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _zstd_frames(data: bytes) -> bytes:
    import zstandard

    half = len(data) // 2
    packer = zstandard.ZstdCompressor()
    return packer.compress(data[:half]) + packer.compress(data[half:])


@pytest.mark.parametrize(
    ("encoding", "pack", "split"),
    [
        ("deflate", _raw_deflate, False),  # raw deflate, no zlib header: httpx reads it too
        ("zstd", _zstd_frames, False),  # two frames in one chunk
        ("zstd", _zstd_frames, True),  # and followed by an empty chunk
    ],
    ids=["raw-deflate", "zstd-frames", "zstd-frames-then-empty-chunk"],
)
def test_compressed_streams_decode_as_the_library_does(
    encoding: str, pack: Callable[[bytes], bytes], split: bool
) -> None:
    rig = make_rig("httpx", is_async=False)  # httpx 0.28 decodes zstd without extras
    body = pack(SSE_OK)
    chunks = [body, b""] if split else [body]
    headers = {"content-type": "text/event-stream", "content-encoding": encoding}
    handler = _chunked(rig, chunks, **headers)
    plain = rig.lib.Client(transport=rig.lib.MockTransport(handler)).post(
        "https://api.openai.com/v1/chat/completions", json=_chat(stream=True)
    )
    responses = _post(rig, handler, _chat(stream=True), 2)
    assert plain.content == SSE_OK
    assert responses[0].content == SSE_OK  # what the library decodes without llmtap
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["miss", "hit"]
    assert responses[1].content == SSE_OK
    assert rig.value("llmtap_tokens_total", token_type="input") == 3
    # ensure_stream_usage decodes for the caller (to hide the usage chunk): the same bytes
    fresh = make_rig("httpx", is_async=False)
    (seen,) = _post(fresh, handler, _chat(stream=True, seed=2), 1, ensure_stream_usage=True)
    assert seen.content == SSE_OK


def test_a_usage_chunk_that_ends_the_body_without_a_blank_line_is_hidden(rig: Rig) -> None:
    stream = (
        b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},'
        b'"finish_reason":"stop"}],"usage":null}\n\n'
        b'data: {"id":"c","model":"m","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":1}}'
    )
    handler = _chunked(rig, [stream], **{"content-type": "text/event-stream"})
    responses = _post(rig, handler, _chat(stream=True), 2, ensure_stream_usage=True)
    for response in responses:
        assert b'"choices":[]' not in response.content and b'"usage"' not in response.content
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["miss", "hit"]
    assert rig.value("llmtap_tokens_total", token_type="input") == 3


def test_a_zstd_stream_whose_chunk_ends_where_a_frame_ends() -> None:
    """A server that ends a frame per flush sends each frame as its own chunk: the next
    chunk opens a new frame, which a finished zstandard decompressobj refuses (httpx's
    own decoder does). Where llmtap decodes for the caller (``ensure_stream_usage``), the
    caller reads the whole stream, and so does the hit."""
    import zstandard

    rig = make_rig("httpx", is_async=False)
    half = len(SSE_OK) // 2
    packer = zstandard.ZstdCompressor()
    frames = [packer.compress(SSE_OK[:half]), packer.compress(SSE_OK[half:])]
    headers = {"content-type": "text/event-stream", "content-encoding": "zstd"}
    handler = _chunked(rig, frames, **headers)
    responses = _post(rig, handler, _chat(stream=True), 2, ensure_stream_usage=True)
    assert [r.headers["x-llmtap-cache"] for r in responses] == ["miss", "hit"]
    assert responses[0].content == responses[1].content == SSE_OK
    assert rig.value("llmtap_tokens_total", token_type="input") == 3


def test_tool_calls_streamed_without_an_index_stay_apart() -> None:
    """Some servers send each whole call in a chunk of its own, with no ``index``."""
    rig = make_rig("httpx2", is_async=False)

    def chunk(calls: list[dict[str, Any]], finish: str | None = None) -> bytes:
        delta = {"tool_calls": calls} if calls else {}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return b"data: " + orjson.dumps({"id": "c", "model": "m", "choices": [choice]}) + b"\n\n"

    def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }

    stream = (
        chunk([call("call_a", "get_weather", '{"city":"Paris"}')])
        + chunk([call("call_b", "get_time", '{"tz":"CET"}')])
        + chunk([], "tool_calls")
        + b"data: [DONE]\n\n"
    )
    handler = _chunked(rig, [stream], **{"content-type": "text/event-stream"})
    _post(rig, handler, _chat(stream=True), 1, capture_content="SPAN_ONLY")
    (message,) = orjson.loads((rig.span().attributes or {})["gen_ai.output.messages"])
    calls = [(p["id"], p["name"], p["arguments"]) for p in message["parts"]]
    assert calls == [
        ("call_a", "get_weather", '{"city":"Paris"}'),
        ("call_b", "get_time", '{"tz":"CET"}'),
    ]
