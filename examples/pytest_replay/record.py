"""Re-record ./recordings against a local FakeUpstream (no account needed).

    python record.py          # then commit recordings/

The tests talk to the stable http://llm.example.test/v1; an HTTP proxy
pointing at the fake answers for it, so the recorded keys stay the ones the
replay run computes. With a real provider you would instead run
``EXAMPLE_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=... pytest --llmtap-mode=read_write``.
"""

import os
import subprocess
import sys
from pathlib import Path

from llmtap.testing import FakeUpstream

HERE = Path(__file__).parent

if __name__ == "__main__":
    with FakeUpstream() as fake:
        os.environ.update(HTTP_PROXY=f"http://127.0.0.1:{fake.port}", NO_PROXY="", no_proxy="")
        os.environ.pop("http_proxy", None)
        os.environ.pop("EXAMPLE_BASE_URL", None)
        # record, not read_write: every call goes upstream again, so the files are
        # re-recorded (byte for byte the same when the answers did not change)
        command = [sys.executable, "-m", "pytest", "--llmtap-mode=record", "-q"]
        code = subprocess.run(command, cwd=HERE, check=False).returncode
        print(f"the fake upstream answered {fake.request_count} requests", file=sys.stderr)
    sys.exit(int(code))
