"""The semconv GenAI client metrics, for OTLP pipelines (``meter_provider=``).

Instrument names, units and advisory buckets follow the GenAI conventions so
vendor dashboards built on them work unchanged; Prometheus users get the
``llmtap_*`` metrics instead (metrics.py).
"""

from __future__ import annotations

from typing import Any

from llmtap import _version

DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]  # 0.01 ... 81.92
TOKEN_BUCKETS = [4**i for i in range(14)]  # 1, 4, 16 ... 67108864
TTFC_BUCKETS = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
]  # fmt: skip
TPOC_BUCKETS = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
]  # fmt: skip


class OtelMetrics:
    """Four histograms on one meter."""

    def __init__(self, meter_provider: Any) -> None:
        meter = meter_provider.get_meter("llmtap", _version.__version__)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed answer.",
            explicit_bucket_boundaries_advisory=TTFC_BUCKETS,
        )
        self.tpoc = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            unit="s",
            description="Time per output chunk after the first one of a streamed answer.",
            explicit_bucket_boundaries_advisory=TPOC_BUCKETS,
        )
