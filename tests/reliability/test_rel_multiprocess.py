"""Concurrency: 4 processes x 2 threads (one sync httpx2, one async httpx) hammering one
store with overlapping keys, reads, writes and refreshes: no exception, and every answer
served is byte-identical to what upstream sent for that key."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import traceback
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from relsupport import BACKENDS, CHAT_URL, chat, check_store, make_store, reference

import llmtap.httpx
import llmtap.httpx2
from llmtap.testing import FakeUpstream

PROCESSES, CALLS = 4, 50
BODIES = [chat(seed, stream=bool(seed % 2)) for seed in range(6)] + [chat(99, stream=True, n=8)]
EXPECTED = [b"".join(reference(b)) for b in BODIES]


def _plan(worker: int) -> list[tuple[int, dict[str, str]]]:
    rng = random.Random(worker)
    plan = []
    for _ in range(CALLS):
        which = rng.randrange(len(BODIES))
        roll = rng.random()
        headers = {"x-llmtap-cache": "refresh"} if roll < 0.2 else {}
        if 0.2 <= roll < 0.3:
            headers = {"x-llmtap-cache": "no-cache"}
        plan.append((which, headers))
    return plan


def _check(which: int, status: int, body: bytes, cache: str | None, errors: list[str]) -> None:
    if status != 200 or body != EXPECTED[which] or cache not in ("hit", "miss"):
        errors.append(f"body {which}: status {status}, cache {cache}, {len(body)} bytes")


def _sync_worker(kind: str, directory: str, worker: int, errors: list[str]) -> None:
    transport = llmtap.httpx2.Transport(
        transport=httpx2.MockTransport(FakeUpstream()),
        cache=make_store(kind, Path(directory)),
        cache_when="always",
        metrics=None,
    )
    with httpx2.Client(transport=transport) as client:
        for which, headers in _plan(worker):
            r = client.post(CHAT_URL, json=BODIES[which], headers=headers)
            _check(which, r.status_code, r.content, r.headers.get("x-llmtap-cache"), errors)


async def _async_worker(kind: str, directory: str, worker: int, errors: list[str]) -> None:
    transport = llmtap.httpx.AsyncTransport(
        transport=httpx.MockTransport(FakeUpstream()),
        cache=make_store(kind, Path(directory)),
        cache_when="always",
        metrics=None,
    )
    async with httpx.AsyncClient(transport=transport) as client:
        for which, headers in _plan(worker):
            r = await client.post(CHAT_URL, json=BODIES[which], headers=headers)
            _check(which, r.status_code, r.content, r.headers.get("x-llmtap-cache"), errors)


def _process(kind: str, directory: str, number: int, results: Any) -> None:
    errors: list[str] = []

    def guard(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [
        threading.Thread(target=guard, args=(_sync_worker, kind, directory, number * 2, errors)),
        threading.Thread(
            target=guard,
            args=(
                lambda *a: asyncio.run(_async_worker(*a)),
                kind,
                directory,
                number * 2 + 1,
                errors,
            ),
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((number, errors))


@pytest.mark.parametrize("kind", BACKENDS)
def test_four_processes_two_threads_one_store(tmp_path: Path, kind: str) -> None:
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    directory = str(tmp_path / "store")
    procs = [
        ctx.Process(target=_process, args=(kind, directory, n, results)) for n in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    reports = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(reports) == list(range(PROCESSES))
    assert [e for errs in reports.values() for e in errs] == []
    found = check_store(kind, directory=Path(directory))
    assert 1 <= len(found) <= len(BODIES)
