"""``l3fabric server``: run the controller (Neutron /v2.0 and fabric /v1 APIs)."""

from __future__ import annotations

import argparse
import logging
import sys

from l3fabric.server import DEFAULT_LISTEN, ServerError, parse_listen, parse_listen_in, serve


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("server", help="run the controller's HTTP API")
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the store: sqlite:///ABSOLUTE/PATH.db (default: a file in the user's data directory)",
    )
    parser.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help=f"address to serve on, repeatable (default {DEFAULT_LISTEN}; [::1]:PORT for IPv6)",
    )
    parser.add_argument(
        "--listen-in",
        action="append",
        default=[],
        metavar="NETNS=HOST:PORT",
        help="also serve on HOST:PORT inside network namespace NETNS (repeatable; needs root)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from l3fabric.store import default_store_url

    try:
        listens = [parse_listen(text) for text in args.listen or [DEFAULT_LISTEN]]
        listens += [parse_listen_in(text) for text in args.listen_in]
        level = "debug" if logging.getLogger().isEnabledFor(logging.DEBUG) else "info"
        return serve(args.store or default_store_url(), listens, log_level=level)
    except ServerError as exc:
        print(f"l3fabric server: {exc}", file=sys.stderr)
        return 2
