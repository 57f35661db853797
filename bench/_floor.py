"""Lower bounds: what the same work costs with no llmtap at all.

Two kinds, each measured in the same run as the rows it bounds:

- The telemetry floor (:func:`floor_block`): the plain call and, around it,
  exactly the OpenTelemetry SDK and prometheus-client work llmtap does for that
  call: one span with the same name, kind and attributes (copied from a span
  llmtap emitted for this request) and the same metric operations on a private
  registry. ``llmtap_tel_on`` over this row is llmtap's own share.
- :class:`FloorTransport`: the least a transport can do and still cache or
  observe a chat call the way API.md defines it. It parses the request body and
  hashes it re-dumped with sorted keys, because the key is the canonical request
  (key order and whitespace must not split a key, and ``cache_when="seeded"``
  reads the seed; a hash of the raw bytes would be cheaper but is not that
  cache). It reads ``diskcache`` directly and answers with the raw stored body;
  or it forwards the call, reads the answer and parses it (to find its usage),
  with the telemetry floor's span and metrics around it when asked. It keeps
  none of the other promises llmtap makes (no headers stripped or labelled, no
  streams, no entry format, no validation, no single flight, no failing open),
  so it is a lower bound, not a competitor: when it misses a target on this
  machine, no transport that keys on the canonical request and is built on these
  libraries can meet that target here.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from bench._fixtures import chat_body, lib, tap

# Set at span start (what a sampler may read); the rest go in at the end, as llmtap does.
_START = ("gen_ai.operation.name", "gen_ai.provider.name", "server.address", "server.port")
_BASE = ("chat", "openai_compatible", "gpt-4o-mini")


def llmtap_span(lib_name: str, inner: Any, cache: Any = None) -> Any:
    """The span llmtap emits for one chat call over ``inner``; with ``cache``, the span of
    the second, identical call: a hit."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mod = lib(lib_name)
    transport = tap(lib_name, inner, cache=cache, tracer_provider=provider, metrics=None)
    calls = 1 if cache is None else 2
    with mod.Client(transport=transport, base_url="http://fake/v1") as client:
        for _ in range(calls):
            client.post("/chat/completions", json=chat_body()).read()
    spans = exporter.get_finished_spans()
    assert len(spans) == calls, f"expected one span per call, got {len(spans)}"
    span = spans[-1]
    hit = span.attributes.get("llmtap.cache.result") == "hit"
    assert hit == (cache is not None), dict(span.attributes)
    return span


class SpanWork:
    """llmtap's span and Prometheus work for one call, done with no llmtap code.

    ``provider`` should be the one llmtap's rows use in the same run, so both feed the
    same batch processor and exporter thread."""

    def __init__(self, span: Any, provider: Any) -> None:
        from prometheus_client import CollectorRegistry

        import llmtap

        self.tracer = provider.get_tracer("floor")
        self.name = span.name
        self.start = {k: v for k, v in span.attributes.items() if k in _START or "request" in k}
        self.end_attrs = {k: v for k, v in span.attributes.items() if k not in self.start}
        self.hit = span.attributes.get("llmtap.cache.result") == "hit"
        metrics = llmtap.Metrics(registry=CollectorRegistry())
        cache = "hit" if self.hit else "bypass"
        self.in_flight = metrics.in_flight.labels(*_BASE)
        self.requests = metrics.requests.labels(*_BASE, "false", "success", cache)
        self.duration = metrics.duration.labels(*_BASE, "false", cache)
        kinds = ("input", "output")
        self.saved = [metrics.cache_saved.labels(*_BASE, kind) for kind in kinds]
        self.tokens = [metrics.tokens.labels(*_BASE, kind) for kind in kinds]
        self.per_request = [metrics.request_tokens.labels(*_BASE, kind) for kind in kinds]
        self.finish = metrics.finish_reasons.labels(*_BASE, "stop")

    def begin(self) -> tuple[Any, float]:
        from opentelemetry.trace import SpanKind

        began = time.time()
        span = self.tracer.start_span(self.name, kind=SpanKind.CLIENT, attributes=self.start)
        self.in_flight.inc()
        return span, began

    def end(self, span: Any, began: float) -> None:
        span.set_attributes(self.end_attrs)
        ex = {"trace_id": format(span.get_span_context().trace_id, "032x")}
        self.in_flight.dec()
        self.requests.inc()
        self.duration.observe(time.time() - began, ex)
        if self.hit:
            for saved, count in zip(self.saved, (20, 10), strict=True):
                saved.inc(count)
        else:
            for total, each, count in zip(self.tokens, self.per_request, (20, 10), strict=True):
                total.inc(count)
                each.observe(count, ex)
            self.finish.inc()
        span.end()

    @classmethod
    def like_llmtap(cls, lib_name: str, inner: Any, provider: Any, cache: Any = None) -> SpanWork:
        """The work for the span llmtap emits over ``inner`` (a hit's with ``cache``)."""
        return cls(llmtap_span(lib_name, inner, cache=cache), provider)


def floor_block(client: Any, span: Any, provider: Any) -> Any:
    """A block of plain calls, each wrapped in the same span and metric work as llmtap's."""
    work = SpanWork(span, provider)
    body = chat_body()

    def run(n: int) -> None:
        for _ in range(n):
            s, began = work.begin()
            client.post("/chat/completions", json=body).raise_for_status()
            work.end(s, began)

    return run


class FloorTransport:
    """The least a transport must do to cache (``store``) and/or observe (``work``) a
    non-streamed chat call: see the module docstring. Works for httpx and httpx2. A stream
    is forwarded untouched (so the SDK's stream timings still run), never measured."""

    def __init__(self, lib_name: str, inner: Any, store: Any = None, work: Any = None) -> None:
        self._mod = lib(lib_name)
        self._inner = inner
        self._store = store
        self._work = work
        self._headers = [("content-type", "application/json")]

    def handle_request(self, request: Any) -> Any:
        work = self._work
        started = work.begin() if work is not None else None
        body = orjson.loads(request.content)
        response = key = None
        if self._store is not None:
            canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
            key = hashlib.sha256(canonical).hexdigest()
            raw = self._store.get(key)
            if raw is not None:
                response = self._mod.Response(200, headers=self._headers, content=raw)
        if response is None:
            response = self._inner.handle_request(request)
            if body.get("stream") is not True:  # a stream passes untouched: no per-chunk work
                content = response.read()
                orjson.loads(content)  # the usage is in the answer
                if key is not None:
                    self._store.set(key, content)
        if started is not None:
            work.end(*started)
        return response

    def close(self) -> None:
        self._inner.close()
