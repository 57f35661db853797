"""Spans (OpenTelemetry GenAI conventions) and metrics (Prometheus), behind the core's seam."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from llmtap._core.observe import NullTelemetry, Telemetry
from llmtap.telemetry.content import capture_mode
from llmtap.telemetry.metrics import Metrics
from llmtap.telemetry.observation import SpanTelemetry, tracer_for
from llmtap.telemetry.otel_metrics import OtelMetrics

__all__ = ["Metrics", "build_telemetry"]


def build_telemetry(
    *,
    tracer_provider: Any,
    metrics: Any,
    meter_provider: Any,
    capture_content: bool | str | None,
    provider: str | None,
) -> Telemetry:
    """The telemetry one transport reports to. ``metrics`` is a ``Metrics``, ``None``, or
    the default marker (``...``) meaning ``Metrics.default()``."""
    if metrics is ...:
        metrics = Metrics.default()
    elif metrics is not None and not isinstance(metrics, Metrics):
        raise TypeError(f"metrics must be a llmtap.Metrics or None, got {metrics!r}")
    if provider is not None and (not isinstance(provider, str) or not provider):
        raise TypeError(f"provider must be a non-empty str or None, got {provider!r}")
    if (
        metrics is None
        and meter_provider is None
        and isinstance(tracer_provider, trace.NoOpTracerProvider)
    ):
        return NullTelemetry()  # nothing to report: skip the per-call telemetry work
    return SpanTelemetry(
        tracer_for(tracer_provider),
        metrics,
        OtelMetrics(meter_provider) if meter_provider is not None else None,
        capture_mode(capture_content),
        provider,
    )
