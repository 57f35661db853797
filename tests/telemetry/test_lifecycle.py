"""Every way a stream can end ends exactly one span and one metrics report (TELEMETRY.md,
"Stream lifecycle"), for httpx and httpx2, sync and async."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry.trace import NoOpTracerProvider, StatusCode
from telemetry_rig import BASE_URL, LIB_IDS, LIBS, Rig, make_rig

import llmtap.httpx2
from llmtap.telemetry import semconv

BODY = {
    "model": "gpt-4o-mini",
    "seed": 5,
    "stream": True,
    "stream_options": {"include_usage": True},
    "messages": [{"role": "user", "content": "Tell me about streams."}],
}


@pytest.fixture(params=LIBS, ids=LIB_IDS)
def any_rig(request: pytest.FixtureRequest) -> Rig:
    lib_name, is_async = request.param
    return make_rig(lib_name, is_async)


async def _send(rig: Rig, client: Any) -> Any:
    request = client.build_request("POST", "/chat/completions", json=BODY)
    if rig.is_async:
        return await client.send(request, stream=True)
    return client.send(request, stream=True)


async def _chunks(rig: Rig, iterator: Any, count: int) -> None:
    for _ in range(count):
        if rig.is_async:
            await iterator.__anext__()
        else:
            next(iterator)


async def _raw(rig: Rig, response: Any) -> Any:
    return response.aiter_raw() if rig.is_async else response.iter_raw()


async def _read_all(rig: Rig, response: Any) -> None:
    if rig.is_async:
        await response.aread()
    else:
        response.read()


async def _close(rig: Rig, response: Any) -> None:
    if rig.is_async:
        await response.aclose()
    else:
        response.close()


async def _collect(rig: Rig | None = None) -> None:
    """Collect garbage until ``rig`` has a span: an abandoned async generator is finalised
    by a task the event loop runs later, one generator layer per round."""
    for _ in range(20):
        gc.collect()
        await asyncio.sleep(0)
        if rig is not None and rig.spans():
            return


async def case_end(rig: Rig, client: Any) -> None:
    response = await _send(rig, client)
    await _read_all(rig, response)
    await _close(rig, response)


async def case_close_midway(rig: Rig, client: Any) -> None:
    response = await _send(rig, client)
    await _chunks(rig, await _raw(rig, response), 2)
    await _close(rig, response)


async def case_context_exit(rig: Rig, client: Any) -> None:
    if rig.is_async:
        async with client.stream("POST", "/chat/completions", json=BODY) as response:
            await _chunks(rig, response.aiter_raw(), 2)
    else:
        with client.stream("POST", "/chat/completions", json=BODY) as response:
            await _chunks(rig, response.iter_raw(), 2)


async def case_close_unread(rig: Rig, client: Any) -> None:
    await _close(rig, await _send(rig, client))


async def case_caller_raises(rig: Rig, client: Any) -> None:
    with pytest.raises(KeyError):
        if rig.is_async:
            async with client.stream("POST", "/chat/completions", json=BODY) as response:
                async for _ in response.aiter_raw():
                    raise KeyError("caller bug")
        else:
            with client.stream("POST", "/chat/completions", json=BODY) as response:
                for _ in response.iter_raw():
                    raise KeyError("caller bug")


async def case_upstream_drop(rig: Rig, client: Any) -> None:
    rig.fake.drop_stream_after(3)
    response = await _send(rig, client)
    with pytest.raises(rig.lib.ReadError):
        await _read_all(rig, response)
    await _close(rig, response)


async def case_error_event(rig: Rig, client: Any) -> None:
    rig.fake.error_event_after(3)
    response = await _send(rig, client)
    await _read_all(rig, response)
    await _close(rig, response)


async def case_abandoned_unread(rig: Rig, client: Any) -> None:
    response = await _send(rig, client)
    del response
    await _collect(rig)


async def case_abandoned_midway(rig: Rig, client: Any) -> None:
    response = await _send(rig, client)
    iterator = await _raw(rig, response)
    await _chunks(rig, iterator, 2)
    del response, iterator
    await _collect(rig)


STOPPED: dict[str, Any] = {
    "outcome": "cancelled",
    "error_type": None,
    "status": StatusCode.UNSET,
    "reasons": ("error",),
}
INTERRUPTED: dict[str, Any] = {
    "outcome": "error",
    "error_type": "stream_interrupted",
    "status": StatusCode.ERROR,
    "reasons": ("error",),
}
CASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "end": (case_end, STOPPED | {"outcome": "success", "reasons": ("stop",)}),
    "close_midway": (case_close_midway, STOPPED),
    "context_exit": (case_context_exit, STOPPED),
    "close_unread": (case_close_unread, STOPPED | {"reasons": None}),
    "caller_raises": (case_caller_raises, STOPPED),
    "upstream_drop": (case_upstream_drop, INTERRUPTED),
    "error_event": (case_error_event, INTERRUPTED),
    "abandoned_unread": (case_abandoned_unread, STOPPED | {"reasons": None}),
    "abandoned_midway": (case_abandoned_midway, STOPPED),
}


def check(rig: Rig, expected: dict[str, Any]) -> None:
    span = rig.span()  # exactly one
    attrs = dict(span.attributes or {})
    assert span.status.status_code is expected["status"]
    assert attrs.get("error.type") == expected["error_type"]
    assert attrs.get("gen_ai.response.finish_reasons") == expected["reasons"]
    assert rig.value("llmtap_requests_total") == 1
    assert rig.value("llmtap_requests_total", outcome=expected["outcome"], stream="true") == 1
    assert rig.value("llmtap_requests_in_flight") == 0
    errors = rig.value("llmtap_request_errors_total")
    assert errors == (1 if expected["error_type"] else 0)
    if expected["error_type"]:
        assert rig.value("llmtap_request_errors_total", error_type=expected["error_type"]) == 1
    reasons = expected["reasons"] or ()
    assert rig.value("llmtap_finish_reasons_total") == len(reasons)
    for reason in set(reasons):
        assert rig.value("llmtap_finish_reasons_total", finish_reason=reason) == 1
    assert rig.value("llmtap_request_duration_seconds_count", stream="true") == 1


@pytest.mark.parametrize("case", list(CASES))
async def test_lifecycle(any_rig: Rig, case: str) -> None:
    run, expected = CASES[case]
    await _run_case(any_rig, run)
    check(any_rig, expected)


async def _run_case(rig: Rig, run: Any) -> None:
    client = rig.client()
    try:
        await run(rig, client)
    finally:
        if rig.is_async:
            await client.aclose()
        else:
            client.close()
    await asyncio.sleep(0)


@pytest.mark.parametrize("lib_name", ["httpx", "httpx2"])
async def test_task_cancellation(lib_name: str) -> None:
    rig = make_rig(lib_name, is_async=True)
    rig.fake.chunk_delay = 0.05
    started = asyncio.Event()

    async def consume() -> None:
        async with (
            rig.client() as client,
            client.stream("POST", "/chat/completions", json=BODY) as response,
        ):
            async for _ in response.aiter_raw():
                started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _collect()
    check(rig, STOPPED)


async def test_cancelled_before_answer() -> None:
    """Cancellation while waiting for upstream's headers: cancelled, not an error."""
    rig = make_rig("httpx2", is_async=True)
    entered = asyncio.Event()

    async def handler(request: httpx2.Request) -> httpx2.Response:
        entered.set()
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    async def call() -> None:
        async with rig.client(httpx2.MockTransport(handler)) as client:
            await client.post("/chat/completions", json=BODY)

    task = asyncio.create_task(call())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    span = rig.span()
    assert span.status.status_code is StatusCode.UNSET
    assert "error.type" not in (span.attributes or {})
    assert rig.value("llmtap_requests_total", outcome="cancelled") == 1
    assert rig.value("llmtap_requests_in_flight") == 0


# -- through the openai SDK ------------------------------------------------------


def _sync_sdk(rig: Rig) -> openai.OpenAI:
    client = httpx2.Client(transport=rig.transport())
    return openai.OpenAI(api_key="sk-test", base_url=BASE_URL, http_client=client, max_retries=0)


def _async_sdk(rig: Rig) -> openai.AsyncOpenAI:
    client = httpx2.AsyncClient(transport=rig.transport())
    return openai.AsyncOpenAI(
        api_key="sk-test", base_url=BASE_URL, http_client=client, max_retries=0
    )


SDK_BODY: dict[str, Any] = {k: v for k, v in BODY.items() if k != "stream"}


def test_sdk_break_then_close() -> None:
    rig = make_rig("httpx2", is_async=False)
    stream = _sync_sdk(rig).chat.completions.create(stream=True, **SDK_BODY)
    for _ in stream:
        break
    stream.close()
    check(rig, STOPPED)


async def test_sdk_async_with_exit() -> None:
    rig = make_rig("httpx2", is_async=True)
    stream = await _async_sdk(rig).chat.completions.create(stream=True, **SDK_BODY)
    async with stream:
        async for _ in stream:
            break
    check(rig, STOPPED)


def test_sdk_error_event() -> None:
    rig = make_rig("httpx2", is_async=False)
    rig.fake.error_event_after(3)
    stream = _sync_sdk(rig).chat.completions.create(stream=True, **SDK_BODY)
    with pytest.raises(openai.APIError), stream:
        list(stream)
    check(rig, INTERRUPTED)
    assert (rig.span().status.description or "").startswith("stream interrupted")


def test_sdk_read_to_end() -> None:
    rig = make_rig("httpx2", is_async=False)
    with _sync_sdk(rig).chat.completions.create(stream=True, **SDK_BODY) as stream:
        list(stream)
    check(rig, CASES["end"][1])


def test_telemetry_failure_never_reaches_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    rig = make_rig("httpx2", is_async=False)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter on fire")

    monkeypatch.setattr(rig.metrics, "finished", broken)
    with rig.client() as client, client.stream("POST", "/chat/completions", json=BODY) as r:
        r.read()
    assert len(rig.spans()) == 1  # the span still ends
    monkeypatch.setattr(semconv, "start_attributes", broken)
    with rig.client() as client:
        assert client.post("/chat/completions", json=BODY).status_code == 200
    assert len(rig.spans()) == 1  # begin failed: no span, no error


# -- hits: a replayed answer ends its call when the caller is done with it ---------------


def _store_the_stream(rig: Rig) -> None:
    """Record BODY's answer into the rig's cache through a transport that reports nothing."""
    recorder = llmtap.httpx2.Transport(
        transport=httpx2.MockTransport(rig.fake),
        cache=rig.cache,
        metrics=None,
        tracer_provider=NoOpTracerProvider(),
    )
    with httpx2.Client(transport=recorder, base_url=BASE_URL) as client:
        assert client.post("/chat/completions", json=BODY).headers["x-llmtap-cache"] == "miss"


HIT_CASES = ["end", "close_midway", "context_exit", "close_unread", "abandoned_unread",
             "abandoned_midway"]  # fmt: skip


@pytest.mark.parametrize("case", HIT_CASES)
async def test_hit_lifecycle(any_rig: Rig, case: str) -> None:
    """TELEMETRY.md: the span ends when the stream is exhausted or closed, and a caller
    that closes early is cancelled: for a replayed hit as for a miss."""
    _store_the_stream(any_rig)
    await _run_case(any_rig, CASES[case][0])
    span = any_rig.span()  # exactly one
    attrs = dict(span.attributes or {})
    assert attrs["llmtap.cache.result"] == "hit" and "error.type" not in attrs
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)  # recorded, not read
    outcome = "success" if case == "end" else "cancelled"
    assert any_rig.value("llmtap_requests_total") == 1
    assert any_rig.value("llmtap_requests_total", outcome=outcome, cache="hit") == 1
    assert any_rig.value("llmtap_requests_in_flight") == 0
    assert any_rig.value("llmtap_finish_reasons_total") == 0  # not billed work
    assert any_rig.value("llmtap_request_duration_seconds_count", cache="hit") == 1
    assert any_rig.fake.request_count == 1  # the recording only


def test_a_hit_span_covers_the_time_the_caller_reads() -> None:
    rig = make_rig()
    _store_the_stream(rig)
    with rig.client() as client, client.stream("POST", "/chat/completions", json=BODY) as r:
        chunks = r.iter_raw()
        next(chunks)
        assert rig.spans() == []  # still being read
        time.sleep(0.3)
        for _ in chunks:
            pass
    span = rig.span()
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 >= 0.3
    assert rig.value("llmtap_request_duration_seconds_sum", cache="hit") >= 0.3


async def test_cancelled_while_waiting_for_the_leader() -> None:
    """A call cancelled before it has an answer of its own (waiting on the single-flight
    leader here) is still one span and one report: cancelled, nothing left in flight."""
    rig = make_rig("httpx2", is_async=True)

    async def slow(request: Any) -> Any:
        await asyncio.sleep(0.3)
        return rig.fake(request)

    body = {**BODY, "stream": False}
    async with rig.client(httpx2.MockTransport(slow)) as client:
        leader = asyncio.create_task(client.post("/chat/completions", json=body))
        await asyncio.sleep(0.05)
        waiter = asyncio.create_task(client.post("/chat/completions", json=body))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (await leader).status_code == 200
    assert len(rig.spans()) == 2
    assert rig.value("llmtap_requests_total", outcome="cancelled") == 1
    assert rig.value("llmtap_requests_total", outcome="success") == 1
    assert rig.value("llmtap_requests_in_flight") == 0


@pytest.mark.parametrize("close", ["read_to_done_then_close", "read_whole_body_then_close"])
def test_a_hit_read_to_its_end_then_closed_is_a_success(close: str) -> None:
    """The openai SDK stops reading a stream at ``[DONE]`` and closes it: a replayed hit
    read so is a success, as the same miss is (not cancelled)."""
    rig = make_rig("httpx2", is_async=False)
    _store_the_stream(rig)
    if close == "read_to_done_then_close":
        with _sync_sdk(rig).chat.completions.create(stream=True, **SDK_BODY) as stream:
            list(stream)
    else:
        with rig.client() as client, client.stream("POST", "/chat/completions", json=BODY) as r:
            chunks = list(r.iter_raw())
        assert chunks[-1].endswith(b"data: [DONE]\n\n")
    assert rig.value("llmtap_requests_total", outcome="success", cache="hit") == 1
    assert rig.value("llmtap_requests_total", outcome="cancelled") == 0
