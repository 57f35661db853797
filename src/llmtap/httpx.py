"""llmtap for ``httpx`` (0.28): litellm, respx-based code and older SDKs.

import httpx
from llmtap.httpx import Transport

client = httpx.Client(transport=Transport())
"""

from __future__ import annotations

from types import ModuleType
from typing import ClassVar

import httpx

from llmtap._transport import AsyncDriver, SyncDriver

__all__ = ["AsyncTransport", "Transport"]


class Transport(SyncDriver, httpx.BaseTransport):
    """An ``httpx.BaseTransport`` that caches, traces and meters LLM calls.

    Keywords are in API.md, "Transport keywords"; all four transports take the same.
    """

    _lib: ClassVar[ModuleType] = httpx

    def _default_inner(self) -> httpx.BaseTransport:
        return httpx.HTTPTransport()


class AsyncTransport(AsyncDriver, httpx.AsyncBaseTransport):
    """The ``httpx.AsyncBaseTransport`` twin of :class:`Transport`."""

    _lib: ClassVar[ModuleType] = httpx

    def _default_inner(self) -> httpx.AsyncBaseTransport:
        return httpx.AsyncHTTPTransport()
