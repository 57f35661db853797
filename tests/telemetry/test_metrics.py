"""Prometheus metrics (TELEMETRY.md table) and the optional OTel semconv metrics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from telemetry_rig import BASE_URL, Rig, make_rig

import llmtap
import llmtap.httpx2
from llmtap.telemetry import metrics as metrics_module

MESSAGES = [{"role": "user", "content": " ".join(["a question about prometheus metrics"] * 6)}]


@pytest.fixture
def rig() -> Rig:
    return make_rig()


def sdk(rig: Rig, **kwargs: Any) -> openai.OpenAI:
    client = httpx2.Client(transport=rig.transport(**kwargs))
    return openai.OpenAI(api_key="sk-test", base_url=BASE_URL, http_client=client, max_retries=0)


def workload(rig: Rig) -> tuple[int, int]:
    """A mixed workload; returns the input and output tokens upstream reported."""
    api = sdk(rig)
    inputs = outputs = 0
    answer = api.chat.completions.create(model="gpt-4o-mini", seed=1, messages=MESSAGES)
    assert answer.usage is not None
    inputs += answer.usage.prompt_tokens
    outputs += answer.usage.completion_tokens
    chunks = list(
        api.chat.completions.create(
            model="o4-mini",
            seed=2,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
            messages=MESSAGES,
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    inputs += usage.prompt_tokens
    outputs += usage.completion_tokens
    emb = api.embeddings.create(model="text-embedding-3-small", input="hi", extra_body={"seed": 3})
    inputs += emb.usage.prompt_tokens
    return inputs, outputs


def test_tokens_equal_reported_usage(rig: Rig) -> None:
    inputs, outputs = workload(rig)
    assert rig.value("llmtap_tokens_total", token_type="input") == inputs
    assert rig.value("llmtap_tokens_total", token_type="output") == outputs
    assert rig.value("llmtap_tokens_total") == inputs + outputs
    assert rig.value("llmtap_request_tokens_sum") == inputs + outputs
    assert rig.value("llmtap_requests_total", outcome="success", cache="miss") == 3
    assert rig.value("llmtap_requests_total", operation="embeddings") == 1
    assert rig.value("llmtap_cached_input_tokens_total") > 0
    assert rig.value("llmtap_reasoning_output_tokens_total", model="o4-mini") > 0
    assert rig.value("llmtap_finish_reasons_total", finish_reason="stop") == 3
    assert rig.value("llmtap_time_to_first_token_seconds_count", model="o4-mini") == 1
    assert rig.value("llmtap_time_per_output_token_seconds_count", model="o4-mini") == 1
    assert rig.value("llmtap_time_to_first_token_seconds_count", model="gpt-4o-mini") == 0
    assert rig.value("llmtap_stream_usage_missing_total") == 0
    assert rig.value("llmtap_requests_in_flight") == 0


def test_hits_count_saved_tokens_not_tokens(rig: Rig) -> None:
    inputs, outputs = workload(rig)
    again = workload(rig)
    assert again == (inputs, outputs)
    assert rig.value("llmtap_tokens_total") == inputs + outputs  # unchanged by hits
    assert rig.value("llmtap_cache_saved_tokens_total", token_type="input") == inputs
    assert rig.value("llmtap_cache_saved_tokens_total", token_type="output") == outputs
    assert rig.value("llmtap_requests_total", cache="hit") == 3
    assert rig.value("llmtap_request_duration_seconds_count", cache="hit") == 3
    assert rig.value("llmtap_finish_reasons_total") == 3  # hits are not billed work
    assert rig.value("llmtap_time_to_first_token_seconds_count") == 1


def test_exposition_names_and_no_created(rig: Rig) -> None:
    workload(rig)
    list(sdk(rig).chat.completions.create(model="gpt-4o-mini", stream=True, messages=MESSAGES))
    text = generate_latest(rig.registry).decode()
    assert "_created" not in text
    for name, kind in [
        ("llmtap_requests_total", "counter"),
        ("llmtap_request_errors_total", "counter"),
        ("llmtap_request_duration_seconds", "histogram"),
        ("llmtap_time_to_first_token_seconds", "histogram"),
        ("llmtap_time_per_output_token_seconds", "histogram"),
        ("llmtap_tokens_total", "counter"),
        ("llmtap_cached_input_tokens_total", "counter"),
        ("llmtap_reasoning_output_tokens_total", "counter"),
        ("llmtap_request_tokens", "histogram"),
        ("llmtap_finish_reasons_total", "counter"),
        ("llmtap_requests_in_flight", "gauge"),
        ("llmtap_stream_usage_missing_total", "counter"),
        ("llmtap_cache_saved_tokens_total", "counter"),
        ("llmtap_cache_errors_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}" in text, name
    assert rig.value("llmtap_stream_usage_missing_total", model="gpt-4o-mini") == 1
    families = {f.name: f for f in rig.registry.collect()}
    duration = families["llmtap_request_duration_seconds"]
    bounds = sorted({float(s.labels["le"]) for s in duration.samples if "le" in s.labels})
    assert bounds[:-1] == list(metrics_module.DURATION_BUCKETS)
    sample = next(s for s in families["llmtap_requests"].samples)
    assert set(sample.labels) == {"operation", "provider", "model", "stream", "outcome", "cache"}


def test_promtool_check_metrics(rig: Rig) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (apt-get install prometheus)")
        pytest.skip("promtool not installed")
    rig.fake.fail_next(429)
    with pytest.raises(openai.RateLimitError):
        sdk(rig).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    workload(rig)
    workload(rig)
    exposition = generate_latest(rig.registry)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_model_cap(rig: Rig) -> None:
    with rig.client() as client:
        for i in range(metrics_module.MAX_MODELS + 5):
            client.post("/embeddings", json={"model": f"m{i}", "input": "x"})
    models = {
        s.labels["model"]
        for f in rig.registry.collect()
        if f.name == "llmtap_requests"
        for s in f.samples
    }
    assert len(models) == metrics_module.MAX_MODELS + 1
    assert rig.value("llmtap_requests_total", model="other") == 5
    assert rig.value("llmtap_requests_total", model="m0") == 1


def test_exemplars_carry_sampled_trace_id(rig: Rig) -> None:
    sdk(rig).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    trace_id = format(rig.span().context.trace_id, "032x")
    text = generate_openmetrics(rig.registry).decode()
    assert f'# {{trace_id="{trace_id}"}}' in text


def test_no_exemplar_when_not_sampled(rig: Rig) -> None:
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    sdk(rig, tracer_provider=unsampled).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert rig.value("llmtap_requests_total") == 1
    assert "trace_id" not in generate_openmetrics(rig.registry).decode()


def test_one_metrics_per_registry() -> None:
    registry = CollectorRegistry()
    llmtap.Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated"):
        llmtap.Metrics(registry)
    llmtap.Metrics(registry, namespace="other")  # another namespace is another set


def test_default_is_shared() -> None:
    first = llmtap.Metrics.default()
    assert llmtap.Metrics.default() is first
    assert first.registry is REGISTRY
    for _ in range(3):  # no "Duplicated timeseries"
        llmtap.httpx2.Transport(transport=httpx2.MockTransport(lambda r: httpx2.Response(200)))


def test_cache_errors_counted_with_the_labels_of_the_call(rig: Rig) -> None:
    class Broken(llmtap.MemoryCache):
        def get(self, key: str) -> bytes | None:
            raise OSError("disk gone")

        def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
            raise OSError("disk full")

        def iter_entries(self) -> Iterator[tuple[str, bytes]]:
            raise OSError("disk gone")

    broken = Broken()
    with rig.client(cache=broken, provider="openai") as client:
        response = client.post("/embeddings", json={"model": "e", "input": "x", "seed": 1})
    assert response.status_code == 200
    with rig.client(cache=broken, provider="openai", mode="replay") as client:
        # a replay miss reads the store, then lists it to name the nearest entry
        response = client.post("/embeddings", json={"model": "e", "input": "y", "seed": 1})
    assert response.status_code == 404
    # Every llmtap metric carries operation, provider and model (TELEMETRY.md), so a
    # store outage shows up under the same dashboard filters as the calls it hit.
    call = {"operation": "embeddings", "provider": "openai", "model": "e", "backend": "memory"}
    assert rig.value("llmtap_cache_errors_total", **call, op="get") == 3  # get, get, scan
    assert rig.value("llmtap_cache_errors_total", **call, op="set") == 1
    ops = {
        s.labels["op"]
        for family in rig.registry.collect()
        for s in family.samples
        if s.name == "llmtap_cache_errors_total"
    }
    assert ops == {"get", "set"}  # TELEMETRY.md's two values, whatever failed


def test_no_metrics() -> None:
    transport = llmtap.httpx2.Transport(
        transport=httpx2.MockTransport(lambda r: httpx2.Response(200)), metrics=None
    )
    with httpx2.Client(transport=transport) as client:
        client.post("https://api.openai.com/v1/embeddings", json={"model": "e", "input": "x"})


def test_otel_meter_provider(rig: Rig) -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    api = sdk(rig, meter_provider=meters)
    chunks = list(
        api.chat.completions.create(
            model="gpt-4o-mini",
            stream=True,
            stream_options={"include_usage": True},
            messages=MESSAGES,
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    assert set(points) == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    }
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.explicit_bounds[0] == 0.01 and duration.explicit_bounds[-1] == 81.92
    assert duration.attributes["gen_ai.operation.name"] == "chat"
    assert duration.attributes["gen_ai.provider.name"] == "openai"
    tokens = {p.attributes["gen_ai.token.type"]: p for p in points["gen_ai.client.token.usage"]}
    assert tokens["input"].sum == usage.prompt_tokens
    assert tokens["output"].sum == usage.completion_tokens
    assert tokens["input"].explicit_bounds[-1] == 67108864


def _slow_stream(gaps: list[float], separators: tuple[str, str]) -> Any:
    """A MockTransport handler: a chat stream whose first chunk (the assistant role, no
    text) comes at once, then one text chunk after each of ``gaps`` seconds."""

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        data = {"id": "c1", "model": "gpt-4o-mini", "choices": [choice], "usage": None}
        return b"data: " + json.dumps(data, separators=separators).encode() + b"\n\n"

    def body() -> Iterator[bytes]:
        yield event({"role": "assistant", "content": ""})
        for i, gap in enumerate(gaps):
            time.sleep(gap)
            yield event({"content": f"w{i} "})
        yield event({}, "stop") + b"data: [DONE]\n\n"

    def handler(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream"}
        return httpx2.Response(200, headers=headers, content=body())

    return handler


@pytest.mark.parametrize(
    "separators", [(",", ":"), (", ", ": ")], ids=["compact-like-openai", "spaced"]
)
def test_otel_chunk_timings_follow_the_conventions(rig: Rig, separators: tuple[str, str]) -> None:
    """time_to_first_chunk ends at the first chunk even when it has no text (the
    Prometheus time to first token waits for text), and time_per_output_chunk records
    one gap per chunk after the first, as the GenAI conventions define them. Compact
    chunks (OpenAI's own) take the unparsed fast path; spaced ones are parsed."""
    reader = InMemoryMetricReader()
    gaps = [0.3, 0.05, 0.05, 0.05]
    inner = httpx2.MockTransport(_slow_stream(gaps, separators))
    with rig.client(inner, cache=None, meter_provider=MeterProvider([reader])) as client:
        payload = {"model": "gpt-4o-mini", "stream": True, "messages": MESSAGES}
        with client.stream("POST", "/chat/completions", json=payload) as response:
            for _ in response.iter_bytes():
                pass
    points: dict[str, Any] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                (points[metric.name],) = metric.data.data_points
    ttfc, tpoc = (
        points[f"gen_ai.client.operation.{n}"]
        for n in ("time_to_first_chunk", "time_per_output_chunk")
    )
    assert ttfc.count == 1 and ttfc.sum < 0.2  # the role chunk came at once
    assert rig.value("llmtap_time_to_first_token_seconds_sum") >= 0.3  # text came 0.3 s later
    # Chunks: the role, four texts, the finish (in the [DONE] body): five gaps.
    assert tpoc.count == len(gaps) + 1
    assert sum(gaps) - 0.01 <= tpoc.sum < sum(gaps) + 0.2
    assert tpoc.max >= gaps[0] - 0.01
    attrs = rig.span().attributes or {}
    assert attrs["gen_ai.response.time_to_first_chunk"] < 0.2
