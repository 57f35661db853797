"""Interleaved A/B timing, medians, and process-level gauges (RSS, open fds)."""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Block = Callable[[int], Any]  # runs n calls
AsyncBlock = Callable[[int], Awaitable[Any]]


@dataclass
class Sample:
    """Per-call nanoseconds of one variant, one value per round."""

    per_call_ns: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.per_call_ns) / 1000


@dataclass(frozen=True)
class Plan:
    rounds: int
    calls: int  # calls per round and variant
    warmup: int  # warm-up rounds (not recorded)


def _order(names: list[str], r: int) -> list[str]:
    # Rotate so that every variant runs first, last and in between equally often.
    k = r % len(names)
    order = names[k:] + names[:k]
    return order if r % 2 == 0 else order[::-1]


Hook = tuple[Callable[[], Any], Callable[[], Any]]


def compare(
    variants: dict[str, Block], plan: Plan, hooks: dict[str, Hook] | None = None
) -> dict[str, Sample]:
    """Time each variant for ``plan.calls`` calls per round, interleaved over rounds.

    ``hooks[name]`` is an (enter, exit) pair run untimed around that variant's block:
    an instrumentation that patches process-wide is switched on only for its turn.
    """
    names = list(variants)
    samples = {n: Sample() for n in names}
    hooks = hooks or {}
    for r in range(plan.warmup + plan.rounds):
        for name in _order(names, r):
            enter, leave = hooks.get(name, (_nothing, _nothing))
            enter()
            gc.collect()
            start = time.perf_counter_ns()
            variants[name](plan.calls)
            elapsed = time.perf_counter_ns() - start
            leave()
            if r >= plan.warmup:
                samples[name].per_call_ns.append(elapsed / plan.calls)
    return samples


def _nothing() -> None:
    pass


async def acompare(variants: dict[str, AsyncBlock], plan: Plan) -> dict[str, Sample]:
    """:func:`compare` for coroutines, in the running event loop."""
    names = list(variants)
    samples = {n: Sample() for n in names}
    for r in range(plan.warmup + plan.rounds):
        for name in _order(names, r):
            gc.collect()
            start = time.perf_counter_ns()
            await variants[name](plan.calls)
            elapsed = time.perf_counter_ns() - start
            if r >= plan.warmup:
                samples[name].per_call_ns.append(elapsed / plan.calls)
    return samples


def ratio(samples: dict[str, Sample], variant: str, baseline: str) -> float:
    """Median over rounds of variant/baseline, paired by round (A/B interleaved)."""
    a, b = samples[variant].per_call_ns, samples[baseline].per_call_ns
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1
