"""What every command that talks to the controller shares: ``--api``, credentials, ``-f``, errors.

``--api URL`` defaults to ``$OS_ENDPOINT``, else ``$L3FABRIC_API``, else the
local controller; the token comes from ``--token-file`` or ``$OS_TOKEN`` (as
the ``openstack`` CLI's). ``-f table`` (default) or ``-f json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from l3fabric import credentials
from l3fabric.client import ApiError, ControllerUnavailable, FabricClient

LOCAL_API = "http://127.0.0.1:9696"
API_ENVS = ("OS_ENDPOINT", "L3FABRIC_API")
FORMATS = ("table", "json")


def add_arguments(parser: argparse.ArgumentParser, formats: bool = True) -> None:
    """``--api``, ``--token-file``, ``--ca`` and (``formats``) ``-f``.

    Defaults are SUPPRESS so that options given before a verb survive the
    verb's own parser (argparse copies a subparser's defaults over them)."""
    parser.add_argument(
        "--api",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"the controller (default: $OS_ENDPOINT, $L3FABRIC_API or {LOCAL_API})",
    )
    credentials.add_arguments(parser)
    if formats:
        parser.add_argument(
            "-f",
            "--format",
            choices=FORMATS,
            default=argparse.SUPPRESS,
            help="output as a table (default) or as JSON",
        )


def api_url(args: argparse.Namespace) -> str:
    """``--api``, else the environment, else the local controller."""
    given = getattr(args, "api", None)
    return given or next((os.environ[e] for e in API_ENVS if os.environ.get(e)), LOCAL_API)


def output_format(args: argparse.Namespace) -> str:
    return getattr(args, "format", None) or "table"


def client(args: argparse.Namespace, timeout: float = 10.0) -> FabricClient:
    """A client of the controller ``args`` name, with their credentials."""
    return FabricClient(
        api_url(args), timeout=timeout, credentials=credentials.Credentials.from_args(args)
    )


def run(command: str, args: argparse.Namespace, action: Callable[[FabricClient], int]) -> int:
    """``action`` with a client; a controller error is one line on stderr and exit code 1."""
    try:
        api = client(args)
    except credentials.CredentialsError as exc:
        print(f"l3fabric {command}: {exc}", file=sys.stderr)
        return 2
    with api:
        try:
            return action(api)
        except ApiError as exc:
            print(f"l3fabric {command}: {exc.message} ({exc.type})", file=sys.stderr)
            return 1
        except ControllerUnavailable as exc:
            print(f"l3fabric {command}: cannot reach the controller: {exc}", file=sys.stderr)
            return 1


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns, two spaces apart."""
    cells = [[str(c) for c in header], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def emit(args: argparse.Namespace, data: Any, as_table: Callable[[Any], str]) -> None:
    """Print ``data`` as JSON (``-f json``) or through ``as_table``."""
    if output_format(args) == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(as_table(data))
