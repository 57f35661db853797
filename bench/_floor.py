"""The telemetry floor: what the same span and Prometheus series cost with no llmtap.

A block that makes the plain call and, around it, does exactly the OpenTelemetry
SDK and prometheus-client work llmtap does for that call: one span with the same
name, kind and attributes (copied from a span llmtap emitted for this request),
and the same metric operations on a private registry. No tool that emits these
spans and metrics through these libraries can cost less, so ``llmtap_tel_on`` over
this row is llmtap's own share.
"""

from __future__ import annotations

import time
from typing import Any

from bench._fixtures import chat_body, lib, sdk_tracer_provider, tap

# Set at span start (what a sampler may read); the rest go in at the end, as llmtap does.
_START = ("gen_ai.operation.name", "gen_ai.provider.name", "server.address", "server.port")


def llmtap_span(lib_name: str, inner: Any) -> Any:
    """The span llmtap emits for one chat call over ``inner``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mod = lib(lib_name)
    transport = tap(lib_name, inner, tracer_provider=provider, metrics=None)
    with mod.Client(transport=transport, base_url="http://fake/v1") as client:
        client.post("/chat/completions", json=chat_body()).read()
    (span,) = exporter.get_finished_spans()
    return span


def floor_block(client: Any, span: Any) -> Any:
    """A block of plain calls, each wrapped in the same span and metric work as llmtap's."""
    from opentelemetry.trace import SpanKind
    from prometheus_client import CollectorRegistry

    import llmtap

    tracer = sdk_tracer_provider().get_tracer("floor")
    metrics = llmtap.Metrics(registry=CollectorRegistry())
    start = {k: v for k, v in span.attributes.items() if k in _START or "request" in k}
    end = {k: v for k, v in span.attributes.items() if k not in start}
    base = ("chat", "openai_compatible", "gpt-4o-mini")
    in_flight = metrics.in_flight.labels(*base)
    requests = metrics.requests.labels(*base, "false", "success", "bypass")
    duration = metrics.duration.labels(*base, "false", "bypass")
    tokens = [metrics.tokens.labels(*base, kind) for kind in ("input", "output")]
    per_request = [metrics.request_tokens.labels(*base, kind) for kind in ("input", "output")]
    finish = metrics.finish_reasons.labels(*base, "stop")
    body = chat_body()

    def run(n: int) -> None:
        for _ in range(n):
            began = time.time()
            s = tracer.start_span(span.name, kind=SpanKind.CLIENT, attributes=start)
            in_flight.inc()
            client.post("/chat/completions", json=body).raise_for_status()
            s.set_attributes(end)
            ex = {"trace_id": format(s.get_span_context().trace_id, "032x")}
            in_flight.dec()
            requests.inc()
            duration.observe(time.time() - began, ex)
            for total, each, count in zip(tokens, per_request, (20, 10), strict=True):
                total.inc(count)
                each.observe(count, ex)
            finish.inc()
            s.end()

    return run
