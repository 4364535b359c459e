"""``l3fabric trace VM_OR_IP``: where an address lives and which routers have its route."""

from __future__ import annotations

import argparse
from typing import Any

from l3fabric.client import FabricClient
from l3fabric.commands import controller_cli


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "trace",
        help="where an address or VM is and how the fabric routes it",
        description="Find an address (fixed or floating), a port id or a VM (its ports' "
        "device id) and show, per address: its port, network (external or tenant), host, "
        "security groups, floating IPs, whether it is public or leaves through source NAT "
        "at a gateway, and who has its route: the host it is bound to, the BGP peers that "
        "host announces to, and the gateways that learned it, as the agents last reported. "
        "Exits 1 when nothing matches.",
    )
    parser.add_argument("target", metavar="VM_OR_IP", help="an IP address, a port id or a VM")
    controller_cli.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return controller_cli.run("trace", args, lambda api: _trace(api, args))


def _trace(api: FabricClient, args: argparse.Namespace) -> int:
    # The controller traces (GET /v1/trace, l3fabric.fabric_trace): one request,
    # the same answer as the /ui search box.
    entries = api.request("GET", "/v1/trace", params={"query": args.target})["trace"]
    controller_cli.emit(args, entries, render)
    return 0 if entries else 1


def render(entries: list[dict[str, Any]]) -> str:
    if not entries:
        return "no port has this address, id or device"
    blocks = []
    for e in entries:
        route, reach = e["route"], e["reach"]
        origin = route["origin"] or "nowhere (the port is bound to no registered host)"
        lines = [
            f"{e['address']}  port {e['port']} ({e['port_status']}), device {e['device'] or '-'}",
            f"  network    {e['network']} ({e['network_kind']})",
            f"  host       {e['host'] or '-'}",
            f"  groups     {', '.join(e['security_groups']) or '-'}"
            + ("" if e["port_security"] else " (port security off)"),
            f"  floating   {', '.join(e['floating_ips']) or '-'}",
            f"  reach      {reach['kind']}"
            + (f" via gateway {reach['gateway']} ({reach['prefix']})" if reach["gateway"] else ""),
            f"  route at   {origin}" + ("" if route["origin_up"] else " (agent DOWN)"),
        ]
        lines += [
            f"  announced  to {a['peer']} ({a['session']}, {a['routes_out']} routes out)"
            for a in route["announced_to"]
        ]
        lines += [
            f"  learned by gateway {g['gateway']} ({g['session']}, {g['routes_in']} routes in)"
            for g in route["gateways"]
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
