"""A plain httpx 0.28 client (no SDK) through llmtap: JSON and a streamed answer.

Run it:

    pip install llmtap
    export OPENAI_API_KEY=sk-...
    export OPENAI_BASE_URL=http://127.0.0.1:8000/v1   # default https://api.openai.com/v1
    python examples/httpx_plain.py

``llmtap.httpx`` is for httpx 0.28 (litellm, respx-based code); ``llmtap.httpx2`` for
httpx2 (openai 3, anthropic 2). Every request that is not an LLM call passes through.
"""

from __future__ import annotations

import json
import os

import httpx

from llmtap.httpx import Transport

BASE_URL = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
API_KEY = os.environ.get("OPENAI_API_KEY", "")
MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


def main() -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(
        transport=Transport(), base_url=BASE_URL, headers=headers, timeout=60
    ) as client:
        body = {
            "model": MODEL,
            "seed": 3,
            "messages": [{"role": "user", "content": "Say hello in five words."}],
        }
        for attempt in (1, 2):
            response = client.post("/chat/completions", json=body)
            response.raise_for_status()
            answer = response.json()["choices"][0]["message"]["content"]
            print(
                f"call {attempt}: status={response.status_code} "
                f"cache={response.headers.get('x-llmtap-cache')} answer={answer!r}"
            )

        stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        with client.stream("POST", "/chat/completions", json=stream_body) as response:
            events = 0
            usage = None
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                events += 1
                usage = json.loads(line[6:]).get("usage") or usage
            print(
                f"stream: cache={response.headers.get('x-llmtap-cache')} events={events} "
                f"total_tokens={usage['total_tokens'] if usage else '?'}"
            )


if __name__ == "__main__":
    main()
