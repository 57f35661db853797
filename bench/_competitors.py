"""3. The openai SDK call instrumented by OpenTelemetry's openai-v2, by OpenLLMetry, and by llmtap.

Instrumentations patch the openai SDK process-wide, so each runs in its own child
process, in its own virtualenv (their pins conflict), over the same ``MockTransport``.
openai-v2's ``uninstrument()`` restores the SDK, so its child switches it on for its
own turns and interleaves bare and instrumented rounds, as llmtap's child does.
OpenLLMetry's leaves its wrappers in place: its child times the bare SDK first,
then instruments for good. Each child times calls and 200-chunk streams (scenario 4
against the instrumentations), runs twice, alternating, and the median is kept.
llmtap's child also times the lower bound (``bench._floor.FloorTransport``) in the
same interleaved comparison of calls.

    python -m bench._competitors child NAME ROUNDS CALLS   # what the parent runs

Virtualenvs (``bench/setup_competitors.sh`` makes them): ``$BENCH_OTELV2_PYTHON``
(default ``/tmp/bench-otelv2/bin/python``), ``$BENCH_OPENLLMETRY_PYTHON`` (default
``/tmp/bench-openllmetry/bin/python``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = {
    "otel_openai_v2": ("BENCH_OTELV2_PYTHON", "/tmp/bench-otelv2/bin/python"),
    "openllmetry": ("BENCH_OPENLLMETRY_PYTHON", "/tmp/bench-openllmetry/bin/python"),
}


SDK_TARGET = 1.07  # llmtap over the bare SDK
VS_V2_TARGET = 0.95  # llmtap over the SDK instrumented by openai-v2
OURS = "llmtap"  # runs in this interpreter, not a competitor's virtualenv
LOWER = "lower_bound"  # FloorTransport, timed in llmtap's child as a third variant
LOWER_NOTE = (
    "lower bound, no llmtap: parse request and answer, the same span (SDK, batch, null "
    "exporter) and Prometheus work as llmtap, nothing else; calls only, interleaved with "
    "llmtap's; if it misses the target, no transport on these libraries can meet it here"
)


def competitors(rep: Any, quick: bool) -> None:
    from bench._report import Row

    rounds, calls = (3, 10) if quick else (21, 100)
    repeats = 1 if quick else 2
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in (OURS, *PYTHONS)}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for name in runs:
            if name in errors:
                continue
            if quick and name != OURS:
                errors[name] = "skipped in --quick (child start-up dominates); run the full bench"
                continue
            python = sys.executable
            if name in PYTHONS:
                env_var, default = PYTHONS[name]
                python = os.environ.get(env_var, default)
                if not Path(python).exists():
                    errors[name] = (
                        f"no virtualenv at {python} "
                        f"(run bench/setup_competitors.sh or set ${env_var})"
                    )
                    continue
            cmd = [python, "-m", "bench._competitors", "child", name, str(rounds), str(calls)]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                errors[name] = (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]
                continue
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for name, results in runs.items():
        variant = f"sdk+{name}"
        if not results:
            rep.na("vs-otel", "httpx2", variant, errors.get(name, "did not run"))
            continue
        # llmtap's child also timed the lower bound, against the same bare SDK rounds.
        measured = {name: ("ratio", "variant_us", results[0]["note"])}
        if name == OURS:
            measured[LOWER] = ("lb_ratio", "lb_us", LOWER_NOTE)
        for shown, (ratio_field, us_field, note) in measured.items():
            rep.add(
                Row(
                    "vs-otel",
                    "httpx2",
                    f"sdk+{shown}",
                    "bare openai SDK",
                    _median(results, ratio_field),
                    variant_us=_median(results, us_field),
                    baseline_us=_median(results, "baseline_us"),
                    target=SDK_TARGET if name == OURS else None,
                    note=note,
                )
            )
        _stream_rows(rep, variant, results)
    _vs_v2_rows(rep, runs, errors)


def _median(results: list[dict[str, Any]], field: str) -> float:
    return float(statistics.median(r[field] for r in results))


def _vs_v2_rows(rep: Any, runs: dict[str, list[dict[str, Any]]], errors: dict[str, str]) -> None:
    """llmtap and the lower bound against openai-v2: each one's ratio over its own bare
    SDK, divided by openai-v2's over its bare SDK (they run in different processes and
    virtualenvs, so their microseconds are not compared directly)."""
    from bench._report import Row

    variants = {OURS: "ratio", LOWER: "lb_ratio"}
    v2 = runs["otel_openai_v2"]
    if not v2 or not runs[OURS]:
        missing = "otel_openai_v2" if not v2 else OURS
        why = f"sdk+{missing} did not run: " + errors.get(missing, "no result")
        for name in variants:
            rep.na("vs-otel", "httpx2", f"sdk+{name} vs sdk+otel_openai_v2", why)
        return
    v2_ratio = _median(v2, "ratio")
    for name, field in variants.items():
        note = (
            f"ratio over its own bare SDK ({_median(runs[OURS], field):.3f}x) divided by "
            f"sdk+otel_openai_v2's over its own ({v2_ratio:.3f}x, in its own process)"
        )
        if name == LOWER:
            note += "; if the lower bound misses, no transport on these libraries can pass"
        rep.add(
            Row(
                "vs-otel",
                "httpx2",
                f"sdk+{name}",
                "sdk+otel_openai_v2",
                _median(runs[OURS], field) / v2_ratio,
                target=VS_V2_TARGET,
                note=note,
            )
        )


def _stream_rows(rep: Any, variant: str, results: list[dict[str, Any]]) -> None:
    """Scenario 4 against the instrumentations: the same 200-chunk stream, per chunk and
    to the first chunk, each instrumentation over its own bare SDK."""
    from bench._report import Row

    def median(field: str) -> float:
        return statistics.median(r[field] for r in results)

    note = results[0]["note"] + "; 200-chunk SSE, MockTransport"
    rep.add(
        Row(
            "streaming",
            "httpx2",
            f"{variant} per chunk",
            "bare openai SDK",
            median("stream_ratio"),
            variant_us=median("stream_variant_us"),
            baseline_us=median("stream_baseline_us"),
            note=note,
        )
    )
    ttfc, base = median("ttfc_variant_us"), median("ttfc_baseline_us")
    rep.add(
        Row(
            "streaming",
            "httpx2",
            f"{variant} first chunk",
            "bare openai SDK",
            ttfc / base,
            variant_us=ttfc,
            baseline_us=base,
            note="time to first chunk (medians)",
        )
    )


# -- the child --------------------------------------------------------------------------


def _child(name: str, rounds: int, calls: int) -> dict[str, Any]:
    """Time the bare and the instrumented SDK: calls, and 200-chunk streams (scenario 4)."""
    import httpx2

    from bench._fixtures import Canned, Telemetry, openai_client, sdk_tracer_provider, tap
    from bench._harness import Plan

    plans = (
        Plan(rounds=rounds, calls=calls, warmup=2),
        Plan(rounds=max(3, rounds // 2), calls=max(2, calls // 20), warmup=1),
    )
    canned = Canned()
    plain = openai_client(httpx2.Client(transport=httpx2.MockTransport(canned)))
    if name == OURS:
        from bench._floor import FloorTransport, SpanWork

        tel = Telemetry()
        if tel.on is None:
            raise SystemExit(tel.why_not)
        tapped = openai_client(
            httpx2.Client(transport=tap("httpx2", httpx2.MockTransport(canned), **tel.on))
        )
        work = SpanWork.like_llmtap("httpx2", httpx2.MockTransport(canned), tel.provider)
        floor = FloorTransport("httpx2", httpx2.MockTransport(canned), work=work)
        bounded = openai_client(httpx2.Client(transport=floor))
        note = "llmtap: cache off, spans (SDK, batch, null exporter) + Prometheus metrics"
        sdks = {"plain": plain, "x": tapped}
        timed = _timed(sdks, plans, {}, calls_only={"lb": bounded})
        tel.shutdown()
        return _summary(timed, paired=True, note=f"{note}; interleaved")
    from importlib.metadata import version

    from opentelemetry.sdk.metrics import MeterProvider

    provider = sdk_tracer_provider()
    if name == "otel_openai_v2":
        # openai-v2's uninstrument() restores the SDK's methods: switch it on for its own
        # turns only, so bare and instrumented interleave like llmtap's child.
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        instrumentor, meter = OpenAIInstrumentor(), MeterProvider()
        hooks = {
            "x": (
                lambda: instrumentor.instrument(tracer_provider=provider, meter_provider=meter),
                instrumentor.uninstrument,
            )
        }
        dist = "opentelemetry-instrumentation-openai-v2"
        note = f"{dist} {version(dist)}: spans (SDK, batch, null exporter) + SDK metrics"
        result = _interleaved({"plain": plain, "x": plain}, plans, hooks, f"{note}; interleaved")
        provider.shutdown()
        return result
    # OpenLLMetry's uninstrument() leaves its wrappers in place: bare first, then for good.
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetry

    bare = _timed({"plain": plain}, plans, {})
    OpenLLMetry().instrument(tracer_provider=provider, meter_provider=MeterProvider())
    instrumented = _timed({"x": plain}, plans, {})
    provider.shutdown()
    dist = "opentelemetry-instrumentation-openai"
    note = f"OpenLLMetry {dist} {version(dist)}: spans (SDK, batch, null exporter) + SDK metrics"
    merged = {part: {**bare[part], **instrumented[part]} for part in bare}
    return _summary(merged, paired=False, note=f"{note}; bare then instrumented")


def _timed(
    sdks: dict[str, Any],
    plans: Any,
    hooks: dict[str, Any],
    calls_only: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Samples per variant: ``calls``, ``streams`` and each stream's time to first chunk.
    ``calls_only`` variants join the calls' comparison only (the lower bound forwards
    streams untouched: there is nothing of its to time there)."""
    import time

    from bench._fixtures import STREAM_CHUNKS, chat_body
    from bench._harness import compare

    body = chat_body()
    stream_body = chat_body(stream=True, stream_options={"include_usage": True})
    first: dict[str, list[float]] = {k: [] for k in sdks}

    def calls(sdk: Any) -> Any:
        def run(n: int) -> None:
            for _ in range(n):
                sdk.chat.completions.create(**body)

        return run

    def streams(sdk: Any, name: str) -> Any:
        def run(n: int) -> None:
            for _ in range(n):
                start = time.perf_counter_ns()
                count = 0
                for _chunk in sdk.chat.completions.create(**stream_body):
                    if count == 0:
                        first[name].append(time.perf_counter_ns() - start)
                    count += 1
                assert count == STREAM_CHUNKS + 2, count

        return run

    call_plan, stream_plan = plans
    return {
        "calls": compare(
            {k: calls(v) for k, v in {**sdks, **(calls_only or {})}.items()}, call_plan, hooks
        ),
        "streams": compare({k: streams(v, k) for k, v in sdks.items()}, stream_plan, hooks),
        "first": first,
    }


def _interleaved(
    sdks: dict[str, Any], plans: Any, hooks: dict[str, Any], note: str
) -> dict[str, Any]:
    return _summary(_timed(sdks, plans, hooks), paired=True, note=note)


def _summary(timed: dict[str, Any], paired: bool, note: str) -> dict[str, Any]:
    """Ratios of ``x`` over ``plain``: paired by round when interleaved, else of medians."""
    from bench._fixtures import STREAM_CHUNKS
    from bench._harness import ratio

    def rel(part: str, variant: str = "x") -> float:
        samples = timed[part]
        if paired:
            return ratio(samples, variant, "plain")
        return float(samples[variant].median_us / samples["plain"].median_us)

    calls, streams, first = timed["calls"], timed["streams"], timed["first"]
    per_chunk = STREAM_CHUNKS + 2
    lower = {}
    if "lb" in calls:
        lower = {"lb_ratio": rel("calls", "lb"), "lb_us": calls["lb"].median_us}
    return {
        **lower,
        "ratio": rel("calls"),
        "variant_us": calls["x"].median_us,
        "baseline_us": calls["plain"].median_us,
        "stream_ratio": rel("streams"),
        "stream_variant_us": streams["x"].median_us / per_chunk,
        "stream_baseline_us": streams["plain"].median_us / per_chunk,
        "ttfc_variant_us": statistics.median(first["x"]) / 1000,
        "ttfc_baseline_us": statistics.median(first["plain"]) / 1000,
        "note": note,
    }


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        print(json.dumps(_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        print(__doc__)
        sys.exit(2)
