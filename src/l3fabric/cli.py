"""l3fabric: pure-L3 cloud networking. Run the controller and the agents, look at
the fabric's health, trace an address, manage hosts, gateways, the fabric's BGP
settings and anycast groups, or build a lab in network namespaces."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib import metadata

from l3fabric import logs

DESCRIPTION = __doc__

# Each module defines ``register(subparsers)``, which adds its parser and sets
# ``func`` (called with the parsed args, returning the exit code).
COMMANDS = [
    "server", "agent", "gateway", "lab", "bench", "demo", "anycast",
    "status", "trace", "host", "fabric",
]  # fmt: skip

# Modules of the optional ``lab`` extra; the daemons run without them.
LAB_EXTRA_MODULES = {"rich", "yaml"}


def version() -> str:
    """The installed package's version."""
    try:
        return metadata.version("l3fabric")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _register(sub: argparse._SubParsersAction, name: str) -> None:
    """Add command ``name``; one whose extra is not installed says how to get it."""
    try:
        module = importlib.import_module(f"l3fabric.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in LAB_EXTRA_MODULES:
            raise
        hint = f"needs the lab extra: pip install 'l3fabric[lab]' ({exc.name} is missing)"
        p = sub.add_parser(name, help=hint, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=lambda _args: _missing_extra(name, hint))
        return
    module.register(sub)


def _missing_extra(name: str, hint: str) -> int:
    print(f"l3fabric {name}: {hint}", file=sys.stderr)
    return 2


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of command ``only`` alone."""
    parser = argparse.ArgumentParser(prog="l3fabric", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version", version=f"l3fabric {version()}")
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="log lines as text (default) or as one JSON object each (for log collectors)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [only] if only else COMMANDS:
        _register(sub, name)
    return parser


def _command(argv: list[str]) -> str | None:
    """The command ``argv`` names, if it is one of ours (global options come first)."""
    rest = iter(argv)
    first = None
    for arg in rest:
        if arg == "--log-format":
            next(rest, None)  # its value is not a command
        elif not arg.startswith("-"):
            first = arg
            break
    return first if first in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    # Only the named command's module is imported: an agent's start must not
    # pay for the web stack, the lab and the benchmarks (~0.2 s of ~0.6 s).
    # Anything else (help, a typo) gets the parser of every command.
    parser = build_parser(_command(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    logs.configure(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    # One line per HTTP request drowns what matters (agents poll and heartbeat).
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
