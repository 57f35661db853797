"""The benchmark's quick mode runs end to end, so ``bench/`` never rots (no thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_runs_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] is True and len(report["rows"]) >= 10
    assert "llmtap" in result.stdout
    # The lower bounds that say whether a missed target can be met at all on this machine
    # run in the same run as the rows they bound.
    lower = {
        (r["scenario"], r["baseline"])
        for r in report["rows"]
        if "lower bound" in r["variant"].replace("_", " ") and r["value"] is not None
    }
    for bounded in (
        ("openai-sdk", "plain"),
        ("vs-otel", "bare openai SDK"),
        ("cache-hit", "plain"),
        ("cache-hit", "vcrpy_replay"),
        ("cache-hit", "hishel_hit"),
        ("per-test", "vcrpy_test"),
    ):
        assert bounded in lower, sorted(lower)
