"""Every file in examples/ runs, as a user would run it, against FakeUpstream.

Each example is a subprocess whose environment points ``OPENAI_BASE_URL`` at a
FakeUpstream loopback server and ``LLMTAP_CACHE_DIR`` at a temporary directory;
the test checks the exit code and that the output shows the cache and the
telemetry at work. ``metrics_service.py`` runs under gunicorn with two workers
in prometheus-client's multiprocess mode; ``otlp_traces.py`` exports to a tiny
OTLP/HTTP receiver started here, which decodes the protobuf spans.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmtap.testing import FakeUpstream
from prometheus_server import free_port

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 120


SIMPLE = ("openai_sync.py", "openai_async_stream.py", "httpx_plain.py", "litellm_call.py")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


def user_env(fake: FakeUpstream, cache_dir: Path) -> dict[str, str]:
    """A user's environment: the fake upstream, a fresh cache, no stray telemetry settings."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "OTEL_", "LLMTAP_", "PROMETHEUS_", "LITELLM_"))
    }
    return base | {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "LLMTAP_CACHE_DIR": str(cache_dir),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture
def env(fake: FakeUpstream, tmp_path: Path) -> dict[str, str]:
    return user_env(fake, tmp_path / "cache")


def check_docstring(example: str) -> None:
    source = (EXAMPLES / example).read_text()
    assert source.startswith('"""'), f"{example}: start with a docstring on how to run it"
    assert "run it" in source.split('"""')[1].lower(), f"{example}: say how to run it"


class Launched:
    """An example started as a subprocess; ``result()`` waits for it and checks exit 0."""

    def __init__(self, example: str, env: dict[str, str], workdir: Path) -> None:
        check_docstring(example)
        self.example = example
        self._out = (workdir / "stdout").open("w+")
        self._err = (workdir / "stderr").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / example)],
            env=env,
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=workdir,
        )

    def result(self) -> str:
        try:
            code = self.proc.wait(timeout=TIMEOUT)
        finally:
            self.close()
        assert code == 0, f"{self.example} exited {code}:\n{self.stderr}"
        return self.stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if not self._out.closed:
            self._out.seek(0)
            self._err.seek(0)
            self.stdout, self.stderr = self._out.read(), self._err.read()
            self._out.close()
            self._err.close()


@pytest.fixture(scope="module")
def launched(
    fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Launched]]:
    """The simple examples, started together (their imports dominate the run time)."""
    procs: dict[str, Launched] = {}
    try:
        for example in SIMPLE:
            if example == "litellm_call.py" and importlib.util.find_spec("litellm") is None:
                continue
            workdir = tmp_path_factory.mktemp(example.removesuffix(".py"))
            procs[example] = Launched(example, user_env(fake, workdir / "cache"), workdir)
        yield procs
    finally:
        for proc in procs.values():
            proc.close()


def run(example: str, env: dict[str, str], workdir: Path) -> str:
    return Launched(example, env, workdir).result()


def upstream_calls(fake: FakeUpstream, content: str) -> int:
    """How many requests upstream received with this user message."""
    return sum(
        1
        for r in fake.requests
        if r.json and any(m.get("content") == content for m in r.json.get("messages", []))
    )


def test_every_example_is_tested() -> None:
    tested = {*SIMPLE, "metrics_service.py", "otlp_traces.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_openai_sync(launched: dict[str, Launched], fake: FakeUpstream) -> None:
    out = launched["openai_sync.py"].result()
    assert re.search(r"call 1: cache=miss tokens=\d+", out), out
    assert re.search(r"call 2: cache=hit tokens=\d+", out), out
    assert re.search(r'llmtap_requests_total\{cache="hit".*\} 1\.0', out), out
    assert "llmtap_cache_saved_tokens_total" in out
    assert upstream_calls(fake, "Name three uses of a transport-level LLM cache.") == 1


def test_openai_async_stream(launched: dict[str, Launched], fake: FakeUpstream) -> None:
    out = launched["openai_async_stream.py"].result()
    first = re.search(r"stream 1: cache=miss chunks=(\d+) ttft=[\d.]+s output_tokens=(\d+)", out)
    second = re.search(r"stream 2: cache=hit chunks=(\d+) ttft=[\d.]+s output_tokens=(\d+)", out)
    assert first and second, out
    assert first.groups() == second.groups()  # the replay is the same stream
    assert int(first.group(1)) > 1
    assert upstream_calls(fake, "Write a haiku about HTTP transports.") == 1


def test_httpx_plain(launched: dict[str, Launched]) -> None:
    out = launched["httpx_plain.py"].result()
    assert "call 1: status=200 cache=miss" in out, out
    assert "call 2: status=200 cache=hit" in out, out
    assert re.search(r"stream: cache=\w+ events=\d+ total_tokens=\d+", out), out


def test_litellm_call(launched: dict[str, Launched], fake: FakeUpstream) -> None:
    if "litellm_call.py" not in launched:
        pytest.skip("litellm is not installed")
    out = launched["litellm_call.py"].result()
    assert re.search(r"call 1: cache=miss tokens=\d+", out), out
    assert re.search(r"call 2: cache=hit tokens=\d+", out), out
    assert upstream_calls(fake, "One sentence on caching.") == 1  # the hit stayed local


# ----------------------------------------------------------------- gunicorn service


def _wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def _sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_service_under_gunicorn_workers(env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("gunicorn", reason="gunicorn is not installed")
    check_docstring("metrics_service.py")
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    port = free_port()
    env = env | {
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
    }
    log = (tmp_path / "gunicorn.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(EXAMPLES / "metrics_service.py")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/metrics", proc)
        pids = set()
        caches = []
        asks = 12
        with httpx.Client(base_url=base, timeout=30) as client:
            for i in range(asks):
                body = client.get("/ask", params={"q": f"question {i % 3}"}).json()
                pids.add(body["pid"])
                caches.append(body["cache"])
                assert body["answer"]
            metrics = client.get("/metrics")
        assert metrics.status_code == 200
        text = metrics.text
        # one aggregated exposition over every worker: all the asks are counted
        assert _sample(text, "llmtap_requests_total") == asks, text
        assert _sample(text, "llmtap_requests_total", cache="hit") >= 1
        assert _sample(text, "llmtap_requests_in_flight") == 0
        assert _sample(text, "llmtap_tokens_total", token_type="output") > 0
        assert "llmtap_request_duration_seconds_bucket" in text
        assert set(caches) <= {"miss", "hit"} and "hit" in caches
        assert len(list(multiproc.glob("*.db"))) >= 1
        assert pids  # usually 2 workers served; the scheduler may pick one
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.seek(0)
        output = log.read()
        log.close()
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output


# ------------------------------------------------------------------- OTLP receiver


class _Receiver(BaseHTTPRequestHandler):
    spans: list[Any]

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append((resource_spans.resource, span))  # type: ignore[attr-defined]
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _attributes(items: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for kv in items:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind) if kind else None
        if kind == "array_value":
            value = [getattr(v, v.WhichOneof("value")) for v in value.values]
        values[kv.key] = value
    return values


def test_otlp_traces_reach_a_collector(env: dict[str, str], tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    pytest.importorskip("opentelemetry.proto")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.spans = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        out = run("otlp_traces.py", env | {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert "exported 3 spans" in out, out
    received = server.spans  # type: ignore[attr-defined]
    assert len(received) == 3, received
    resource, _ = received[0]
    assert _attributes(resource.attributes)["service.name"] == "llmtap-example"
    spans = [(span.name, _attributes(span.attributes)) for _, span in received]
    for name, attributes in spans:
        assert name == "chat gpt-4o-mini"
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.provider.name"] == "openai_compatible"
    results = sorted(a.get("llmtap.cache.result") for _, a in spans)
    assert results == ["bypass", "hit", "miss"], spans
    streamed = [a for _, a in spans if a.get("gen_ai.request.stream")]
    assert len(streamed) == 1 and streamed[0]["gen_ai.usage.output_tokens"] > 0
