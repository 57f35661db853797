"""What the scenarios share: a canned upstream, telemetry on/off, clients.

The client-side floor uses :class:`Canned`, a ``MockTransport`` handler that
returns precomputed bytes (taken once from :class:`llmtap.testing.FakeUpstream`,
so they are real OpenAI-format answers): it does no work per request, so the
baseline is as small as it can be and every ratio is as strict as it can be.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from llmtap.testing import FakeUpstream

LIBS = ("httpx2", "httpx")
MODEL = "gpt-4o-mini"
STREAM_CHUNKS = 200


def lib(name: str) -> ModuleType:
    return importlib.import_module(name)


def chat_body(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "seed": 7,
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": f"Name a colour. Request {i}."},
        ],
        **extra,
    }


def _fake_answer() -> tuple[list[tuple[str, str]], bytes]:
    import httpx2

    client = httpx2.Client(transport=httpx2.MockTransport(FakeUpstream()), base_url="http://f/v1")
    r = client.post("/chat/completions", json=chat_body())
    keep = ("content-type", "x-request-id", "openai-version", "openai-processing-ms")
    return [(k, v) for k, v in r.headers.multi_items() if k in keep], r.content


def sse_chunks(n: int = STREAM_CHUNKS) -> list[bytes]:
    """``n`` content chunks, a finish chunk, a usage chunk and ``[DONE]``, one event each,
    shaped like OpenAI's: compact JSON, ``logprobs`` and ``finish_reason`` always present,
    ``"usage":null`` on every chunk when ``include_usage`` is set."""
    head = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }

    def event(choices: list[Any], usage: Any = None) -> bytes:
        data = {**head, "choices": choices, "usage": usage}
        return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[Any]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    out = [event(choice({"role": "assistant", "content": "", "refusal": None}))]
    out += [event(choice({"content": f"w{i} "})) for i in range(n - 1)]
    out.append(event(choice({}, "stop")))
    usage = {"prompt_tokens": 20, "completion_tokens": n, "total_tokens": 20 + n}
    out.append(event([], usage))
    out.append(b"data: [DONE]\n\n")
    return out


_STREAM_CLASSES: dict[str, type] = {}


def chunk_stream(mod: ModuleType, chunks: list[bytes]) -> Any:
    """A byte stream of ``mod`` (httpx or httpx2) that yields ``chunks`` one by one."""
    cls = _STREAM_CLASSES.get(mod.__name__)
    if cls is None:

        def __init__(self: Any, chunks: list[bytes]) -> None:
            self.chunks = chunks

        def __iter__(self: Any) -> Iterator[bytes]:
            yield from self.chunks

        async def __aiter__(self: Any) -> Any:
            for c in self.chunks:
                yield c

        ns = {"__init__": __init__, "__iter__": __iter__, "__aiter__": __aiter__}
        cls = type("Chunks", (mod.SyncByteStream, mod.AsyncByteStream), ns)
        _STREAM_CLASSES[mod.__name__] = cls
    return cls(chunks)


class Canned:
    """A ``MockTransport`` handler: the same precomputed answer (or stream) every time."""

    def __init__(self, stream_chunks: int = STREAM_CHUNKS) -> None:
        self.headers, self.body = _fake_answer()
        self.sse = sse_chunks(stream_chunks)
        self.sse_headers = [("content-type", "text/event-stream"), ("x-request-id", "req_b")]
        self.calls = 0

    def __call__(self, request: Any) -> Any:
        mod = lib(type(request).__module__.split(".")[0])
        self.calls += 1
        if b'"stream":true' in request.content or b'"stream": true' in request.content:
            return mod.Response(200, headers=self.sse_headers, stream=chunk_stream(mod, self.sse))
        return mod.Response(200, headers=self.headers, content=self.body)


# -- telemetry ------------------------------------------------------------------------


class Telemetry:
    """Transport keywords for telemetry off (no-op tracer, no metrics) and on (an SDK
    tracer provider with a batch processor and a null exporter, and ``llmtap.Metrics`` on a
    private registry)."""

    def __init__(self) -> None:
        from opentelemetry.trace import NoOpTracerProvider

        self.off: dict[str, Any] = {"tracer_provider": NoOpTracerProvider(), "metrics": None}
        self.on: dict[str, Any] | None = None
        self.why_not = ""
        try:
            from prometheus_client import CollectorRegistry

            import llmtap

            metrics = llmtap.Metrics(registry=CollectorRegistry())
        except (ImportError, AttributeError) as exc:
            self.why_not = f"telemetry not available ({exc})"
            return
        self.provider = sdk_tracer_provider()
        self.on = {"tracer_provider": self.provider, "metrics": metrics}

    def shutdown(self) -> None:
        if self.on is not None:
            self.provider.shutdown()


def sdk_tracer_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class NullExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(NullExporter()))
    return provider


def tap(lib_name: str, inner: Any, *, cache: Any = None, is_async: bool = False, **kw: Any) -> Any:
    """An llmtap transport of ``lib_name`` around ``inner`` (cache off unless given)."""
    module = importlib.import_module(f"llmtap.{lib_name}")
    cls = module.AsyncTransport if is_async else module.Transport
    return cls(transport=inner, cache=cache, cache_when="always", **kw)


def openai_client(http_client: Any, base_url: str = "http://fake/v1") -> Any:
    import openai

    return openai.OpenAI(
        api_key="sk-bench", base_url=base_url, http_client=http_client, max_retries=0
    )
