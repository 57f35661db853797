"""5. Scale: DiskCache hit latency at 1k vs 100k entries, the key of a 1 MB body, RSS flat."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench._fixtures import Canned, Telemetry, chat_body, tap
from bench._harness import Plan, compare, ratio, rss_mb
from bench._report import Report, Row

LARGE_VS_SMALL = 1.5
RSS_GROWTH_MB = 8.0  # "flat": RSS after the last call within this of RSS after the first 10%


def _filled(directory: Path, entries: int, probe: Any) -> Any:
    """A DiskCache holding the probe's entry plus ``entries - 1`` others."""
    from llmtap import DiskCache

    cache = DiskCache(directory)
    client = probe(cache)
    r = client.post("/chat/completions", json=chat_body())
    key, value = r.headers["x-llmtap-cache-key"], cache.get(r.headers["x-llmtap-cache-key"])
    assert value is not None
    with cache.store.transact():
        for i in range(entries - 1):
            cache.set(f"{i:064x}", value)
    assert key is not None
    return client


def scale(rep: Report, quick: bool, tel: Telemetry) -> None:
    import httpx2

    small, large = (1_000, 5_000) if quick else (1_000, 100_000)
    tmp = Path(tempfile.mkdtemp(prefix="llmtap-bench-scale-"))
    canned = Canned()

    def probe(cache: Any) -> Any:
        t = tap("httpx2", httpx2.MockTransport(canned), cache=cache, **tel.off)
        return httpx2.Client(transport=t, base_url="http://fake/v1")

    started = time.monotonic()
    clients = {f"hit_{n}": _filled(tmp / str(n), n, probe) for n in (small, large)}
    fill_s = time.monotonic() - started
    body = chat_body()

    def block(c: Any) -> Any:
        def run(n: int) -> None:
            for _ in range(n):
                r = c.post("/chat/completions", json=body)
                assert r.headers["x-llmtap-cache"] == "hit"

        return run

    plan = Plan(rounds=3 if quick else 31, calls=10 if quick else 200, warmup=1 if quick else 3)
    s = compare({k: block(c) for k, c in clients.items()}, plan)
    rep.add(
        Row(
            "scale",
            "httpx2",
            f"disk hit @{large:,} entries",
            f"@{small:,} entries",
            ratio(s, f"hit_{large}", f"hit_{small}"),
            variant_us=s[f"hit_{large}"].median_us,
            baseline_us=s[f"hit_{small}"].median_us,
            target=LARGE_VS_SMALL,
            note=f"telemetry off; filling took {fill_s:.0f} s",
        )
    )
    _key_1mb(rep, quick)
    _rss(rep, quick, tel)


def _key_1mb(rep: Report, quick: bool) -> None:
    """A 1 MB request body: llmtap keying it (read_only: parse, key, look up, never store)
    against the same call without llmtap; the difference is what the key costs."""
    import httpx2
    import orjson
    from opentelemetry.trace import NoOpTracerProvider

    from llmtap import MemoryCache

    text = ("All work and no play makes Jack a dull boy. " * 25_000)[: 1 << 20]
    raw = orjson.dumps(chat_body(messages=[{"role": "user", "content": text}]))
    canned = Canned()
    transports = {
        "plain": httpx2.MockTransport(canned),
        "keyed": tap("httpx2", httpx2.MockTransport(canned), cache=MemoryCache(),
                     mode="read_only", tracer_provider=NoOpTracerProvider(), metrics=None),
    }  # fmt: skip
    headers = {"content-type": "application/json"}

    def block(t: Any) -> Any:
        client = httpx2.Client(transport=t, base_url="http://fake/v1")

        def run(n: int) -> None:
            for _ in range(n):
                r = client.post("/chat/completions", content=raw, headers=headers)
                r.read()

        return run

    plan = Plan(rounds=3 if quick else 15, calls=2 if quick else 10, warmup=1)
    s = compare({k: block(t) for k, t in transports.items()}, plan)
    ms = (s["keyed"].median_us - s["plain"].median_us) / 1000
    mib_s = len(raw) / 2**20 / (ms / 1000) if ms > 0 else float("inf")
    rep.add(
        Row(
            "scale", "httpx2", "key of a 1 MB body", "", ms, unit="ms",
            variant_us=s["keyed"].median_us, baseline_us=s["plain"].median_us,
            note=f"llmtap read_only minus plain (parse + canonicalise + sha256 + lookup): "
            f"{mib_s:.0f} MiB/s",
        )
    )  # fmt: skip


def _rss(rep: Report, quick: bool, tel: Telemetry) -> None:
    import httpx2

    calls = 2_000 if quick else 100_000
    kw = tel.on if tel.on is not None else tel.off
    t = tap("httpx2", httpx2.MockTransport(Canned()), **kw)
    client = httpx2.Client(transport=t, base_url="http://fake/v1")
    at_10, start = 0.0, rss_mb()
    for i in range(calls):
        client.post("/chat/completions", json=chat_body(i)).read()
        if i + 1 == calls // 10:
            at_10 = rss_mb()
    end = rss_mb()
    which = "telemetry on" if tel.on is not None else "telemetry off (on n/a)"
    rep.add(
        Row(
            "scale",
            "httpx2",
            f"RSS growth {calls // 10:,} -> {calls:,} calls",
            "",
            end - at_10,
            unit="MiB",
            target=RSS_GROWTH_MB,
            note=f"cache off, {which}; RSS {start:.0f} -> {at_10:.0f} -> {end:.0f} MiB",
        )
    )
