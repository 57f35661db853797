"""``llmtap demo``: the main job end to end, with no account.

A local OpenAI-compatible upstream (``FakeUpstream``, with realistic latency),
a workload through the real openai SDK with streaming and seeded repeats, and
a closing summary. With ``OPENAI_API_KEY`` set it talks to the real API
(``OPENAI_BASE_URL`` optional) with a small workload instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

_PROMPTS = [
    "Explain HTTP caching in one sentence.",
    "Name three uses of OpenTelemetry.",
    "What does a transport do in httpx?",
    "Why should LLM tests be deterministic?",
]


def _missing_extra() -> int:
    print(
        "llmtap demo needs the 'demo' extra (openai, httpx2, opentelemetry-sdk):\n"
        "    pip install 'llmtap[demo]'",
        file=sys.stderr,
    )
    return 2


@contextlib.contextmanager
def _upstream(real: bool, port: int) -> Iterator[str | None]:
    if real:
        yield os.environ.get("OPENAI_BASE_URL")
        return
    from llmtap.testing import FakeUpstream

    # The cache key includes host and port: a fixed port lets a second run hit.
    with FakeUpstream(latency=0.12, chunk_delay=0.004, port=port) as fake:
        yield fake.base_url


def _workload(real: bool, calls: int | None) -> Iterator[tuple[str, dict[str, Any]]]:
    model = "gpt-4o-mini"
    prompts = _PROMPTS[:2] if real else _PROMPTS
    plan: list[tuple[str, dict[str, Any]]] = []
    for i, prompt in enumerate(prompts):
        messages = [{"role": "user", "content": prompt}]
        plan.append(("chat", {"model": model, "seed": i, "messages": messages}))
        stream_opts = {"include_usage": True}
        plan.append(
            (
                "stream",
                {
                    "model": model,
                    "seed": i,
                    "messages": messages,
                    "stream": True,
                    "stream_options": stream_opts,
                },
            )
        )
    plan.append(("chat", {"model": model, "messages": [{"role": "user", "content": "Hi!"}]}))
    repeated = plan + [p for p in plan if "seed" in p[1]]
    if calls is None:
        yield from repeated
    else:
        yield from (repeated * (1 + calls // len(repeated)))[:calls]


def _call(client: Any, kind: str, kwargs: dict[str, Any]) -> tuple[str, str, int]:
    """One call; returns (cache result, text, total tokens reported)."""
    if kind == "stream":
        raw = client.chat.completions.with_raw_response.create(**kwargs)
        text, tokens = "", 0
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage is not None:
                tokens = chunk.usage.total_tokens
        return raw.headers.get("x-llmtap-cache", "?"), text, tokens
    raw = client.chat.completions.with_raw_response.create(**kwargs)
    completion = raw.parse()
    usage = completion.usage.total_tokens if completion.usage else 0
    return (
        raw.headers.get("x-llmtap-cache", "?"),
        completion.choices[0].message.content or "",
        usage,
    )


def run_demo(args: argparse.Namespace) -> int:
    try:
        import openai

        from llmtap._demo_telemetry import console_tracer_provider
        from llmtap.httpx2 import Transport
    except ImportError:
        return _missing_extra()
    from llmtap import DiskCache
    from llmtap._demo_telemetry import serve_metrics, summary_lines

    real = bool(os.environ.get("OPENAI_API_KEY"))
    served = serve_metrics(args.port)
    tracer_provider = console_tracer_provider()
    with contextlib.ExitStack() as stack:
        stack.callback(served.shutdown)
        directory = args.dir or stack.enter_context(tempfile.TemporaryDirectory())
        base_url = stack.enter_context(_upstream(real, args.upstream_port))
        where = "the OpenAI API" if real else f"a local fake upstream at {base_url}"
        print(f"llmtap demo: calls through the openai SDK to {where}")
        print(f"cache: DiskCache({directory})")
        print(f"metrics: {served.url} (each call's span prints on the line above it)\n")
        transport = Transport(
            cache=DiskCache(directory),
            mode="read_write",
            metrics=served.metrics,
            tracer_provider=tracer_provider,
        )
        client = openai.OpenAI(
            api_key=os.environ.get("OPENAI_API_KEY", "sk-demo-not-a-real-key"),
            base_url=base_url,
            http_client=openai.DefaultHttpxClient(transport=transport),
            max_retries=0 if not real else 2,
        )
        stack.enter_context(client)
        for n, (kind, kwargs) in enumerate(_workload(real, args.calls), 1):
            started = time.perf_counter()
            cache, text, tokens = _call(client, kind, kwargs)
            elapsed = time.perf_counter() - started
            seeded = "seed" in kwargs
            print(
                f"{n:3d}  {kind:6s} seeded={'yes' if seeded else 'no ':3s} "
                f"{cache:6s} {elapsed * 1000:7.1f} ms  {tokens:4d} tok  {text[:38]!r}"
            )
        tracer_provider.shutdown()
        print()
        print("\n".join(summary_lines(served.registry)))
        if args.serve:
            print(f"\nserving {served.url} until interrupted (Ctrl-C)")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
    return 0
