"""llmtap for ``httpx`` (0.28): litellm, respx-based code and older SDKs.

import httpx
from llmtap.httpx import Transport

client = httpx.Client(transport=Transport())
"""

from __future__ import annotations

import httpx

from llmtap._transport import AsyncDriver, SyncDriver

__all__ = ["AsyncTransport", "Transport"]


class Transport(SyncDriver, httpx.BaseTransport, lib=httpx):
    """An ``httpx.BaseTransport`` that caches, traces and meters LLM calls (keywords: API.md)."""


class AsyncTransport(AsyncDriver, httpx.AsyncBaseTransport, lib=httpx):
    """The ``httpx.AsyncBaseTransport`` twin of :class:`Transport`, for ``httpx.AsyncClient``."""
