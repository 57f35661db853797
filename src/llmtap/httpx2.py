"""llmtap for ``httpx2`` (2.x): openai 3.x, anthropic 2.x and pydantic-ai.

import httpx2
import openai
from llmtap.httpx2 import Transport

client = openai.OpenAI(http_client=httpx2.Client(transport=Transport()))
"""

from __future__ import annotations

from types import ModuleType
from typing import ClassVar

import httpx2

from llmtap._transport import AsyncDriver, SyncDriver

__all__ = ["AsyncTransport", "Transport"]


class Transport(SyncDriver, httpx2.BaseTransport):
    """An ``httpx2.BaseTransport`` that caches, traces and meters LLM calls.

    Keywords are in API.md, "Transport keywords"; all four transports take the same.
    """

    _lib: ClassVar[ModuleType] = httpx2

    def _default_inner(self) -> httpx2.BaseTransport:
        return httpx2.HTTPTransport()


class AsyncTransport(AsyncDriver, httpx2.AsyncBaseTransport):
    """The ``httpx2.AsyncBaseTransport`` twin of :class:`Transport`."""

    _lib: ClassVar[ModuleType] = httpx2

    def _default_inner(self) -> httpx2.AsyncBaseTransport:
        return httpx2.AsyncHTTPTransport()
