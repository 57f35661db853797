"""Multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``): several worker processes, one
aggregated exposition through ``MultiProcessCollector``, as a gunicorn deployment has."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from conftest import metric_sum

WORKER = """
import sys, httpx2, llmtap, llmtap.httpx2
from llmtap.testing import FakeUpstream

fake = FakeUpstream()
metrics = llmtap.Metrics.default()
transport = llmtap.httpx2.Transport(
    transport=httpx2.MockTransport(fake), cache=llmtap.MemoryCache(), metrics=metrics
)
client = httpx2.Client(transport=transport, base_url="https://api.openai.com/v1")
body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "stream": True, "stream_options": {"include_usage": True}}
for _ in range(3):
    client.post("/chat/completions", json=body)
held = client.send(client.build_request("POST", "/chat/completions", json=body), stream=True)
print("ready", flush=True)
sys.stdin.readline()
held.read()
held.close()
print("done", flush=True)
"""

WORKERS = 3


def _scrape(directory: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return registry


def test_workers_aggregate(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        # Each worker holds one stream open: the livesum gauge adds them up.
        assert metric_sum(_scrape(tmp_path), "llmtap_requests_in_flight") == WORKERS
        for worker in workers:
            assert worker.stdin is not None and worker.stdout is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
            assert worker.stdout.readline().strip() == "done"
    finally:
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
            assert worker.wait(timeout=60) == 0
            if worker.stdout is not None:
                worker.stdout.close()
    registry = _scrape(tmp_path)
    assert metric_sum(registry, "llmtap_requests_in_flight") == 0
    calls = WORKERS * 4
    assert metric_sum(registry, "llmtap_requests_total", outcome="success", stream="true") == calls
    assert metric_sum(registry, "llmtap_request_duration_seconds_count") == calls
    assert metric_sum(registry, "llmtap_tokens_total", token_type="input") > 0
    text = generate_latest(registry).decode()
    assert "_created" not in text
    assert 'llmtap_requests_total{cache="bypass"' in text
