"""Soak (issue 7 item 8; not in CI): many calls, 10% upstream errors, through DiskCache.

    python -m bench.soak                 # 100,000 calls
    python -m bench.soak --calls 5000    # a smoke

Checks, failing with exit status 1 otherwise: every 200 answer is byte-for-byte
what the upstream gives for that request (hits included); every injected error
reaches the caller as that error and is never stored (the same request retried
is a miss and then correct); RSS and open file descriptors stay flat (measured
once every distinct request is stored (at least 10% of the calls) and at the end).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx2

from bench._fixtures import chat_body
from bench._harness import open_fds, rss_mb
from llmtap import DiskCache
from llmtap.httpx2 import Transport
from llmtap.testing import FakeUpstream

MAX_PROMPTS = 5_000  # distinct requests: the first use of each is a miss, later ones hit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--rss-slack-mb", type=float, default=16.0)
    args = parser.parse_args(argv)
    from opentelemetry.trace import NoOpTracerProvider
    from prometheus_client import CollectorRegistry

    import llmtap

    fake = FakeUpstream()
    reference = httpx2.Client(
        transport=httpx2.MockTransport(FakeUpstream()), base_url="http://f/v1"
    )
    expected: dict[int, str] = {}
    directory = Path(tempfile.mkdtemp(prefix="llmtap-soak-"))
    transport = Transport(
        transport=httpx2.MockTransport(fake),
        cache=DiskCache(directory),
        cache_when="always",
        metrics=llmtap.Metrics(registry=CollectorRegistry()),
        tracer_provider=NoOpTracerProvider(),
    )
    client = httpx2.Client(transport=transport, base_url="http://fake/v1")
    wrong = errors = hits = 0
    marks: dict[str, tuple[float, int]] = {}
    prompts = min(MAX_PROMPTS, max(1, args.calls // 20))
    warm_at = min(args.calls, max(args.calls // 10, 2 * prompts))  # every prompt stored by then
    started = time.monotonic()
    for i in range(args.calls):
        if i % 10 == 9:  # 10% errors, on a request never seen before (so not a hit)
            fake.fail_next(500)
            body = chat_body(-i)
            r = client.post("/chat/completions", json=body)
            if r.status_code != 500 or r.headers.get("x-llmtap-cache") != "miss":
                wrong += 1
            errors += 1
            if i % 1000 == 999:  # sometimes retry it: must not have been stored
                r = client.post("/chat/completions", json=body)
                if r.status_code != 200 or r.headers.get("x-llmtap-cache") != "miss":
                    wrong += 1
        else:
            n = i % prompts
            body = chat_body(n)
            r = client.post("/chat/completions", json=body)
            if n not in expected:
                expected[n] = reference.post("/chat/completions", json=body).json()["choices"][0][
                    "message"
                ]["content"]
            ok = (
                r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == expected[n]
            )
            wrong += not ok
            hits += r.headers.get("x-llmtap-cache") == "hit"
        if i % 1000 == 999:
            fake.reset()  # the fake records every request; keep its memory out of ours
        if i + 1 == warm_at:
            marks["warm"] = (rss_mb(), open_fds())
    marks["end"] = (rss_mb(), open_fds())
    elapsed = time.monotonic() - started
    (rss_warm, fds_warm), (rss_end, fds_end) = marks["warm"], marks["end"]
    print(
        f"{args.calls:,} calls in {elapsed:.0f} s: {hits:,} hits, {errors:,} injected errors, "
        f"{wrong} wrong answers"
    )
    print(f"RSS {rss_warm:.1f} -> {rss_end:.1f} MiB; open fds {fds_warm} -> {fds_end}")
    failures = []
    if wrong:
        failures.append(f"{wrong} wrong answers")
    if rss_end - rss_warm > args.rss_slack_mb:
        failures.append(f"RSS grew {rss_end - rss_warm:.1f} MiB (> {args.rss_slack_mb})")
    if fds_end > fds_warm:
        failures.append(f"open fds grew {fds_warm} -> {fds_end}")
    print("FAIL: " + "; ".join(failures) if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
