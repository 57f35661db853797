"""The demo's telemetry: compact console spans, a live ``/metrics``, and figures read back.

The demo's summary is computed from the Prometheus registry the transport
reports to, so what it prints is what a Grafana panel would show.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from llmtap.telemetry import Metrics


def _compact(span: Any) -> str:
    attrs = span.attributes or {}
    duration_ms = (span.end_time - span.start_time) / 1e6 if span.end_time else 0.0
    parts = [f"  span  {span.name:<22s} {duration_ms:7.1f} ms"]
    parts.append(f"cache={attrs.get('llmtap.cache.result', '-')}")
    if "gen_ai.usage.input_tokens" in attrs:
        parts.append(
            f"tokens in/out={attrs['gen_ai.usage.input_tokens']}/"
            f"{attrs.get('gen_ai.usage.output_tokens', '?')}"
        )
    if "llmtap.cache.saved.input_tokens" in attrs:
        saved = attrs["llmtap.cache.saved.input_tokens"] + attrs.get(
            "llmtap.cache.saved.output_tokens", 0
        )
        parts.append(f"saved={saved}")
    reasons = attrs.get("gen_ai.response.finish_reasons")
    if reasons:
        parts.append("finish=" + ",".join(reasons))
    if "gen_ai.response.time_to_first_chunk" in attrs:
        parts.append(f"ttfc={attrs['gen_ai.response.time_to_first_chunk'] * 1000:.1f}ms")
    return " ".join(parts) + os.linesep


def console_tracer_provider() -> Any:
    """An OTel SDK tracer provider printing one line per span (the SDK is in the demo extra)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider()
    exporter = ConsoleSpanExporter(out=sys.stdout, formatter=_compact)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@dataclass
class DemoMetrics:
    metrics: Metrics
    registry: CollectorRegistry
    url: str
    shutdown: Callable[[], None]


def serve_metrics(port: int) -> DemoMetrics:
    """A fresh registry served on 127.0.0.1; a busy port falls back to a free one."""
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    try:
        server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError:
        server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    return DemoMetrics(metrics, registry, url, server.shutdown)


def _total(registry: CollectorRegistry, name: str, **match: str) -> float:
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in match.items()):
                total += sample.value
    return total


def summary_lines(registry: CollectorRegistry) -> list[str]:
    """The closing summary, every figure read from the metrics."""
    calls = _total(registry, "llmtap_requests_total")
    by_cache = {
        kind: _total(registry, "llmtap_requests_total", cache=kind)
        for kind in ("hit", "miss", "bypass")
    }
    billed = _total(registry, "llmtap_tokens_total")
    saved = _total(registry, "llmtap_cache_saved_tokens_total")
    errors = _total(registry, "llmtap_request_errors_total")

    def mean_ms(name: str, **match: str) -> str:
        count = _total(registry, f"{name}_count", **match)
        return f"{1000 * _total(registry, f'{name}_sum', **match) / count:.1f} ms" if count else "-"

    latency = ", ".join(
        f"{kind} {mean_ms('llmtap_request_duration_seconds', cache=kind)}" for kind in by_cache
    )
    ratio = f"{by_cache['hit'] / calls:.0%}" if calls else "-"
    return [
        "summary (from llmtap's Prometheus metrics)",
        f"  calls        {calls:.0f} ({errors:.0f} errors)",
        "  cache        " + ", ".join(f"{k} {v:.0f}" for k, v in by_cache.items()),
        f"  hit ratio    {ratio}",
        f"  tokens       {billed:.0f} billed, {saved:.0f} saved by the cache",
        f"  latency      {latency}",
        f"  first token  {mean_ms('llmtap_time_to_first_token_seconds')} (streams from upstream)",
    ]
