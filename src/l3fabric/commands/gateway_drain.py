"""``l3fabric gateway drain NAME`` / ``undrain NAME``: take a gateway out of (or back into) service.

A drained gateway withdraws what attracts new flows (its announcements
upstream, its default route to the fabric) and goes on forwarding what still
reaches it, so the flows it carried move to the other gateways of its pair
(whose synced NAT state knows them) before it is stopped (docs/gateway.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from l3fabric.client import FabricClient
from l3fabric.commands import controller_cli

ACTIONS = ("drain", "undrain")
_HELP = {
    "drain": "stop attracting new flows to gateway NAME (its pair takes them over)",
    "undrain": "put gateway NAME back into service",
}


def add_verbs(verbs: argparse._SubParsersAction) -> None:
    """``drain NAME`` and ``undrain NAME``."""
    for action in ACTIONS:
        parser = verbs.add_parser(action, help=_HELP[action])
        parser.add_argument("target", metavar="NAME", help="the gateway")
        controller_cli.add_arguments(parser)


def run(api: FabricClient, args: argparse.Namespace) -> int:
    """Drain (POST) or undrain (DELETE) ``/v1/gateways/NAME/drain``; shows the registration."""
    method = "POST" if args.verb == "drain" else "DELETE"
    record = api.request(method, f"/v1/gateways/{args.target}/drain")
    controller_cli.emit(args, record, _render)
    return 0


def _render(record: dict[str, Any]) -> str:
    state = "drained" if record.get("drain") else "in service"
    return f"gateway {record.get('name')}: {state}"
