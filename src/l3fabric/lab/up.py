"""``lab up``: build a topology in namespaces and start everything in it.

Order: state directory and plan; namespaces, veths and addresses; BIRD on
the routers; the controller; the fabric configuration and every host and
gateway registered with it; the host agents; then a bounded wait until the
routers' BGP sessions are established. Any failure tears the half-built lab
down again, so a failed ``lab up`` leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from l3fabric.client import FabricClient
from l3fabric.lab import bird, netns, processes, routers
from l3fabric.lab.down import down
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import ROUTER_ROLES, Plan, build_plan
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import Topology

SESSION_WAIT_S = 30.0

Step = Callable[[str], None]


def fabric_config() -> dict[str, Any]:
    """The controller's fabric config: eBGP per host, timers equal to the lab routers'."""
    return {
        "peering": "gateway",
        "host_asn": "per-host",
        "keepalive_s": routers.KEEPALIVE_S,
        "hold_s": routers.HOLD_S,
        "bfd": {
            "enabled": True,
            "interval_ms": routers.BFD_INTERVAL_MS,
            "multiplier": routers.BFD_MULTIPLIER,
        },
        "graceful_restart": {"enabled": True, "restart_time_s": routers.GRACEFUL_RESTART_S},
    }


def _peers(plan: Plan, node: str) -> list[dict[str, Any]]:
    """The node's BGP neighbours as the controller wants them (one per family)."""
    return [
        {
            "name": s.peer if ":" not in s.remote else f"{s.peer}-v6",
            "address": s.remote,
            "asn": s.peer_asn,
        }
        for s in plan.sessions(node)
    ]


def register(client: FabricClient, plan: Plan) -> None:
    """Tell the controller the fabric config, every gateway and every host."""
    client.set_fabric({"asn": plan.fabric_asn, **fabric_config()})
    for gw in plan.by_role("gateway"):
        sessions = plan.sessions(gw.name)
        fabric = [s.local for s in sessions if s.peer_role != "internet"]
        upstream = [p for p in _peers(plan, gw.name) if p["name"].startswith("internet")]
        snat = next(
            (s.local for s in sessions if s.peer_role == "internet" and ":" not in s.local), None
        )
        client.register_gateway(
            gw.name,
            router_id=gw.router_id or "",
            fabric_addresses=fabric,
            asn=gw.asn,
            upstream=upstream,
            snat_address=snat,
        )
    for host in plan.by_role("host"):
        sessions = plan.sessions(host.name)
        client.register_host(
            host.name,
            router_id=host.router_id or "",
            address=next(s.local for s in sessions if ":" not in s.local),
            asn=host.asn,
            peers=_peers(plan, host.name),
            rack=host.rack,
        )


def wait_for_router_sessions(state: LabState, plan: Plan, timeout: float = SESSION_WAIT_S) -> None:
    """Wait until every BGP session between two lab routers is established."""
    wanted = {
        r.name: {
            routers.session_name(s) for s in plan.sessions(r.name) if s.peer_role in ROUTER_ROLES
        }
        for r in plan.by_role(*ROUTER_ROLES)
    }
    deadline = time.monotonic() + timeout
    missing: dict[str, set[str]] = {}
    while time.monotonic() < deadline:
        missing = {}
        for node, names in wanted.items():
            up = {p.name for p in bird.protocols(state.bird_ctl(node)) if p.established}
            if names - up:
                missing[node] = names - up
        if not missing:
            return
        time.sleep(0.2)
    detail = "; ".join(f"{n}: {', '.join(sorted(s))}" for n, s in sorted(missing.items()))
    raise LabError(f"BGP sessions not established after {timeout:.0f} s: {detail}")


def up(
    topo: Topology, step: Step = lambda _: None, network_only: bool = False, agents: bool = True
) -> Plan:
    """Build and start lab ``topo``; ``step`` is told what happens, for progress display.

    ``network_only``: namespaces, links and routers only. ``agents=False``:
    also the controller with every host registered, but no host agent.
    """
    plan = build_plan(topo)
    state = LabState(plan.lab)
    if state.exists():
        raise LabError(f"lab {plan.lab} is already up; `l3fabric lab down {plan.lab}` first")
    if not network_only:
        processes.require_command("server")
        if agents and plan.by_role("host"):
            processes.require_command("agent")
    state.create()
    state.save_plan(plan)
    try:
        step(f"namespaces and links ({len(plan.nodes)} namespaces, {len(plan.links)} links)")
        netns.create(plan)
        netns.configure(plan)
        step("BIRD on the routers")
        for r in plan.by_role(*ROUTER_ROLES):
            processes.start_bird(state, plan, r.name)
        if not network_only:
            step(f"controller on {plan.api_url()}")
            processes.start_server(state, plan)
            with FabricClient(plan.api_url()) as client:
                register(client, plan)
            if agents:
                step("host agents")
                for host in plan.by_role("host"):
                    processes.start_agent(state, plan, host.name)
        step("BGP sessions between routers")
        wait_for_router_sessions(state, plan)
    except BaseException:
        down(plan.lab)
        raise
    return plan
