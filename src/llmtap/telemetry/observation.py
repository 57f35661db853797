"""The core's telemetry seam, implemented: one span and one metrics report per call.

``begin`` starts the CLIENT span with the attributes samplers need and counts
the call in flight; ``end`` receives the core's :class:`CallRecord` exactly
once (the core guarantees it) and finishes both. Nothing here may raise into
the caller: ``begin`` falls back to a no-op observation and the core logs
failures of ``end``. When no span records and no metrics are configured,
``begin`` returns a shared no-op observation, so an unconfigured process pays
for one ``start_span`` on OpenTelemetry's no-op tracer and little else.
"""

from __future__ import annotations

import logging
from itertools import pairwise
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmtap import _version
from llmtap._core.answer import AnswerFacts
from llmtap._core.observe import CallRecord, NullTelemetry, Observation
from llmtap._core.request import LLMCall
from llmtap.telemetry import content, semconv
from llmtap.telemetry.metrics import Metrics
from llmtap.telemetry.otel_metrics import OtelMetrics
from llmtap.telemetry.semconv import Usage

log = logging.getLogger("llmtap")

_NULL = NullTelemetry._observation
_NS = 1_000_000_000


class SpanTelemetry:
    """Spans, Prometheus metrics and (optionally) OTel metrics for one transport."""

    __slots__ = ("_capture", "_metrics", "_otel", "_provider", "_tracer")

    def __init__(
        self,
        tracer: trace.Tracer,
        metrics: Metrics | None,
        otel: OtelMetrics | None,
        capture: str,
        provider: str | None,
    ) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._otel = otel
        self._capture = capture
        self._provider = provider

    def begin(self, call: LLMCall, now: float) -> Observation:
        try:
            return self._begin(call, now)
        except Exception:  # telemetry never fails the call
            log.warning("llmtap: telemetry failed to start", exc_info=True)
            return _NULL

    def _begin(self, call: LLMCall, now: float) -> Observation:
        provider = self._provider_of(call)
        # Request attributes go in with the start ones: one attribute pass in the SDK
        # instead of two (samplers simply see a few more attributes).
        attributes = semconv.start_attributes(call, provider)
        attributes.update(semconv.request_attributes(call, provider))
        span = self._tracer.start_span(
            semconv.span_name(call),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=int(now * _NS),
        )
        recording = span.is_recording()
        if not recording and self._metrics is None and self._otel is None:
            return _NULL
        base: tuple[str, str, str] | None = None
        if self._metrics is not None:
            base = _base(self._metrics, call, provider)
            self._metrics.child(self._metrics.in_flight, *base).inc()
        return _Observation(self, call, provider, span if recording else None, base)

    def _provider_of(self, call: LLMCall) -> str:
        return self._provider or semconv.provider_for_host(call.host)

    def cache_error(self, backend: str, op: str, call: LLMCall) -> None:
        try:
            metrics = self._metrics
            if metrics is not None:
                base = _base(metrics, call, self._provider_of(call))
                metrics.child(metrics.cache_errors, *base, backend, op).inc()
        except Exception:
            log.warning("llmtap: telemetry failed", exc_info=True)


class _Observation:
    __slots__ = ("_base", "_call", "_ended", "_owner", "_provider", "_span")

    @property
    def wants_text(self) -> bool:
        """Whether the answer's text is needed (content capture): if not, the exchange may
        skip parsing the middle chunks of a stream."""
        return self._span is not None and self._owner._capture != "NO_CONTENT"

    @property
    def wants_chunk_times(self) -> bool:
        """Whether the arrival of every event is kept: only OTel's
        ``time_per_output_chunk`` records each gap between them."""
        return self._owner._otel is not None

    def __init__(
        self,
        owner: SpanTelemetry,
        call: LLMCall,
        provider: str,
        span: Span | None,
        base: tuple[str, str, str] | None,
    ) -> None:
        self._owner = owner
        self._call = call
        self._provider = provider
        self._span = span
        self._base = base
        self._ended = False

    def end(self, record: CallRecord) -> None:
        if self._ended:
            return
        self._ended = True
        owner, span = self._owner, self._span
        trace_id = None
        # Read once: the span, Prometheus and the OTel metrics all need the counts.
        hit = record.cache == "hit"
        facts = record.facts
        usage = None if hit or facts is None else semconv.read_usage(facts.usage)
        saved = semconv.read_usage(record.saved_usage) if hit else None
        try:
            if span is not None:
                context = span.get_span_context()
                if context.trace_flags.sampled:
                    trace_id = context.trace_id
                self._finish_span(span, record, usage, saved)
        finally:
            try:
                if owner._metrics is not None and self._base is not None:
                    _prometheus(owner._metrics, self._base, record, trace_id, usage, saved)
                if owner._otel is not None:
                    _otel(owner._otel, self._call, self._provider, record, usage)
            finally:
                if span is not None:
                    span.end(end_time=int(record.ended_at * _NS))

    def _finish_span(
        self, span: Span, record: CallRecord, usage: Usage | None, saved: Usage | None
    ) -> None:
        attrs: dict[str, Any] = {"llmtap.cache.result": record.cache}
        if record.key is not None:
            attrs["llmtap.cache.key"] = record.key
        if record.status is not None:
            attrs["http.response.status_code"] = record.status
        hit = record.cache == "hit"
        mode = self._owner._capture
        facts = record.hit_facts(text=mode != "NO_CONTENT") if hit else record.facts
        if facts is not None:
            attrs.update(semconv.response_attributes(facts, self._provider))
            if not hit:
                if usage is not None:
                    attrs.update(semconv.usage_attributes(usage))
                if self._call.stream and facts.first_chunk_at is not None:
                    ttfc = max(0.0, facts.first_chunk_at - record.started_at)
                    attrs["gen_ai.response.time_to_first_chunk"] = ttfc
        if hit:
            if record.entry_age is not None:
                attrs["llmtap.cache.age_seconds"] = record.entry_age
            if saved is not None:
                if saved.input is not None:
                    attrs["llmtap.cache.saved.input_tokens"] = saved.input
                if saved.output is not None:
                    attrs["llmtap.cache.saved.output_tokens"] = saved.output
        if mode != "NO_CONTENT":
            self._content(span, facts, record.ended_at, mode, attrs)
        if record.error_type is not None:
            attrs["error.type"] = record.error_type
        span.set_attributes(attrs)
        if record.outcome == "error":
            error = record.error
            if isinstance(error, Exception) and record.status is None:
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, _describe(record)))

    def _content(
        self,
        span: Span,
        facts: AnswerFacts | None,
        ended_at: float,
        mode: str,
        attrs: dict[str, Any],
    ) -> None:
        details: dict[str, Any] = {}
        inputs = content.input_messages(self._call)
        if inputs is not None:
            details["gen_ai.input.messages"] = content.dumps(inputs)
        if facts is not None and (facts.outputs or facts.finish_reasons):
            details["gen_ai.output.messages"] = content.dumps(content.output_messages(facts))
        if mode in ("SPAN_ONLY", "SPAN_AND_EVENT"):
            attrs.update(details)
        if mode in ("EVENT_ONLY", "SPAN_AND_EVENT") and details:
            span.add_event(content.EVENT_NAME, details, timestamp=int(ended_at * _NS))


def _base(metrics: Metrics, call: LLMCall, provider: str) -> tuple[str, str, str]:
    """The labels every llmtap metric carries (TELEMETRY.md)."""
    return (call.operation, provider, metrics.model(call.model))


def _describe(record: CallRecord) -> str:
    if record.error is not None:
        return str(record.error) or type(record.error).__name__
    facts = record.facts
    if record.error_type == "stream_interrupted":
        if facts is not None and facts.error:
            return f"stream interrupted: {facts.error}"
        return "stream ended before its terminal event"
    status = record.status
    if facts is not None and facts.error_type is not None and status is not None and status < 400:
        return f"HTTP {status}, but the answer is an error: {facts.error}"
    return f"HTTP {status}"


def _prometheus(
    metrics: Metrics,
    base: tuple[str, str, str],
    record: CallRecord,
    trace_id: int | None,
    usage: Usage | None,
    saved: Usage | None,
) -> None:
    stream = "true" if record.call.stream else "false"
    in_flight, requests, duration = metrics.ending(base, stream, record.outcome, record.cache)
    in_flight.dec()
    requests.inc()
    if record.error_type is not None:
        metrics.child(metrics.errors, *base, record.error_type).inc()
    ex = metrics.exemplar(trace_id)
    duration.observe(max(0.0, record.ended_at - record.started_at), ex)
    if record.cache == "hit":
        if saved is not None:
            metrics.saved(base, saved)
        return
    facts = record.facts
    if facts is None:
        return
    if usage is not None:
        metrics.tokens_used(base, usage, ex)
    metrics.finished(base, facts.ordered_finish_reasons())
    if not record.call.stream or record.status is None or not 200 <= record.status < 300:
        return
    if usage is None and record.outcome == "success":
        # Only a stream that ended whole says it had no usage to give: one closed early
        # or cut off may have asked for usage and not reached it.
        metrics.child(metrics.stream_usage_missing, *base).inc()
    first, last = facts.first_token_at, facts.last_token_at
    if first is None:
        return
    metrics.child(metrics.ttft, *base).observe(max(0.0, first - record.started_at), ex)
    if usage is not None and usage.output and usage.output > 1 and last is not None:
        metrics.child(metrics.tpot, *base).observe(max(0.0, last - first) / (usage.output - 1), ex)


def _otel(
    otel: OtelMetrics, call: LLMCall, provider: str, record: CallRecord, usage: Usage | None
) -> None:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": call.operation,
        "gen_ai.provider.name": provider,
        "server.address": call.host,
        "server.port": call.port,
    }
    if call.model:
        attrs["gen_ai.request.model"] = call.model
    facts = record.facts
    if facts is not None and facts.response_model:
        attrs["gen_ai.response.model"] = facts.response_model
    if record.error_type is not None:
        attrs["error.type"] = record.error_type
    otel.duration.record(
        max(0.0, record.ended_at - record.started_at),
        attrs | {"llmtap.cache.result": record.cache},
    )
    if record.cache == "hit" or facts is None:
        return
    if usage is not None:
        for token_type, count in (("input", usage.input), ("output", usage.output)):
            if count is not None:
                otel.tokens.record(count, attrs | {"gen_ai.token.type": token_type})
    # The conventions' definitions, not the Prometheus ones: the first chunk, content or
    # not, and one observation per chunk after it (the gap since the one before).
    first = facts.first_chunk_at
    if call.stream and first is not None:
        otel.ttfc.record(max(0.0, first - record.started_at), attrs)
        for before, at in pairwise(facts.chunk_times or ()):
            otel.tpoc.record(max(0.0, at - before), attrs)


def tracer_for(tracer_provider: Any) -> trace.Tracer:
    """The llmtap tracer; ``None`` means the global provider (resolved lazily by the API)."""
    return trace.get_tracer("llmtap", _version.__version__, tracer_provider=tracer_provider)
