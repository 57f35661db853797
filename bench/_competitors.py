"""3. The openai SDK call instrumented by OpenTelemetry's openai-v2, by OpenLLMetry, and by llmtap.

Instrumentations patch the openai SDK process-wide (OpenLLMetry's ``uninstrument()``
even leaves its wrappers in place), so each runs in its own child process, in its
own virtualenv (their pins conflict): there it times the bare SDK first, then
instruments and times the instrumented SDK, over the same ``MockTransport``.
That A-then-B order is forced by the patching; llmtap's child times bare and llmtap
interleaved. Each child runs twice, alternating, and the median ratio is kept.

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


def competitors(rep: Any, quick: bool) -> None:
    from bench._report import Row

    rounds, calls = (3, 10) if quick else (21, 100)
    repeats = 1 if quick else 2
    runs: dict[str, list[dict[str, Any]]] = {"llmtap": [], **{k: [] for k in PYTHONS}}
    errors: dict[str, str] = {}
    for _ in range(repeats):
        for name in runs:
            if name in errors:
                continue
            if quick and name != "llmtap":
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
        value = statistics.median(r["ratio"] for r in results)
        rep.add(
            Row(
                "vs-otel",
                "httpx2",
                variant,
                "bare openai SDK",
                value,
                variant_us=statistics.median(r["variant_us"] for r in results),
                baseline_us=statistics.median(r["baseline_us"] for r in results),
                target=1.07 if name == "llmtap" else None,
                note=results[0]["note"],
            )
        )


# -- the child --------------------------------------------------------------------------


def _child(name: str, rounds: int, calls: int) -> dict[str, Any]:
    import httpx2

    from bench._fixtures import (
        Canned,
        Telemetry,
        chat_body,
        openai_client,
        sdk_tracer_provider,
        tap,
    )
    from bench._harness import Plan, compare, ratio

    plan = Plan(rounds=rounds, calls=calls, warmup=2)
    canned = Canned()
    body = chat_body()

    def block(sdk: Any) -> Any:
        def run(n: int) -> None:
            for _ in range(n):
                sdk.chat.completions.create(**body)

        return run

    plain = openai_client(httpx2.Client(transport=httpx2.MockTransport(canned)))
    if name == "llmtap":
        tel = Telemetry()
        if tel.on is None:
            raise SystemExit(tel.why_not)
        tapped = openai_client(
            httpx2.Client(transport=tap("httpx2", httpx2.MockTransport(canned), **tel.on))
        )
        s = compare({"plain": block(plain), "x": block(tapped)}, plan)
        note = (
            "llmtap: cache off, spans (SDK, batch, null exporter) + Prometheus metrics; interleaved"
        )
        return {
            "ratio": ratio(s, "x", "plain"),
            "variant_us": s["x"].median_us,
            "baseline_us": s["plain"].median_us,
            "note": note,
        }
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
        s = compare({"plain": block(plain), "x": block(plain)}, plan, hooks)
        provider.shutdown()
        dist = "opentelemetry-instrumentation-openai-v2"
        return {
            "ratio": ratio(s, "x", "plain"),
            "variant_us": s["x"].median_us,
            "baseline_us": s["plain"].median_us,
            "note": f"{dist} {version(dist)}: spans (SDK, batch, null exporter) + SDK metrics; "
            "instrumented for its own turns only, interleaved",
        }
    # OpenLLMetry's uninstrument() leaves its wrappers in place: bare first, then for good.
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetry

    before = compare({"plain": block(plain)}, plan)
    OpenLLMetry().instrument(tracer_provider=provider, meter_provider=MeterProvider())
    dist = "opentelemetry-instrumentation-openai"
    label = f"OpenLLMetry {dist} {version(dist)}"
    after = compare({"x": block(plain)}, plan)
    provider.shutdown()
    base, inst = before["plain"].median_us, after["x"].median_us
    note = f"{label}: spans (SDK, batch, null exporter) + SDK metrics; bare then instrumented"
    return {"ratio": inst / base, "variant_us": inst, "baseline_us": base, "note": note}


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        print(json.dumps(_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        print(__doc__)
        sys.exit(2)
