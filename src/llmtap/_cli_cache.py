"""``llmtap cache ...``: inspect and maintain a store (issue: record once, replay forever)."""

from __future__ import annotations

import argparse
from typing import Any


def add_cache_commands(commands: Any) -> None:
    cache = commands.add_parser("cache", help="inspect and maintain a cache store")
    cache.add_argument("action", choices=["stats"])
    cache.add_argument("--dir", default=None)


def run_cache_command(args: argparse.Namespace) -> int:
    from llmtap.cache import DiskCache

    print(DiskCache(args.dir).stats())
    return 0
