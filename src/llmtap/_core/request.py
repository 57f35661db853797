"""Which requests are LLM calls, and what they ask for.

API.md "What is intercepted": a POST whose path ends in one of the OpenAI
endpoint suffixes, under any prefix. Everything else is decided on the method
and the path alone, so pass-through traffic is never parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# Longest suffix first: "/chat/completions" also ends in "/completions".
_OPERATIONS: tuple[tuple[str, str], ...] = (
    ("/chat/completions", "chat"),
    ("/embeddings", "embeddings"),
    ("/completions", "text_completion"),
    ("/responses", "chat"),
)


def classify(method: str, path: str) -> str | None:
    """The GenAI operation name for an intercepted endpoint, or ``None`` to pass through."""
    if method != "POST":
        return None
    path = path.rstrip("/")
    for suffix, operation in _OPERATIONS:
        if path.endswith(suffix):
            return operation
    return None


def parse_body(raw: bytes) -> dict[str, Any] | None:
    """The request body as a JSON object, or ``None`` when it is anything else.

    Invalid JSON, invalid UTF-8, NaN, nesting deeper than orjson allows and
    non-object documents all make the call a plain pass-through.
    """
    try:
        body = orjson.loads(raw)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


@dataclass(slots=True)
class RequestFacts:
    """The parts of an HTTP request the core reads, library-agnostic.

    ``headers`` holds only what llmtap reads (its cache control header and the
    SDK's retry count), never credentials.
    """

    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    extensions: Any = None


@dataclass(slots=True)
class LLMCall:
    """One intercepted call, as the core sees it: the request and its JSON body."""

    operation: str
    request: RequestFacts
    body: dict[str, Any]

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def host(self) -> str:
        return self.request.host

    @property
    def port(self) -> int:
        return self.request.port

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def query(self) -> list[tuple[str, str]]:
        return self.request.query

    @property
    def headers(self) -> dict[str, str]:
        return self.request.headers

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def api_type(self) -> str:
        """``responses`` for the Responses API, else the operation's own API."""
        return "responses" if self.path.rstrip("/").endswith("/responses") else self.operation
