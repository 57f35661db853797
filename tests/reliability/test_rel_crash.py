"""Crash safety: a writer killed with SIGKILL mid-store leaves a store that opens,
serves every entry it finished, and holds no partial entry."""

from __future__ import annotations

import multiprocessing
import os
import random
import select
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from relsupport import BACKENDS, CHAT_URL, chat, check_store, kill, make_store, reference

import llmtap.httpx2
from llmtap.testing import FakeUpstream

ROUNDS = 20


def _body(i: int) -> dict[str, Any]:
    if i % 4 == 3:  # ~300 kB, 1000 chunks: a diskcache value that lives in its own file
        return chat(i, stream=True, n=40)
    return chat(i, stream=bool(i % 2))


def _writer(kind: str, directory: str, start: int, ack_fd: int) -> None:
    """Store entries through the transport forever; ack each one once it is stored."""
    try:
        store = make_store(kind, Path(directory))
        transport = llmtap.httpx2.Transport(
            transport=httpx2.MockTransport(FakeUpstream()),
            cache=store,
            cache_when="always",
            metrics=None,
        )
        with httpx2.Client(transport=transport) as client:
            os.write(ack_fd, b"ready\n")
            i = start
            while True:
                response = client.post(CHAT_URL, json=_body(i))
                assert response.status_code == 200
                # the entry is written when the body ends: from here on it must survive
                os.write(ack_fd, b"%d\n" % i)
                i += 1
    finally:
        os._exit(1)


def _read_acks(fd: int, deadline: float, until: bytes | None = None) -> list[bytes]:
    data = b""
    while time.monotonic() < deadline and not (until and until in data):
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data.split()


@pytest.mark.parametrize("kind", BACKENDS)
def test_sigkill_mid_store_leaves_only_whole_entries(tmp_path: Path, kind: str) -> None:
    ctx = multiprocessing.get_context("fork")
    directory = tmp_path / "store"
    rng = random.Random(7)
    acked: set[int] = set()
    for round_ in range(ROUNDS):
        read_fd, write_fd = os.pipe()
        proc = ctx.Process(target=_writer, args=(kind, str(directory), round_ * 1000, write_fd))
        proc.start()
        os.close(write_fd)
        try:
            first = _read_acks(read_fd, time.monotonic() + 10, until=b"ready\n")
            assert first[:1] == [b"ready"], "writer did not start"
            # kill at a random moment inside the store loop
            more = _read_acks(read_fd, time.monotonic() + rng.uniform(0.02, 0.15))
            kill(proc.pid)  # SIGKILL: no cleanup, no atexit, no flush
            proc.join(10)
            more += _read_acks(read_fd, time.monotonic() + 0.2)
        finally:
            kill(proc.pid) if proc.pid else None
            os.close(read_fd)
        acked.update(int(a) for a in first[1:] + more if a != b"ready")
        # the store opens, every entry in it is whole and right
        check_store(kind, directory)

    found = check_store(kind, directory)
    assert len(acked) >= ROUNDS, "the writer never got to store anything"
    # every acknowledged entry survived and is served, byte for byte, as a hit
    fake = FakeUpstream()
    transport = llmtap.httpx2.Transport(
        transport=httpx2.MockTransport(fake),
        cache=make_store(kind, directory),
        cache_when="always",
        mode="replay",
        metrics=None,
    )
    with httpx2.Client(transport=transport) as client:
        for i in sorted(acked):
            response = client.post(CHAT_URL, json=_body(i))
            assert response.status_code == 200, response.text[:300]
            assert response.headers["x-llmtap-cache"] == "hit"
            assert response.content == b"".join(reference(_body(i)))
    assert fake.request_count == 0
    assert len(found) >= len(acked)
