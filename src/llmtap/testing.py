"""Test helpers: :class:`FakeUpstream`, a deterministic OpenAI-compatible upstream.

Why it exists: llmtap sits at the HTTP transport, so its behaviour (caching,
stream reassembly, usage metering, retries, decompression) can only be tested
against something that speaks the OpenAI wire format exactly, including the
awkward parts: SSE chunk boundaries, ``stream_options.include_usage``, ``n``,
length-truncated and tool-call answers, cached and reasoning token details,
429s with ``retry-after``, streams that die half-way, compressed bodies. Real
APIs are slow, cost money and are not deterministic; this fake answers the same
request with the same bytes every time, and its answers parse with the official
``openai`` SDK.

One object, two ways to use it::

    fake = FakeUpstream()
    client = httpx2.Client(transport=httpx2.MockTransport(fake))   # or httpx
    openai.OpenAI(api_key="x", base_url="http://fake/v1", http_client=client)

    with FakeUpstream() as fake:                                   # a real server
        openai.OpenAI(api_key="x", base_url=fake.base_url)

Faults (``fail_next``, ``drop_stream_after``, ``error_event_after``, ``latency``,
``chunk_delay``, ``content_encoding``) and introspection (``requests``,
``request_count``, ``reset``) are thread-safe and work the same in both modes.
"""

from __future__ import annotations

import hashlib
import importlib
import json as _json
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from llmtap._fake.answers import Answer, build_answer, error_answer
from llmtap._fake.encoding import ENCODINGS, encode
from llmtap._fake.server import FakeServer, Reply
from llmtap._fake.streams import make_stream

__all__ = ["FakeUpstream", "ReceivedRequest"]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request the fake received, as the client sent it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes
    json: dict[str, Any] | None  # the body, when it is a JSON object


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    retry_after: float | None
    body: bytes | None


_ERROR_KINDS = {
    400: ("invalid_request_error", None, "Bad request"),
    401: ("authentication_error", "invalid_api_key", "Incorrect API key provided"),
    403: ("permission_error", None, "You are not allowed to do this"),
    404: ("invalid_request_error", None, "Not found"),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached for requests"),
}


class FakeUpstream:
    """A deterministic OpenAI-compatible upstream: a ``MockTransport`` handler and a server.

    Keywords:
        latency: seconds to wait before each response starts.
        chunk_delay: seconds to wait between stream events.
        content_encoding: ``"gzip"``, ``"deflate"``, ``"br"`` or ``"zstd"`` to compress
            every body (streams are flushed per event, so events still arrive one by one).

    The three are also plain attributes you may change between requests.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        content_encoding: str | None = None,
        port: int = 0,
    ) -> None:
        if content_encoding is not None and content_encoding not in ENCODINGS:
            raise ValueError(f"content_encoding must be one of {ENCODINGS} or None")
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.content_encoding = content_encoding
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._failures: deque[_Failure] = deque()
        self._drops: deque[int] = deque()
        self._error_events: deque[int] = deque()
        self._server: FakeServer | None = None
        self._port = port

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        status: int = 500,
        *,
        count: int = 1,
        retry_after: float | None = None,
        body: bytes | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` and an OpenAI error JSON.

        429 gets type ``rate_limit_error`` / code ``rate_limit_exceeded``, 5xx
        ``server_error``; ``retry_after`` adds a ``retry-after`` header; ``body``
        replaces the error JSON verbatim. (The openai SDK retries 429 and 5xx
        unless ``max_retries=0``; every attempt consumes one failure.)
        """
        with self._lock:
            self._failures.extend([_Failure(status, retry_after, body)] * count)

    def drop_stream_after(self, events: int, *, count: int = 1) -> None:
        """Cut the next ``count`` streams after ``events`` SSE events.

        On the server the socket closes without the final chunk (the client sees an
        incomplete chunked read); through ``MockTransport`` the body raises the
        library's ``ReadError``. Non-stream answers neither drop nor consume the fault; a
        stream with no more than ``events`` events is sent whole (the fault is used up).
        """
        with self._lock:
            self._drops.extend([events] * count)

    def error_event_after(self, events: int, *, count: int = 1) -> None:
        """Make the next ``count`` streams send ``events`` events, then an SSE error event.

        The error event is ``data: {"error": {"message": ..., "type": "server_error"}}``
        and the stream then ends normally, without ``data: [DONE]``.
        """
        with self._lock:
            self._error_events.extend([events] * count)

    def reset(self) -> None:
        """Forget received requests and every pending fault."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._drops.clear()
            self._error_events.clear()

    # ----------------------------------------------------------- introspection

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    # ------------------------------------------------------------ mock handler

    def __call__(self, request: Any) -> Any:
        """Handle an ``httpx.Request`` or ``httpx2.Request``; returns that library's Response."""
        lib = importlib.import_module(type(request).__module__.split(".")[0])
        query = request.url.query
        headers: dict[str, str] = {}
        for key, value in request.headers.multi_items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        reply = self._reply(
            request.method,
            request.url.path,
            query.decode("ascii", "replace") if isinstance(query, bytes) else str(query),
            headers,
            request.content,
        )
        if reply.latency > 0:
            time.sleep(reply.latency)
        dropped = "The fake upstream dropped the stream." if reply.dropped else None
        stream = make_stream(
            lib,
            reply.chunks if reply.stream else [b"".join(reply.chunks)],
            delay=reply.chunk_delay,
            drop_message=dropped,
            request=request,
        )
        return lib.Response(reply.status, headers=reply.headers, stream=stream, request=request)

    # ------------------------------------------------------------------ server

    def start(self) -> Self:
        """Start serving on ``127.0.0.1`` at ``port`` (0: an ephemeral one; no-op if running)."""
        with self._lock:
            if self._server is None:
                self._server = FakeServer(self._reply, self._port)
        return self

    def stop(self) -> None:
        """Stop the server, close its socket and every open connection (no-op if stopped)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()

    @property
    def port(self) -> int:
        server = self._server
        if server is None:
            raise RuntimeError("FakeUpstream is not serving; use `with FakeUpstream()` or start()")
        return int(server.port)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``openai.OpenAI(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- shared

    def _reply(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Reply:
        """Record the request and decide the whole reply; both modes deliver this."""
        try:
            parsed = _json.loads(body) if body else None
        except (ValueError, RecursionError):
            parsed = None
        received = ReceivedRequest(
            method, path, query, headers, body, parsed if isinstance(parsed, dict) else None
        )
        with self._lock:
            self._requests.append(received)
            seq = len(self._requests)
            failure = self._failures.popleft() if self._failures else None
        answer = _failure_answer(failure) if failure else build_answer(method, path, body)

        chunks, dropped = answer.chunks, False
        if answer.stream:
            with self._lock:
                error_at = self._error_events.popleft() if self._error_events else None
                drop_at = self._drops.popleft() if self._drops else None
            if error_at is not None:
                chunks = [*chunks[:error_at], answer.error_event]
            if drop_at is not None and drop_at < len(chunks):
                chunks, dropped = chunks[:drop_at], True
        else:
            chunks = [b"".join(chunks)]

        encoding = self.content_encoding
        if encoding:
            chunks = encode(chunks, encoding, finish=not dropped)
        request_id = hashlib.sha256(b"%d:" % seq + body).hexdigest()[:24]
        reply_headers = [
            ("content-type", answer.content_type),
            ("x-request-id", f"req_{request_id}"),
            ("openai-version", "2020-10-01"),
            ("openai-processing-ms", str(int(self.latency * 1000) + 7)),
            ("openai-organization", "org-fake"),
            ("openai-project", "proj_fake"),
            ("set-cookie", "__cf_bm=fake; path=/"),
        ]
        if failure and failure.retry_after is not None:
            reply_headers.append(("retry-after", f"{failure.retry_after:g}"))
        if encoding:
            reply_headers.append(("content-encoding", encoding))
        if not answer.stream:
            reply_headers.append(("content-length", str(len(chunks[0]))))
        return Reply(
            answer.status,
            reply_headers,
            chunks,
            stream=answer.stream,
            dropped=dropped,
            latency=self.latency,
            chunk_delay=self.chunk_delay,
        )


def _failure_answer(failure: _Failure) -> Answer:
    if failure.body is not None:
        return Answer(failure.status, "application/json", [failure.body])
    default = ("server_error", None, "The server had an error while processing your request")
    type_, code, message = _ERROR_KINDS.get(failure.status, default)
    if failure.status < 500 and failure.status not in _ERROR_KINDS:
        type_ = "invalid_request_error"
    message += " (injected by llmtap.testing.FakeUpstream)."
    return error_answer(failure.status, message, type_, code=code)
