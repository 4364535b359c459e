"""``l3fabric host list|show|register``: the compute hosts the controller knows (``/v1/hosts``)."""

from __future__ import annotations

import argparse
import json

from l3fabric.client import FabricClient
from l3fabric.commands import controller_cli, registry_cli


def parse_peer(text: str) -> dict[str, object]:
    """``NAME,ADDRESS,ASN`` as a BGP peer."""
    parts = text.split(",")
    if len(parts) != 3 or not parts[2].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a peer: use NAME,ADDRESS,ASN")
    return {"name": parts[0], "address": parts[1], "asn": int(parts[2])}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("host", help="list, show or register compute hosts")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    registry_cli.add_verbs(verbs, "host")
    reg = verbs.add_parser(
        "register",
        help="register a host (or replace its registration) so that its agent may run",
        description="Register compute host NAME: its BGP router id and the address its "
        "BGP sessions use. Without --peer the host peers as the fabric's peering mode says.",
    )
    reg.add_argument("name", metavar="NAME", help="the host's name, as its agent is started with")
    reg.add_argument("--router-id", required=True, metavar="IPV4", help="BGP router id")
    reg.add_argument("--address", required=True, metavar="IP", help="the host's fabric address")
    reg.add_argument("--asn", type=int, help="the host's own AS number (default: the fabric's)")
    reg.add_argument("--rack", help="the rack (its ToR) the host sits in")
    reg.add_argument(
        "--peer",
        action="append",
        type=parse_peer,
        metavar="NAME,ADDRESS,ASN",
        help="a BGP peer of its own, e.g. its ToR (repeat for several)",
    )
    controller_cli.add_arguments(reg)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return controller_cli.run(f"host {args.verb}", args, lambda api: _dispatch(api, args))


def _dispatch(api: FabricClient, args: argparse.Namespace) -> int:
    if args.verb != "register":
        return registry_cli.list_or_show(api, args, "host")
    record = api.register_host(
        args.name,
        router_id=args.router_id,
        address=args.address,
        asn=args.asn,
        peers=args.peer,
        rack=args.rack,
    )
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0
