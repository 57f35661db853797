"""``llmtap demo``: the main job runs end to end with no account."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run(
        [sys.executable, "-m", "llmtap.cli", "demo", "--dir", str(tmp_path / "c"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_demo_shows_the_cache_at_work(tmp_path: Path) -> None:
    port = str(free_port())
    result = run_demo(tmp_path, "--upstream-port", port)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "local fake upstream" in out
    assert " miss " in out and " hit " in out and " bypass " in out
    assert "summary (from llmtap's Prometheus metrics)" in out
    assert "hit ratio    47%" in out and "saved by the cache" in out
    assert "cache        hit 8, miss 8, bypass 1" in out
    # spans go to the console, one compact line per call
    spans = [line for line in out.splitlines() if line.startswith("  span  chat gpt-4o-mini")]
    assert len(spans) == 17 and sum("cache=hit" in line for line in spans) == 8
    # a second run over the same directory is answered from the cache
    again = run_demo(tmp_path, "--calls", "4", "--upstream-port", port)
    assert again.returncode == 0, again.stderr
    calls = [line for line in again.stdout.splitlines() if line[:4].strip().isdigit()]
    assert len(calls) == 4 and all(" hit " in line for line in calls)


def test_demo_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def fake(name, *a, **k):\n"
        "    if name == 'openai': raise ImportError('no openai')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = fake\n"
        "from llmtap.cli import main\n"
        "sys.exit(main(['demo']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "pip install 'llmtap[demo]'" in result.stderr
    assert "Traceback" not in result.stderr


def hits(exposition: str) -> float:
    """Hit requests counted in a Prometheus exposition, summed over label sets."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith("llmtap_requests_total{") and 'cache="hit"' in line
    )


def test_demo_serves_metrics_while_it_runs(tmp_path: Path) -> None:
    import time
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    port = str(free_port())
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmtap.cli",
            "demo",
            "--serve",
            "--port",
            port,
            "--upstream-port",
            str(free_port()),
            "--dir",
            str(tmp_path / "c"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 90
        body = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
            except OSError:
                body = ""
            if hits(body) == 8:
                break
            time.sleep(0.5)
        assert hits(body) == 8, body[-2000:]
        assert "llmtap_cache_saved_tokens_total" in body
        assert proc.poll() is None  # --serve keeps it running for a scrape
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
