"""Secrets: a recognisable API key, every feature on, and the key appears nowhere:
not in any store, span, metric, log line or CLI output."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest
from relsupport import SECRET

import llmtap.httpx2
from llmtap import DiskCache, FileCache, MemoryCache, Metrics
from llmtap.cli import main as cli_main
from llmtap.testing import FakeUpstream

NEEDLES = [SECRET.encode(), b"RELIABILITY-SECRET"]


def _workload(client: openai.OpenAI, fake: FakeUpstream) -> None:
    messages = [{"role": "user", "content": "Hello, what is a cache?"}]
    for _ in range(2):  # a miss, then a hit
        client.chat.completions.create(model="gpt-4o-mini", seed=3, messages=messages)
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", seed=4, messages=messages, stream=True,
                stream_options={"include_usage": True},
            )
        )  # fmt: skip
        client.embeddings.create(model="text-embedding-3-small", input="hi")
    client.chat.completions.create(
        model="gpt-4o-mini", seed=5, messages=messages,
        extra_headers={"x-llmtap-cache": "refresh"},
    )  # fmt: skip
    fake.fail_next(500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", seed=6, messages=messages)


def _files_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


@pytest.mark.parametrize("capture", [False, True], ids=["content-off", "content-on"])
@pytest.mark.parametrize("kind", ["disk", "files", "memory"])
def test_api_key_appears_nowhere(
    tmp_path: Path, kind: str, capture: bool, caplog: Any, capsys: Any
) -> None:
    store: Any = {
        "disk": lambda: DiskCache(tmp_path / "store"),
        "files": lambda: FileCache(tmp_path / "store"),
        "memory": MemoryCache,
    }[kind]()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    caplog.set_level(logging.DEBUG)
    with FakeUpstream() as fake:
        transport = llmtap.httpx2.Transport(
            cache=store,
            cache_when="always",
            tracer_provider=provider,
            metrics=Metrics(registry=registry),
            capture_content=capture,
        )
        client = openai.OpenAI(
            api_key=SECRET,
            base_url=fake.base_url,
            http_client=httpx2.Client(transport=transport),
            max_retries=0,
        )
        _workload(client, fake)
        client.close()
        # the key did go upstream (the test would prove nothing otherwise)
        assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in fake.requests)
    provider.shutdown()

    seen: list[tuple[str, bytes]] = []
    # the store, raw
    if kind == "memory":
        seen.append(("store", b"".join(v for _, v in store.iter_entries())))
    else:
        if kind == "disk":
            store.close()
        seen.append(("store files", _files_under(tmp_path / "store")))
    assert seen[0][1], "nothing was stored"
    # spans: names, attributes, events, links, resource
    spans = exporter.get_finished_spans()
    assert spans
    seen.append(("spans", "\n".join(s.to_json() for s in spans).encode()))
    # metrics exposition
    seen.append(("metrics", generate_latest(registry)))
    # every log record at DEBUG, with its arguments and exception text
    seen.append(("logs", "\n".join(caplog.text.splitlines()).encode()))
    # the CLI, on the stores it can read
    if kind != "memory":
        option = "--dir" if kind == "disk" else "--files"
        capsys.readouterr()
        assert cli_main(["cache", "ls", option, str(tmp_path / "store")]) == 0
        listing = capsys.readouterr().out
        stored_keys = (
            [k for k, _ in store.iter_entries()] if kind == "files"
            else [k for k, _ in DiskCache(tmp_path / "store").iter_entries()]
        )  # fmt: skip
        shown = ""
        for key in stored_keys:
            assert cli_main(["cache", "show", key, option, str(tmp_path / "store")]) == 0
            shown += capsys.readouterr().out
        assert shown
        seen.append(("cli", (listing + shown).encode()))
    for where, data in seen:
        for needle in NEEDLES:
            assert needle not in data, f"the API key leaked into {where}"
        assert b"authorization" not in data.lower() or where == "logs", where


@pytest.mark.parametrize("param", ["api-key", "key", "code", "Access_Token"])
def test_an_api_key_in_the_query_is_neither_stored_nor_in_the_key(
    tmp_path: Path, param: str
) -> None:
    """Some gateways take the key in the URL (Azure's ``api-key``, Google's ``key``, Azure
    Functions' ``code``): like a header, it neither reaches a recording nor splits the
    cache, while the other parameters (``api-version``) still count."""
    fake = FakeUpstream()
    transport = llmtap.httpx2.Transport(
        transport=httpx2.MockTransport(fake), cache=FileCache(tmp_path / "rec"), metrics=None
    )
    url = "https://gateway.example/openai/deployments/d/chat/completions"
    body = {"model": "m", "seed": 1, "messages": [{"role": "user", "content": "hi"}]}
    with httpx2.Client(transport=transport) as client:
        seen = [
            client.post(url, params={"api-version": version, param: key}, json=body)
            for version, key in (("2024-10-21", SECRET), ("2024-10-21", "other"), ("2025", SECRET))
        ]
    assert [r.headers["x-llmtap-cache"] for r in seen] == ["miss", "hit", "miss"]
    stored = _files_under(tmp_path / "rec")
    assert b"2024-10-21" in stored  # the query is kept, minus the credential
    assert SECRET.encode() not in stored and b'"other"' not in stored
