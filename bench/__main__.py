"""``python -m bench [--quick] [--only NAME ...] [--out PATH]``: run, print, write JSON.

The full run prints PASS/MISS per target; ``--quick`` (CI smoke: few rounds, small
sizes, < 60 s) checks that every scenario runs and judges nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench._harness import Plan
from bench._report import Report, machine

SCENARIOS = ("passthrough", "cache", "competitors", "streaming", "scale", "concurrency")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI smoke: small, fast, no targets")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="run only these scenarios")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "latest.json"
    )
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    args = parser.parse_args(argv)
    quick = args.quick
    rounds = args.rounds or (3 if quick else 31)
    plan = Plan(rounds=rounds, calls=10 if quick else 100, warmup=1 if quick else 3)
    loop_plan = Plan(rounds=rounds, calls=5 if quick else 40, warmup=1 if quick else 3)
    per_test = Plan(rounds=rounds, calls=3 if quick else 20, warmup=1 if quick else 2)
    stream_plan = Plan(rounds=rounds, calls=2 if quick else 10, warmup=1 if quick else 3)
    selected = args.only or SCENARIOS

    info = machine()
    print(
        f"llmtap bench ({'quick' if quick else 'full'}): {info['nproc']} CPUs, {info['cpu']}, "
        f"Python {info['python']}",
        flush=True,
    )
    rep = Report(quick)
    from bench._fixtures import Telemetry

    tel = Telemetry()
    if tel.on is None:
        print(f"note: {tel.why_not}; telemetry-on rows are n/a", flush=True)
    started = time.monotonic()
    try:
        if "passthrough" in selected:
            from bench._scenarios import passthrough

            passthrough(rep, plan, loop_plan, tel)
        if "cache" in selected:
            from bench._cache import cache_hits

            cache_hits(rep, plan, per_test, tel)
        if "competitors" in selected:
            from bench._competitors import competitors

            competitors(rep, quick)
        if "streaming" in selected:
            from bench._scenarios import streaming

            streaming(rep, stream_plan, tel)
        if "scale" in selected:
            from bench._scale import scale

            scale(rep, quick, tel)
        if "concurrency" in selected:
            from bench._scenarios import concurrency

            concurrency(rep, 1 if quick else 9, 50 if quick else 200, tel)
    finally:
        tel.shutdown()
        elapsed = time.monotonic() - started
        rep.write(args.out, elapsed)
    print()
    print(rep.table())
    print(f"\n{elapsed:.0f} s; JSON: {args.out}")
    if not quick:
        judged = [r for r in rep.rows if r.status in ("PASS", "MISS")]
        missed = [r for r in judged if r.status == "MISS"]
        print(f"targets: {len(judged) - len(missed)} PASS, {len(missed)} MISS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
