"""``l3fabric status``: is the fabric healthy? Exit 0 if so, 1 if degraded, 2 if unreachable."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from typing import Any

from l3fabric import credentials
from l3fabric.client import ApiError, ControllerUnavailable, FabricClient
from l3fabric.commands import controller_cli
from l3fabric.fabric_health import assess

HEALTHY, DEGRADED, UNREACHABLE = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status",
        help="health of the controller, every host and gateway: heartbeats, BGP, endpoints",
        description="Show the controller, then every host and gateway: heartbeat age, agent "
        "version, BGP sessions (peer, state, since, routes in and out), endpoints programmed "
        "out of expected, the last reconcile pass and its errors. Exits 0 when all is "
        "healthy, 1 when anything is degraded (a dead agent, a session down, endpoints not "
        "programmed or not announced, a failed pass) and 2 when the controller cannot be "
        "reached: usable as a monitoring check.",
    )
    controller_cli.add_arguments(parser)
    parser.set_defaults(func=run)


def fabric_report(api: FabricClient, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """(exit code, the report as JSON) of the fabric behind ``api``."""
    try:
        hosts, gateways = api.list_hosts(), api.list_gateways()
    except (ApiError, ControllerUnavailable) as exc:
        # Either way the fabric cannot be assessed: exit 2, with what failed.
        answered = isinstance(exc, ApiError)
        controller = {
            "url": api.api_url,
            "reachable": answered,
            "ready": False if answered else None,
            "error": f"{exc.message} ({exc.status})" if isinstance(exc, ApiError) else str(exc),
        }
        return UNREACHABLE, {"controller": controller, "healthy": False, "nodes": []}
    nodes = assess(hosts, gateways, time.time() if now is None else now)
    ready = _ready(api)
    healthy = all(n.healthy for n in nodes) and ready is not False
    report = {
        "controller": {"url": api.api_url, "reachable": True, "ready": ready},
        "healthy": healthy,
        "nodes": [n.to_json() for n in nodes],
    }
    return (HEALTHY if healthy else DEGRADED), report


def _ready(api: FabricClient) -> bool | None:
    """The controller's /readyz: True, False (its store does not answer), None (no such page)."""
    try:
        api.request("GET", "/readyz")
    except ApiError as exc:
        return None if exc.status == 404 else False
    except ControllerUnavailable:
        return False
    return True


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%H:%M:%S")


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f}s"


NODE_COLUMNS = ("KIND", "NAME", "AGENT", "HEARTBEAT", "VERSION", "ENDPOINTS", "LAST PASS",
                "PASS TIME", "ERRORS")  # fmt: skip
SESSION_COLUMNS = ("NODE", "SESSION", "PEER", "STATE", "SINCE", "IN", "OUT", "REJECTED")


def _node_row(n: dict[str, Any]) -> tuple[Any, ...]:
    ends = n["endpoints"] or {}
    return (
        n["kind"],
        n["name"],
        "up" if n["up"] else "DOWN",
        _age(n["heartbeat_age_s"]),
        n["version"],
        f"{ends.get('programmed', '-')}/{ends.get('expected', '-')}" if ends else "-",
        _when(n["last_pass_at"]),
        "-" if n["last_pass_s"] is None else f"{n['last_pass_s']:.3f}s",
        len(n["errors"]),
    )


def render(report: dict[str, Any]) -> str:
    """The report as text: the controller, a line per node, the sessions, the problems."""
    ctl = report["controller"]
    if "error" in ctl:
        what = "FAILING" if ctl["reachable"] else "UNREACHABLE"
        return f"controller {ctl['url']}: {what} ({ctl['error']})"
    nodes = report["nodes"]
    ready = {True: "ready", False: "NOT READY (its store does not answer)", None: "reachable"}
    lines = [
        f"controller {ctl['url']}: {ready[ctl['ready']]}; fabric {_verdict(report['healthy'])}",
        "",
        controller_cli.table(NODE_COLUMNS, [_node_row(n) for n in nodes]),
    ]
    sessions = [
        (n["name"], s["name"], s["peer"], s["state"], s["since"], s["routes_in"],
         s["routes_out"], s["rejected"])
        for n in nodes
        for s in n["sessions"]
    ]  # fmt: skip
    if sessions:
        lines += ["", controller_cli.table(SESSION_COLUMNS, sessions)]
    problems = [f"{n['kind']} {n['name']}: {p}" for n in nodes for p in n["problems"]]
    if problems:
        lines += ["", "problems:", *(f"  {p}" for p in problems)]
    return "\n".join(lines)


def _verdict(healthy: bool) -> str:
    return "healthy" if healthy else "DEGRADED"


def run(args: argparse.Namespace) -> int:
    try:
        api = controller_cli.client(args)
    except credentials.CredentialsError as exc:
        print(f"l3fabric status: {exc}", file=sys.stderr)
        return UNREACHABLE
    with api:
        code, report = fabric_report(api)
    if controller_cli.output_format(args) == "json":
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(render(report))
    return code
