"""The ``llmtap`` command: ``llmtap demo`` and ``llmtap cache ...``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmtap", description="Cache, trace and meter OpenAI-compatible LLM calls."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run a workload through llmtap against a local fake upstream (no account)"
    )
    demo.add_argument(
        "--calls", type=int, default=None, help="calls in the workload (default: the whole plan)"
    )
    demo.add_argument("--port", type=int, default=9464, help="port for /metrics")
    demo.add_argument(
        "--serve", action="store_true", help="keep serving /metrics after the workload"
    )
    demo.add_argument(
        "--upstream-port", type=int, default=8399, help="port of the local fake upstream"
    )
    demo.add_argument("--dir", default=None, help="cache directory (default: a temporary one)")
    from llmtap._cli_cache import add_cache_commands

    add_cache_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from llmtap._demo import run_demo

        return run_demo(args)
    from llmtap._cli_cache import run_cache_command

    return run_cache_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
