"""Deterministic OpenAI-shaped answers: request JSON in, status and body chunks out.

The entry point ``FakeUpstream`` and the reliability tests import; it routes a
request to the builder for its API (``chat``, ``completions``, ``embeddings``,
``responses``), each built on ``context`` (what the request decides) and
``reply`` (how an answer is framed).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from llmtap._fake.chat import chat_answer
from llmtap._fake.completions import completion_answer
from llmtap._fake.context import RequestContext
from llmtap._fake.embeddings import embeddings_answer
from llmtap._fake.reply import Answer, error_answer
from llmtap._fake.responses import responses_answer

__all__ = ["Answer", "build_answer", "error_answer"]


def build_answer(method: str, path: str, body: bytes) -> Answer:
    """The one place that decides a reply; both the mock handler and the server use it."""
    route = next(((s, fn) for s, fn in _ROUTES if path.endswith(s)), None)
    if method.upper() != "POST" or route is None:
        return error_answer(404, f"Invalid URL ({method.upper()} {path})", "invalid_request_error")
    try:
        req = json.loads(body)
    except (ValueError, RecursionError):
        req = None
    if not isinstance(req, dict):
        message = "We could not parse the JSON body of your request: expected a JSON object."
        return error_answer(400, message, "invalid_request_error")
    suffix, fn = route
    return fn(RequestContext(suffix, req))


_ROUTES: tuple[tuple[str, Callable[[RequestContext], Answer]], ...] = (
    ("/chat/completions", chat_answer),
    ("/completions", completion_answer),
    ("/embeddings", embeddings_answer),
    ("/responses", responses_answer),
)
