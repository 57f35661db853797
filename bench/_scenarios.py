"""Scenarios 1 (pass-through), 4 (streaming) and 6 (concurrency)."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench._fixtures import (
    LIBS,
    STREAM_CHUNKS,
    Canned,
    Telemetry,
    chat_body,
    lib,
    openai_client,
    tap,
)
from bench._floor import FloorTransport, SpanWork, floor_block, llmtap_span
from bench._harness import Plan, compare, ratio
from bench._report import Report, Row, ratio_row
from bench._server import loopback

ON_TARGET = 1.55
OFF_TARGET = 1.05
SDK_TARGET = 1.07
STREAM_TARGET = 1.02
CONNECTIONS = 200
AA = "plain again (A/A)"
METER = "llmtap_tel_on+meter_provider"
METER_NOTE = (
    "tel_on plus meter_provider= (OTel SDK metrics, in-memory reader): the semconv "
    "time_per_output_chunk takes one record() per chunk, at the end of the stream"
)
FLOOR = "telemetry floor (no llmtap)"
AA_NOTE = "noise floor: identical work, so any distance from 1.000x is noise"
LOWER = "lower bound: parse + span + metrics (no llmtap)"
LOWER_NOTE = (
    "FloorTransport: parses request and answer, the same span and Prometheus work as "
    "llmtap, nothing else; if this misses the target, no transport on these libraries "
    "can meet it here"
)


def _post_block(client: Any) -> Any:
    body = chat_body()

    def run(n: int) -> None:
        for _ in range(n):
            r = client.post("/chat/completions", json=body)
            r.raise_for_status()

    return run


def _sdk_block(sdk: Any) -> Any:
    body = chat_body()

    def run(n: int) -> None:
        for _ in range(n):
            sdk.chat.completions.create(**body)

    return run


def _variants(lib_name: str, inner: Any, tel: Telemetry) -> dict[str, Any]:
    """Inner transports: plain, plain again (the A/A control: what the noise alone
    makes of identical work), llmtap telemetry off, llmtap telemetry on (when available)."""
    out = {"plain": inner(), AA: inner(), "llmtap_tel_off": tap(lib_name, inner(), **tel.off)}
    if tel.on is not None:
        out["llmtap_tel_on"] = tap(lib_name, inner(), **tel.on)
    return out


def _rows(
    rep: Report,
    scenario: str,
    lib_name: str,
    samples: dict[str, Any],
    base: str,
    targets: dict[str, float],
    tel: Telemetry,
    note: str = "",
) -> None:
    for name, target in {**targets, AA: None}.items():
        if name not in samples:
            rep.na(scenario, lib_name, name, tel.why_not)
            continue
        row_note = AA_NOTE if name == AA else note
        rep.add(ratio_row(scenario, lib_name, samples, name, base, target, row_note))


def _floor_rows(rep: Report, name: str, samples: dict[str, Any], attributes: int) -> None:
    inline = f"the same span ({attributes} attributes) and Prometheus work, inline"
    for variant, base, target, note in (
        (FLOOR, "plain", ON_TARGET, f"{inline}; a lower bound for the telemetry-on target"),
        ("llmtap_tel_on", FLOOR, None, "llmtap's own share of a call with telemetry on"),
    ):
        note = f"MockTransport; {note}"
        rep.add(ratio_row("passthrough", name, samples, variant, base, target, note))


def passthrough(rep: Report, plan: Plan, loop_plan: Plan, tel: Telemetry) -> None:
    """1. A chat call through llmtap (cache off) vs the same client without llmtap."""
    targets = {"llmtap_tel_off": OFF_TARGET, "llmtap_tel_on": ON_TARGET}
    sdk_targets = {"llmtap_tel_off": SDK_TARGET, "llmtap_tel_on": SDK_TARGET}
    canned = Canned()
    for name in LIBS:
        mod = lib(name)
        transports = _variants(name, lambda m=mod: m.MockTransport(canned), tel)
        clients = {
            k: mod.Client(transport=t, base_url="http://fake/v1") for k, t in transports.items()
        }
        blocks = {k: _post_block(c) for k, c in clients.items()}
        if tel.on is not None:
            span = llmtap_span(name, mod.MockTransport(canned))
            blocks[FLOOR] = floor_block(clients["plain"], span, tel.provider)
        samples = compare(blocks, plan)
        _rows(rep, "passthrough", name, samples, "plain", targets, tel, "MockTransport (floor)")
        if FLOOR in samples:
            _floor_rows(rep, name, samples, len(span.attributes))
    with loopback() as url:
        for name in LIBS:
            mod = lib(name)
            transports = _variants(name, mod.HTTPTransport, tel)
            clients = {k: mod.Client(transport=t, base_url=url) for k, t in transports.items()}
            samples = compare({k: _post_block(c) for k, c in clients.items()}, loop_plan)
            _rows(rep, "passthrough", name, samples, "plain", targets, tel, "loopback server")
            for c in clients.values():
                c.close()
        # The openai SDK (3.x is built on httpx2).
        import httpx2

        for where, make in (
            ("MockTransport (floor)", lambda: httpx2.MockTransport(canned)),
            ("loopback server", httpx2.HTTPTransport),
        ):
            base = "http://fake/v1" if where.startswith("Mock") else url
            transports = _variants("httpx2", make, tel)
            if tel.on is not None:
                work = SpanWork.like_llmtap("httpx2", httpx2.MockTransport(canned), tel.provider)
                transports[LOWER] = FloorTransport("httpx2", make(), work=work)
            sdks = {
                k: openai_client(httpx2.Client(transport=t), base) for k, t in transports.items()
            }
            samples = compare({k: _sdk_block(s) for k, s in sdks.items()}, loop_plan)
            _rows(rep, "openai-sdk", "httpx2", samples, "plain", sdk_targets, tel, where)
            if LOWER in samples:
                note = f"{where}; {LOWER_NOTE}"
                row = ratio_row("openai-sdk", "httpx2", samples, LOWER, "plain", SDK_TARGET, note)
                rep.add(row)


def streaming(rep: Report, plan: Plan, tel: Telemetry) -> None:
    """4. A 200-chunk SSE answer through the openai SDK: per chunk and to the first chunk."""
    import httpx2

    canned = Canned()
    transports = _variants("httpx2", lambda: httpx2.MockTransport(canned), tel)
    if tel.on is not None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        meter = MeterProvider([InMemoryMetricReader()])
        mock = httpx2.MockTransport(canned)
        transports[METER] = tap("httpx2", mock, meter_provider=meter, **tel.on)
    sdks = {k: openai_client(httpx2.Client(transport=t)) for k, t in transports.items()}
    body = chat_body(stream=True, stream_options={"include_usage": True})
    first: dict[str, list[float]] = {k: [] for k in sdks}

    def block(sdk: Any, name: str) -> Any:
        def run(n: int) -> None:
            for _ in range(n):
                start = time.perf_counter_ns()
                stream = sdk.chat.completions.create(**body)
                count = 0
                for _chunk in stream:
                    if count == 0:
                        first[name].append(time.perf_counter_ns() - start)
                    count += 1
                assert count == STREAM_CHUNKS + 2, count

        return run

    samples = compare({k: block(s, k) for k, s in sdks.items()}, plan)
    per_chunk = {k: s.median_us / (STREAM_CHUNKS + 2) for k, s in samples.items()}
    for name in ("llmtap_tel_off", "llmtap_tel_on", METER, AA):
        if name not in samples:
            rep.na("streaming", "httpx2", name, tel.why_not)
            continue
        rep.add(
            Row(
                "streaming",
                "httpx2",
                f"{name} per chunk",
                "plain",
                ratio(samples, name, "plain"),
                variant_us=per_chunk[name],
                baseline_us=per_chunk["plain"],
                target=None if name in (AA, METER) else STREAM_TARGET,
                note={AA: AA_NOTE, METER: METER_NOTE}.get(
                    name, "openai SDK, 200-chunk SSE, MockTransport"
                ),
            )
        )
        if name == AA:
            continue
        ttfc = statistics.median(first[name]) / 1000
        ttfc_base = statistics.median(first["plain"]) / 1000
        rep.add(
            Row(
                "streaming",
                "httpx2",
                f"{name} first chunk",
                "plain",
                ttfc / ttfc_base,
                variant_us=ttfc,
                baseline_us=ttfc_base,
                note="time to first chunk (medians)",
            )
        )


def concurrency(rep: Report, rounds: int, streams: int, tel: Telemetry) -> None:
    """6. ``streams`` concurrent async streams against a loopback server: throughput."""
    asyncio.run(_concurrency(rep, rounds, streams, tel))


async def _concurrency(rep: Report, rounds: int, streams: int, tel: Telemetry) -> None:
    with loopback() as url:
        for name in LIBS:
            mod = lib(name)
            # One connection per stream (bench/_server.py deepens the server's backlog).
            limits = mod.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)

            def inner(m: Any = mod, lim: Any = limits) -> Any:
                return m.AsyncHTTPTransport(limits=lim)

            transports = {
                "plain": inner(),
                "llmtap_tel_off": tap(name, inner(), is_async=True, **tel.off),
            }
            if tel.on is not None:
                transports["llmtap_tel_on"] = tap(name, inner(), is_async=True, **tel.on)
            clients = {
                k: mod.AsyncClient(transport=t, base_url=url, timeout=60)
                for k, t in transports.items()
            }

            async def one(client: Any, i: int) -> int:
                body = chat_body(i, stream=True)
                n = 0
                async with client.stream("POST", "/chat/completions", json=body) as r:
                    async for _ in r.aiter_bytes():
                        n += 1
                return n

            wall: dict[str, list[float]] = {k: [] for k in clients}
            order = list(clients)
            for r in range(rounds + 1):  # round 0 warms up (opens the connections)
                for k in order[r % len(order) :] + order[: r % len(order)]:
                    start = time.perf_counter_ns()
                    await asyncio.gather(*(one(clients[k], i) for i in range(streams)))
                    if r:
                        wall[k].append(time.perf_counter_ns() - start)
            for k in clients:
                await clients[k].aclose()
            for k in ("llmtap_tel_off", "llmtap_tel_on"):
                if k not in wall:
                    rep.na("concurrency", name, k, tel.why_not)
                    continue
                # Throughput ratio = plain wall time / llmtap wall time, paired by round.
                paired = sorted(b / a for a, b in zip(wall[k], wall["plain"], strict=True))
                value = statistics.median(paired)
                tput = streams / (statistics.median(wall[k]) / 1e9)
                base = streams / (statistics.median(wall["plain"]) / 1e9)
                spread = f"rounds {paired[0]:.2f}-{paired[-1]:.2f}x"
                rep.add(
                    Row(
                        "concurrency",
                        name,
                        f"{k} throughput",
                        "plain",
                        value,
                        unit="x of plain",
                        note=f"{streams} concurrent streams, {CONNECTIONS} connections, loopback: "
                        f"{tput:.0f} vs {base:.0f} streams/s (medians); {spread}",
                    )
                )
