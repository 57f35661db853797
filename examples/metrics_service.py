"""A small web service that calls an LLM through llmtap and exposes ``/metrics``.

One file, two ways to run it. Single process (prometheus-client's default registry):

    export OPENAI_API_KEY=sk-...  OPENAI_BASE_URL=http://127.0.0.1:8000/v1   # optional
    python examples/metrics_service.py                 # http://127.0.0.1:8080
    curl 'http://127.0.0.1:8080/ask?q=hello'
    curl http://127.0.0.1:8080/metrics

Several gunicorn workers (prometheus-client multiprocess mode). This file is also the
gunicorn config: it sets ``wsgi_app``, ``bind``, ``workers`` and the ``child_exit``
hook that tells prometheus-client a worker died (so its in-flight gauge stops counting):

    pip install llmtap openai gunicorn
    export PROMETHEUS_MULTIPROC_DIR=/tmp/llmtap-metrics          # before Python starts
    rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    gunicorn -c examples/metrics_service.py                     # BIND, WEB_CONCURRENCY

Then point Prometheus at it (``static_configs: [{targets: ['127.0.0.1:8080']}]``) and
import ``dashboards/llmtap.json`` into Grafana (see "See it in Grafana" in README.md).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import openai
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from llmtap.httpx2 import Transport

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ

# -- gunicorn settings (read when this file is given to ``gunicorn -c``) ----------------
wsgi_app = "metrics_service:app"
chdir = os.path.dirname(os.path.abspath(__file__))
bind = os.environ.get("BIND", "127.0.0.1:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))


def child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: drop the dead worker's live gauges (``livesum`` in-flight)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# -- the application --------------------------------------------------------------------
_client: openai.OpenAI | None = None
_client_lock = threading.Lock()


def llm() -> openai.OpenAI:
    """One client per worker process, created after gunicorn forked it."""
    global _client
    with _client_lock:
        if _client is None:
            http_client = openai.DefaultHttpxClient(transport=Transport())
            _client = openai.OpenAI(http_client=http_client, max_retries=0)
        return _client


def metrics_body() -> bytes:
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()  # a fresh one per scrape, never llmtap's
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


Respond = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: Respond) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/metrics":
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [metrics_body()]
    if path == "/ask":
        question = parse_qs(environ.get("QUERY_STRING", "")).get("q", ["Say hello."])[0]
        raw = llm().chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": question}], seed=1
        )
        answer = raw.parse().choices[0].message.content
        body = {"pid": os.getpid(), "cache": raw.headers.get("x-llmtap-cache"), "answer": answer}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"try /ask?q=... or /metrics\n"]


def main() -> None:
    from wsgiref.simple_server import make_server

    host, _, port = bind.rpartition(":")
    with make_server(host, int(port), app) as server:
        print(f"serving on http://{bind} (/ask?q=..., /metrics)", file=sys.stderr, flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
