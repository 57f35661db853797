"""A loopback HTTP/1.1 server that answers every request with fixed raw bytes
(or never answers), for faults FakeUpstream does not make."""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any


class RawServer:
    def __init__(self, response: bytes | None) -> None:
        """``response``: the whole HTTP response to send; ``None`` to never answer."""
        self.response = response
        self.requests = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._open.append(conn)
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(body) < length:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                body += chunk
            self.requests += 1
            if self.response is None:
                self._stop.wait()  # accept, read, never answer
                return
            conn.sendall(self.response)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._open:
            try:
                conn.close()
            except OSError:
                pass

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def http_response(
    body: bytes,
    content_type: str = "application/json",
    status: str = "200 OK",
    chunked: bool = False,
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    headers = [("content-type", content_type), ("connection", "close"), *(extra or [])]
    if chunked:
        headers.append(("transfer-encoding", "chunked"))
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _pieces(body)) + b"0\r\n\r\n"
    else:
        headers.append(("content-length", str(len(body))))
        payload = body
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode() + payload


def _pieces(body: bytes) -> list[bytes]:
    events = body.split(b"\n\n")
    out = [e + b"\n\n" for e in events[:-1]]
    if events[-1]:
        out.append(events[-1])
    return [p for p in out if p]


class Unanswered:
    """A bound socket that never listens: connection refused."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def close(self) -> None:
        self._sock.close()


class FullBacklog:
    """A listening socket whose accept queue is full: SYNs are dropped, connect times out."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self._fill = []
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(self._sock.getsockname())
            except BlockingIOError:
                pass
            self._fill.append(c)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    def close(self) -> None:
        for c in self._fill:
            c.close()
        self._sock.close()


def close_all(*things: Any) -> None:
    for thing in things:
        thing.close()


__all__ = ["FullBacklog", "RawServer", "TracebackType", "Unanswered", "close_all", "http_response"]
