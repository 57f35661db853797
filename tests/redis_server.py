"""A throwaway redis-server on a free loopback port, for tests that kill and restart it."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(program: str) -> str:
    """A Debian program the tests run; skip without it, but fail on CI, where it must be
    installed."""
    binary = shutil.which(program)
    if binary is None:
        message = f"{program} is not installed (apt-get install {program})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def require_redis_server() -> str:
    return require("redis-server")


class RedisServer:
    """``start()``, ``stop()`` (SIGKILL: an outage, not a shutdown), ``restart()`` on one port."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="llmtap-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def listen(self) -> list[str]:
        """The options that say where (and how) the server listens."""
        return ["--port", str(self.port), "--bind", "127.0.0.1"]

    def start(self) -> None:
        args = [self.binary, *self.listen()]
        args += ["--save", "", "--appendonly", "no", "--dir", self.directory]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def require_openssl() -> str:
    return require("openssl")


class TlsRedisServer(RedisServer):
    """The same throwaway server, TLS only, with a certificate from a CA made for it:
    ``url`` is a ``rediss://`` URL that trusts that CA, ``ca`` the CA file."""

    def __init__(self, binary: str, openssl: str) -> None:
        super().__init__(binary)
        self.ca = os.path.join(self.directory, "ca.crt")
        self._certificates(openssl)

    def _certificates(self, openssl: str) -> None:
        d = self.directory

        def run(*args: str) -> None:
            subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

        with open(os.path.join(d, "san.cnf"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=llmtap-test-ca", "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
        run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf",
            "-out", "server.crt")  # fmt: skip

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca}"

    def listen(self) -> list[str]:
        args = ["--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--tls-cert-file", "server.crt", "--tls-key-file", "server.key"]
        return [*args, "--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"]

    def ping(self) -> bool:
        context = ssl.create_default_context(cafile=self.ca)
        try:
            with (
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False
