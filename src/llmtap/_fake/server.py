"""A real HTTP/1.1 server on 127.0.0.1 that delivers the fake's replies.

Streams go out with ``Transfer-Encoding: chunked``, one HTTP chunk per SSE event,
written straight to the socket, so a client sees each event when it is produced.
A dropped stream closes the socket without the terminating zero-length chunk.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Reply:
    """A fully decided reply: status, headers, body chunks, and how to deliver them."""

    status: int
    headers: list[tuple[str, str]]
    chunks: list[bytes]
    stream: bool = False
    dropped: bool = False  # end the body abruptly after ``chunks``
    latency: float = 0.0
    chunk_delay: float = 0.0


# (method, path, query, headers, body) -> Reply
Responder = Callable[[str, str, str, dict[str, str], bytes], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    allow_reuse_address = True

    def __init__(self, responder: Responder, port: int = 0) -> None:
        self.responder = responder
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            (self._connections.add if alive else self._connections.discard)(conn)

    def close_connections(self) -> None:
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-stream is normal in tests; stay quiet


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Small writes (one SSE event each) must leave at once, not wait for Nagle.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        try:
            self._answer()
        except (ConnectionError, OSError):
            self.close_connection = True

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self) -> None:
        body = self._read_body()
        path, _, query = self.path.partition("?")
        headers: dict[str, str] = {}
        for key, value in self.headers.items():
            key = key.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        reply = self.server.responder(self.command, path, query, headers, body)
        if reply.latency > 0:
            time.sleep(reply.latency)
        self.send_response(reply.status)
        for key, value in reply.headers:
            self.send_header(key, value)
        if reply.stream:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if not reply.stream:
            self.wfile.write(b"".join(reply.chunks))
            return
        for i, chunk in enumerate(reply.chunks):
            if i and reply.chunk_delay > 0:
                time.sleep(reply.chunk_delay)
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if reply.dropped:
            self.close_connection = True  # no terminating chunk: the client sees a cut body
            return
        self.wfile.write(b"0\r\n\r\n")


class FakeServer:
    """Owns the listening socket and the thread running it."""

    def __init__(self, responder: Responder, port: int = 0) -> None:
        self._server = _Server(responder, port)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"llmtap-fake-upstream-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)
