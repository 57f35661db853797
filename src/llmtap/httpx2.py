"""llmtap for ``httpx2`` (2.x): openai 3.x, anthropic 2.x and pydantic-ai.

import openai
from llmtap.httpx2 import Transport

client = openai.OpenAI(http_client=openai.DefaultHttpxClient(transport=Transport()))
"""

from __future__ import annotations

import httpx2

from llmtap._transport import AsyncDriver, SyncDriver

__all__ = ["AsyncTransport", "Transport"]


class Transport(SyncDriver, httpx2.BaseTransport, lib=httpx2):
    """For ``httpx2.Client`` and so ``openai.OpenAI``: caches, traces and meters LLM calls."""


class AsyncTransport(AsyncDriver, httpx2.AsyncBaseTransport, lib=httpx2):
    """For ``httpx2.AsyncClient`` and ``openai.AsyncOpenAI``; keywords as :class:`Transport`."""
