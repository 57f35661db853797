"""The async openai SDK, streaming, through llmtap: time to first token, usage, a cached replay.

Run it:

    pip install 'llmtap[demo]'
    export OPENAI_API_KEY=sk-...
    export OPENAI_BASE_URL=http://127.0.0.1:8000/v1   # optional
    python examples/openai_async_stream.py

``stream_options.include_usage`` makes the last chunk carry the token counts, which
llmtap meters (without it ``llmtap_stream_usage_missing_total`` counts the stream).
The second, identical seeded stream is replayed from the cache event by event.
"""

from __future__ import annotations

import asyncio
import os
import time

import openai

from llmtap.httpx2 import AsyncTransport

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


async def ask(client: openai.AsyncOpenAI, attempt: int) -> None:
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    async with client.chat.completions.with_streaming_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write a haiku about HTTP transports."}],
        seed=11,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        cache = response.headers.get("x-llmtap-cache")
        usage = None
        async for chunk in await response.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - started
                parts.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
    print(
        f"stream {attempt}: cache={cache} chunks={len(parts)} "
        f"ttft={first or 0:.3f}s output_tokens={usage.completion_tokens if usage else '?'}"
    )
    print("  text:", "".join(parts))


async def main() -> None:
    http_client = openai.DefaultAsyncHttpxClient(transport=AsyncTransport())
    async with openai.AsyncOpenAI(http_client=http_client) as client:
        for attempt in (1, 2):
            await ask(client, attempt)


if __name__ == "__main__":
    asyncio.run(main())
