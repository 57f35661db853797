"""A real Prometheus for tests: a temporary config and TSDB, loopback only, no service.

``PrometheusServer`` runs the ``prometheus`` binary (Debian package ``prometheus``;
override with ``PROMETHEUS_BIN``) on a free 127.0.0.1 port, scraping the given
targets every ``scrape_interval``; ``Exporter`` serves a prometheus-client
registry on another free loopback port. Both are context managers and clean up
everything they start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server


def prometheus_binary() -> str:
    """The path of ``prometheus``; skip without it, or fail when ``CI=true``."""
    binary = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if binary is None and Path("/usr/bin/prometheus").exists():
        binary = "/usr/bin/prometheus"
    if binary is None:
        reason = "prometheus is not installed (apt-get install -y prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI must run the live dashboard test", pytrace=False)
        pytest.skip(reason)
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Exporter:
    """``registry`` on ``http://127.0.0.1:<port>/metrics`` (prometheus-client's WSGI server)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def __enter__(self) -> Self:
        self._server, self._thread = start_http_server(0, addr="127.0.0.1", registry=self.registry)
        self.port = int(self._server.server_port)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class PrometheusServer:
    """A throwaway Prometheus scraping ``targets`` (``host:port``) under job ``job``."""

    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        *,
        job: str = "llmtap",
        scrape_interval: str = "1s",
    ) -> None:
        self.binary = prometheus_binary()
        self.workdir = workdir
        self.targets = targets
        self.job = job
        self.scrape_interval = scrape_interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._http = httpx.Client(base_url=self.url, timeout=10)

    # ------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        config = self.workdir / "prometheus.yml"
        quoted = ", ".join(f"'{t}'" for t in self.targets)
        config.write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            f"  evaluation_interval: {self.scrape_interval}\n"
            "scrape_configs:\n"
            f"  - job_name: '{self.job}'\n"
            f"    scrape_interval: {self.scrape_interval}\n"
            f"    scrape_timeout: {self.scrape_interval}\n"
            f"    static_configs:\n      - targets: [{quoted}]\n"
        )
        storage = self.workdir / "tsdb"
        storage.mkdir()
        self._log = (self.workdir / "prometheus.log").open("wb")
        self._proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited ({self._proc.returncode}):\n{self.log()}")
            try:
                if self._http.get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # ------------------------------------------------------------------- API

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        """``GET /api/v1/<path>``; returns the JSON body, whatever the status (400 included)."""
        response = self._http.get(f"/api/v1/{path}", params=params)
        body: dict[str, Any] = response.json()
        return body

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def label_values(self, label: str, match: str) -> list[str]:
        body = self.api(f"label/{label}/values", **{"match[]": match})
        assert body["status"] == "success", body
        return list(body["data"])

    def wait_for(self, expr: str, *, minimum: float = 1, timeout: float = 30) -> None:
        """Wait until the instant query ``expr`` returns a sample >= ``minimum``."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.query(expr)
            results = last.get("data", {}).get("result", [])
            if any(float(r["value"][1]) >= minimum for r in results):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{expr!r} never reached {minimum}: {last}\n{self.log()}")
