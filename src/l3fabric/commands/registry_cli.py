"""``list`` and ``show`` of registered hosts or gateways, shared by ``l3fabric host`` and ``gateway``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from l3fabric.client import FabricClient
from l3fabric.commands import controller_cli
from l3fabric.fabric_health import node_health


def add_verbs(verbs: argparse._SubParsersAction, kind: str) -> None:
    """``list`` and ``show NAME`` verbs for ``kind`` ("host" or "gateway")."""
    listing = verbs.add_parser("list", help=f"every registered {kind} with its agent's health")
    controller_cli.add_arguments(listing)
    show = verbs.add_parser(
        "show", help=f"one {kind}: its registration and what its agent last reported"
    )
    show.add_argument("name", metavar="NAME", help=f"the {kind}'s name")
    controller_cli.add_arguments(show)


def _rows(kind: str, views: list[dict[str, Any]]) -> str:
    now = time.time()
    rows = []
    for view in views:
        health = node_health(kind, view, now)
        sessions = health.sessions
        address = view.get("address") or ", ".join(view.get("fabric_addresses", []))
        rows.append(
            (
                view["name"],
                view.get("rack") or "-",
                view.get("router_id"),
                address,
                view.get("effective_asn"),
                view.get("status"),
                f"{sum(s.established for s in sessions)}/{len(sessions)}",
                "ok" if health.healthy else "DEGRADED",
            )
        )
    return controller_cli.table(
        ("NAME", "RACK", "ROUTER ID", "ADDRESS", "ASN", "AGENT", "BGP UP", "HEALTH"), rows
    )


def _detail(view: dict[str, Any]) -> str:
    skip = {"bgp", "agent", "nat", "anycast"}
    lines = [
        f"{key}: {value if isinstance(value, str) else json.dumps(value)}"
        for key, value in sorted(view.items())
        if key not in skip
    ]
    health = node_health("gateway" if "fabric_addresses" in view else "host", view, time.time())
    lines.append(f"health: {'ok' if health.healthy else 'DEGRADED'}")
    lines += [f"  problem: {p}" for p in health.problems]
    lines += [
        f"  session {s.name} {s.peer}: {s.state} since {s.since or '-'}, "
        f"{s.routes_in} in, {s.routes_out} out, {s.rejected} rejected"
        for s in health.sessions
    ]
    return "\n".join(lines)


def list_or_show(api: FabricClient, args: argparse.Namespace, kind: str) -> int:
    """Run ``list`` or ``show`` for ``kind``; returns the exit code."""
    if args.verb == "list":
        views = api.list_hosts() if kind == "host" else api.list_gateways()
        controller_cli.emit(args, views, lambda v: _rows(kind, v))
    else:
        view = api.get_host(args.name) if kind == "host" else api.get_gateway(args.name)
        controller_cli.emit(args, view, _detail)
    return 0
