"""Prometheus metrics (TELEMETRY.md, "Prometheus metrics"): names, labels and buckets.

Why the collectors sit behind one wrapper collector instead of registering
themselves: prometheus-client adds a ``_created`` series to every counter and
histogram child, and the only switch, ``disable_created_metrics()``, is
process-global (it would change a host application's own metrics). The
wrapper drops those samples from what *our* collectors expose and nothing else.
Under ``PROMETHEUS_MULTIPROC_DIR`` the values live in mmap files and the
application exposes them with ``MultiProcessCollector``, which never emits
``_created``; the in-flight gauge uses ``livesum`` and no label is ever
``remove()``d (unsupported there), which is why the model cap refuses new
values instead of evicting old ones.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from llmtap.telemetry.semconv import Usage

BASE = ("operation", "provider", "model")
DURATION_BUCKETS = (
    0.001, 0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600,
)  # fmt: skip
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 30, 60, 120)
TPOT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5,
)  # fmt: skip
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
FINISH_REASONS = frozenset(
    {"stop", "length", "tool_calls", "content_filter", "function_call", "error"}
)
MAX_MODELS = 50
OTHER = "other"


class _Exposed(Collector):
    """Our collectors, exposed without their ``_created`` samples."""

    def __init__(self, metrics: list[MetricWrapperBase]) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Any]:
        for metric in self._metrics:
            yield from metric.describe()

    def collect(self) -> Iterator[Any]:
        for metric in self._metrics:
            for family in metric.collect():
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
                yield family


class _ModelCap:
    """At most ``limit`` distinct model label values; later ones become ``other``."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, model: str | None) -> str:
        value = model or "unknown"
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
        return value


class Metrics:
    """The Prometheus collectors of llmtap, registered once on ``registry``.

    ``Metrics()`` uses prometheus-client's default ``REGISTRY``; registering two
    ``Metrics`` on one registry raises, so transports share
    :meth:`Metrics.default` (the default for every transport). The model cap is
    per instance, hence per process for the default one.
    """

    _default: ClassVar[Metrics | None] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, registry: CollectorRegistry | None = None, namespace: str = "llmtap"
    ) -> None:
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self.model = _ModelCap(MAX_MODELS)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._endings: dict[tuple[Any, ...], Any] = {}
        self._token_series: dict[tuple[str, str, str], Any] = {}
        self._exemplars = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
        ns = namespace

        def counter(name: str, doc: str, *extra: str) -> Counter:
            return Counter(f"{ns}_{name}", doc, [*BASE, *extra], registry=None)

        def histogram(name: str, doc: str, buckets: Sequence[float], *extra: str) -> Histogram:
            labels = [*BASE, *extra]
            return Histogram(f"{ns}_{name}", doc, labels, buckets=buckets, registry=None)

        self.requests = counter("requests", "Intercepted LLM calls.", "stream", "outcome", "cache")
        self.errors = counter(
            "request_errors", "LLM calls that failed, by error type.", "error_type"
        )
        self.duration = histogram(
            "request_duration_seconds",
            "Time from the request to the end of the answer (the whole stream).",
            DURATION_BUCKETS,
            "stream",
            "cache",
        )
        self.ttft = histogram(
            "time_to_first_token_seconds",
            "Streams: time to the first event with content, a tool call or a refusal.",
            TTFT_BUCKETS,
        )
        self.tpot = histogram(
            "time_per_output_token_seconds",
            "Streams with usage: (last token - first token) / (output tokens - 1).",
            TPOT_BUCKETS,
        )
        self.tokens = counter("tokens", "Billed tokens reported by upstream.", "token_type")
        self.cached_input = counter(
            "cached_input_tokens", "Input tokens read from the provider's prompt cache."
        )
        self.reasoning_output = counter(
            "reasoning_output_tokens", "Output tokens spent on reasoning."
        )
        self.request_tokens = histogram(
            "request_tokens", "Tokens per request, by type.", TOKEN_BUCKETS, "token_type"
        )
        self.finish_reasons = counter(
            "finish_reasons", "Choices by finish reason.", "finish_reason"
        )
        self.in_flight = Gauge(
            f"{ns}_requests_in_flight",
            "LLM calls started and not yet ended.",
            list(BASE),
            registry=None,
            multiprocess_mode="livesum",
        )
        self.stream_usage_missing = counter(
            "stream_usage_missing",
            "Streams that ended without usage (no stream_options.include_usage).",
        )
        self.cache_saved = counter(
            "cache_saved_tokens", "Tokens answered from the llmtap cache.", "token_type"
        )
        self.cache_errors = counter(
            "cache_errors", "Cache store failures; the call went on without the cache.",
            "backend", "op",
        )  # fmt: skip
        collectors: list[MetricWrapperBase] = [
            self.requests, self.errors, self.duration, self.ttft, self.tpot, self.tokens,
            self.cached_input, self.reasoning_output, self.request_tokens,
            self.finish_reasons, self.in_flight, self.stream_usage_missing,
            self.cache_saved, self.cache_errors,
        ]  # fmt: skip
        self.registry.register(_Exposed(collectors))
        if self.registry is REGISTRY and namespace == "llmtap":
            with Metrics._default_lock:
                if Metrics._default is None:
                    Metrics._default = self

    @classmethod
    def default(cls) -> Metrics:
        """The process-wide instance on the default registry, created on first use."""
        with cls._default_lock:
            existing = cls._default
        if existing is not None:
            return existing
        try:
            return cls()
        except ValueError:  # lost a race: another thread registered it first
            if cls._default is None:
                raise
            return cls._default

    # -- recording (called by the telemetry observation) -----------------------

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, cached: ``labels()`` takes a lock and validates the
        values on every call, and one call records up to ten series. Children are never
        removed (see the module docstring), so a cached child never goes stale."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def ending(self, base: tuple[str, str, str], stream: str, outcome: str, cache: str) -> Any:
        """The in-flight, requests and duration children every ended call touches, looked
        up once per label combination instead of three times per call."""
        key = (base, stream, outcome, cache)
        found = self._endings.get(key)
        if found is None:
            found = self._endings[key] = (
                self.child(self.in_flight, *base),
                self.child(self.requests, *base, stream, outcome, cache),
                self.child(self.duration, *base, stream, cache),
            )
        return found

    def exemplar(self, trace_id: int | None) -> dict[str, str] | None:
        if trace_id is None or not self._exemplars:
            return None
        return {"trace_id": format(trace_id, "032x")}

    def tokens_used(self, base: tuple[str, str, str], usage: Usage, ex: Any) -> None:
        series = self._token_series.get(base)
        if series is None:
            series = self._token_series[base] = tuple(
                (self.child(self.tokens, *base, kind), self.child(self.request_tokens, *base, kind))
                for kind in ("input", "output")
            )
        for (total, per_request), count in zip(series, (usage.input, usage.output), strict=True):
            if count is not None:
                total.inc(count)
                per_request.observe(count, ex)
        if usage.cache_read:
            self.child(self.cached_input, *base).inc(usage.cache_read)
        if usage.reasoning:
            self.child(self.reasoning_output, *base).inc(usage.reasoning)

    def finished(self, base: tuple[str, str, str], reasons: Iterable[str]) -> None:
        for reason in reasons:
            label = reason if reason in FINISH_REASONS else OTHER
            self.child(self.finish_reasons, *base, label).inc()

    def saved(self, base: tuple[str, str, str], usage: Usage) -> None:
        for token_type, count in (("input", usage.input), ("output", usage.output)):
            if count:
                self.child(self.cache_saved, *base, token_type).inc(count)
