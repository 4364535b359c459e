"""The ``l3fabric`` command: each subcommand lives in ``l3fabric.commands.<name>``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Each module defines ``register(subparsers)``, which adds its parser and sets
# ``func`` (called with the parsed args, returning the exit code).
COMMANDS = ["server", "agent", "gateway", "lab", "bench", "demo", "anycast"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l3fabric", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"l3fabric.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # One line per HTTP request drowns what matters (agents poll and heartbeat).
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
