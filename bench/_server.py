"""A FakeUpstream HTTP server in a child process, so it does not share our GIL."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

_CHILD = """
import sys, threading, time
from llmtap._fake import server
from llmtap.testing import FakeUpstream
# socketserver listens with a backlog of 5: a burst of connects (200 concurrent
# streams) would be reset. A deeper queue, for the benchmark's server only.
server._Server.request_queue_size = 1024
fake = FakeUpstream().start()
print(fake.port, flush=True)
def forget():
    while True:
        time.sleep(0.5)
        fake.reset()  # it records every request; keep its memory flat
threading.Thread(target=forget, daemon=True).start()
sys.stdin.read()
fake.stop()
"""


@contextlib.contextmanager
def loopback() -> Iterator[str]:
    """Yield the base URL (``http://127.0.0.1:PORT/v1``) of a FakeUpstream in a child."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
