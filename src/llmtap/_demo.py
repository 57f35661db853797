"""``llmtap demo`` (placeholder until written)."""

from __future__ import annotations

import argparse


def run_demo(args: argparse.Namespace) -> int:
    raise SystemExit("not yet")
