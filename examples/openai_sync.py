"""The openai SDK (sync) through llmtap: the second identical seeded call is a cache hit.

Run it:

    pip install 'llmtap[demo]'              # llmtap + openai + httpx2
    export OPENAI_API_KEY=sk-...            # a real key, or anything for a local server
    export OPENAI_BASE_URL=http://127.0.0.1:8000/v1   # optional: any OpenAI-compatible server
    python examples/openai_sync.py

Answers are cached on disk (``LLMTAP_CACHE_DIR``, default the user cache dir), so a
second run is served entirely from the cache. Set ``OPENAI_MODEL`` to pick a model.
"""

from __future__ import annotations

import os

import openai
from prometheus_client import REGISTRY, generate_latest

from llmtap.httpx2 import Transport

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


def main() -> None:
    # openai reads OPENAI_API_KEY and OPENAI_BASE_URL from the environment itself.
    client = openai.OpenAI(http_client=openai.DefaultHttpxClient(transport=Transport()))
    question = [{"role": "user", "content": "Name three uses of a transport-level LLM cache."}]
    with client:
        for attempt in (1, 2):
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=question, seed=7
            )
            completion = raw.parse()
            usage = completion.usage
            print(
                f"call {attempt}: cache={raw.headers.get('x-llmtap-cache')} "
                f"tokens={usage.total_tokens if usage else '?'}"
            )
        print("answer:", completion.choices[0].message.content)

    # Metrics.default() lives on prometheus-client's default registry.
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith(("llmtap_requests_total", "llmtap_cache_saved_tokens_total")):
            print(line)


if __name__ == "__main__":
    main()
