"""litellm through llmtap: litellm's OpenAI provider uses the httpx 0.28 client you give it.

Run it:

    pip install llmtap litellm
    export OPENAI_API_KEY=sk-...
    export OPENAI_BASE_URL=http://127.0.0.1:8000/v1   # optional
    python examples/litellm_call.py

``litellm.client_session`` (sync) and ``litellm.aclient_session`` (async) are the
httpx clients litellm hands to the openai SDK (``openai/`` and ``azure/`` models);
give them an llmtap transport before the first call (litellm caches its clients).
Other providers (``groq/``, ``openrouter/``, ...) use litellm's own handler instead:
pass ``client=HTTPHandler(client=httpx.Client(transport=Transport()))`` per call.
litellm fetches a model price list from the network at import time unless
``LITELLM_LOCAL_MODEL_COST_MAP=True``, which this example sets (offline-friendly).
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import httpx  # after the environment litellm reads at import
import litellm

from llmtap.httpx import Transport

MODEL = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")


def main() -> None:
    litellm.client_session = httpx.Client(transport=Transport(), timeout=60)
    try:
        for attempt in (1, 2):
            response = litellm.completion(
                model=f"openai/{MODEL}",
                api_base=os.environ.get("OPENAI_BASE_URL"),  # None: api.openai.com
                messages=[{"role": "user", "content": "One sentence on caching."}],
                seed=5,
            )
            headers = response._hidden_params.get("additional_headers", {})
            print(
                f"call {attempt}: cache={headers.get('llm_provider-x-llmtap-cache')} "
                f"tokens={response.usage.total_tokens}"
            )
        print("answer:", response.choices[0].message.content)
    finally:
        litellm.client_session.close()


if __name__ == "__main__":
    main()
