"""Send llmtap's GenAI spans to an OpenTelemetry collector over OTLP/HTTP.

Run it (a collector listening on 4318, e.g. the OpenTelemetry Collector, Jaeger,
Tempo or Grafana Alloy):

    pip install 'llmtap[demo]' opentelemetry-exporter-otlp-proto-http
    export OPENAI_API_KEY=sk-...
    export OPENAI_BASE_URL=http://127.0.0.1:8000/v1            # optional
    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318   # the default
    python examples/otlp_traces.py

Each intercepted call is one CLIENT span named ``chat <model>`` with the
``gen_ai.*`` attributes of the OpenTelemetry GenAI semantic conventions (and
``llmtap.cache.result``). Prompts and answers are not recorded unless
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for them.
"""

from __future__ import annotations

import os

import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from llmtap.httpx2 import Transport

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


def main() -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "llmtap-example"}))
    # OTLPSpanExporter reads OTEL_EXPORTER_OTLP_ENDPOINT / _TRACES_ENDPOINT and _HEADERS.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    transport = Transport(tracer_provider=provider)
    try:
        with openai.OpenAI(http_client=openai.DefaultHttpxClient(transport=transport)) as client:
            for attempt in (1, 2):
                completion = client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "What is a span?"}],
                    seed=2,
                )
                print(f"call {attempt}: id={completion.id}")
            stream = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "And a trace?"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = sum(1 for _ in stream)
            print(f"stream: {chunks} chunks")
    finally:
        provider.shutdown()  # flushes the batch to the collector
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318")
    print(f"exported 3 spans to {endpoint}/v1/traces")


if __name__ == "__main__":
    main()
