"""Telemetry test helpers: a ``Rig`` with an in-memory span exporter and a fresh Prometheus
registry that builds llmtap transports over FakeUpstream for httpx / httpx2, sync / async.

A plain module, not a ``conftest.py``: a second ``conftest`` module would shadow
``tests/conftest.py``, which other test modules import by that name."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

import llmtap
from conftest import metric_sum
from llmtap.testing import FakeUpstream

BASE_URL = "https://api.openai.com/v1"


@dataclass
class Rig:
    """One transport setup; ``spans()`` and ``value()`` read what it reported."""

    lib_name: str
    is_async: bool
    exporter: InMemorySpanExporter
    provider: TracerProvider
    registry: CollectorRegistry
    metrics: llmtap.Metrics
    fake: FakeUpstream = field(default_factory=FakeUpstream)
    cache: Any = field(default_factory=llmtap.MemoryCache)

    @property
    def lib(self) -> Any:
        return importlib.import_module(self.lib_name)

    def transport(self, inner: Any = None, **kwargs: Any) -> Any:
        module = importlib.import_module(f"llmtap.{self.lib_name}")
        cls = module.AsyncTransport if self.is_async else module.Transport
        if inner is None:
            inner = self.lib.MockTransport(self.fake)
        kwargs.setdefault("cache", self.cache)
        kwargs.setdefault("tracer_provider", self.provider)
        kwargs.setdefault("metrics", self.metrics)
        return cls(transport=inner, **kwargs)

    def client(self, inner: Any = None, **kwargs: Any) -> Any:
        cls = self.lib.AsyncClient if self.is_async else self.lib.Client
        return cls(transport=self.transport(inner, **kwargs), base_url=BASE_URL)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self) -> ReadableSpan:
        spans = self.spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return metric_sum(self.registry, name, **labels)


def make_rig(lib_name: str = "httpx2", is_async: bool = False) -> Rig:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    return Rig(lib_name, is_async, exporter, provider, registry, llmtap.Metrics(registry))


LIBS = [("httpx", False), ("httpx", True), ("httpx2", False), ("httpx2", True)]
LIB_IDS = ["httpx-sync", "httpx-async", "httpx2-sync", "httpx2-async"]
