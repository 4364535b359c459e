"""``lab up``: build a topology in namespaces and start everything in it.

Order: state directory and plan; namespaces, veths and addresses; BIRD on
the ToRs and the internet router; the controller; the fabric configuration
and every host and gateway registered with it (a gateway with its upstream
and fabric peers and the fabric's infrastructure prefixes); the gateway
agents (each starts its gateway's BIRD) and the host agents; then a bounded
wait until the routers' BGP sessions are established. Without agents the lab
renders the gateways' BIRD itself, with the same gateway policy. Any failure tears the half-built lab
down again, so a failed ``lab up`` leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from l3fabric.client import FabricClient
from l3fabric.lab import bird, carrier, netns, processes, routers
from l3fabric.lab.credentials import lab_client, write_credentials
from l3fabric.lab.down import down
from l3fabric.lab.errors import LabError
from l3fabric.lab.plan import ROUTER_ROLES, Plan, build_plan
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import Topology

SESSION_WAIT_S = 30.0

Step = Callable[[str], None]


def fabric_config(
    host_asn: str = "per-host",
    password: str | None = routers.PASSWORD,
    import_limit: int = routers.IMPORT_LIMIT,
) -> dict[str, Any]:
    """The controller's fabric config: the topology's host AS mode, session password and
    import limit, timers equal to the routers'."""
    return {
        "peering": "gateway",
        "host_asn": host_asn,
        "keepalive_s": routers.KEEPALIVE_S,
        "hold_s": routers.HOLD_S,
        "bfd": {
            "enabled": True,
            "interval_ms": routers.BFD_INTERVAL_MS,
            "multiplier": routers.BFD_MULTIPLIER,
        },
        "graceful_restart": {"enabled": True, "restart_time_s": routers.GRACEFUL_RESTART_S},
        "bgp_password": password,
        "bgp_import_limit": import_limit,
    }


def _peers(plan: Plan, node: str) -> list[dict[str, Any]]:
    """The node's BGP neighbours as the controller wants them (one per family, from the link)."""
    return [
        {
            "name": routers.peer_label(s),
            "address": s.remote,
            "asn": s.peer_asn,
            "local": s.local,
        }
        for s in plan.sessions(node)
    ]


def gateway_registration(plan: Plan, gateway: str) -> dict[str, Any]:
    """The gateway's registration: its upstream and fabric peers, SNAT address, infrastructure."""
    gw = plan.node(gateway)
    sessions = plan.sessions(gateway)
    peers = _peers(plan, gateway)
    upstream_names = {routers.peer_label(s) for s in sessions if s.peer_role == "internet"}
    snat = next(
        (s.local for s in sessions if s.peer_role == "internet" and ":" not in s.local), None
    )
    body: dict[str, Any] = {
        "router_id": gw.router_id or "",
        "asn": gw.asn,
        "fabric_addresses": [s.local for s in sessions if s.peer_role != "internet"],
        "upstream": [p for p in peers if p["name"] in upstream_names],
        "fabric_peers": [p for p in peers if p["name"] not in upstream_names],
        "infrastructure": plan.infrastructure,
    }
    if plan.snat_pool is not None:
        body.update(pair_registration(plan, gateway))
    elif snat is not None:
        body["snat_address"] = snat
    return body


def pair_registration(plan: Plan, gateway: str) -> dict[str, Any]:
    """A pair gateway's shared pool, its slice of the ports and its end of the sync link."""
    names = [g.name for g in plan.by_role("gateway")]
    body: dict[str, Any] = {
        "snat_pool": plan.snat_pool,
        "snat_index": names.index(gateway),
        "snat_slices": len(names),
    }
    for link in plan.links:
        if link.kind == "sync" and gateway in (link.a, link.b):
            mine, other = (link.a4, link.b4) if link.a == gateway else (link.b4, link.a4)
            ifname = link.a_ifname if link.a == gateway else link.b_ifname
            body["sync"] = {
                "interface": ifname,
                "local": mine.split("/")[0],
                "peer": other.split("/")[0],
            }
    return body


def register(client: FabricClient, plan: Plan) -> None:
    """Tell the controller the fabric config, every gateway and every host."""
    fabric = fabric_config(plan.host_asn, plan.bgp_password, plan.bgp_import_limit)
    client.set_fabric({"asn": plan.fabric_asn, **fabric})
    for gw in plan.by_role("gateway"):
        client.request("PUT", f"/v1/gateways/{gw.name}", json=gateway_registration(plan, gw.name))
    for host in plan.by_role("host"):
        sessions = plan.sessions(host.name)
        client.register_host(
            host.name,
            router_id=host.router_id or "",
            address=next(s.local for s in sessions if ":" not in s.local),
            # host_asn "same": no AS of its own, the fabric's (the API's default).
            asn=host.asn if plan.host_asn == "per-host" else None,
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


def _controllers(plan: Plan) -> str:
    return "controller" if plan.controllers == 1 else f"{plan.controllers} controllers"


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
        if agents and plan.by_role("gateway"):
            processes.require_command("gateway")
    # With agents, each gateway's agent runs its BIRD; otherwise the lab does.
    agent_roles = ("gateway",) if agents and not network_only else ()
    state.create()
    state.save_plan(plan)
    try:
        step(f"namespaces and links ({len(plan.nodes)} namespaces, {len(plan.links)} links)")
        netns.create(plan)
        netns.configure(plan)
        for ns, names in carrier.repair(plan).items():
            step(f"{ns}: {', '.join(names)} had no carrier: set down and up again")
        step("BIRD on the routers")
        for r in plan.by_role(*ROUTER_ROLES):
            if r.role not in agent_roles:
                processes.start_bird(state, plan, r.name)
        if not network_only:
            step(f"{_controllers(plan)} on {', '.join(plan.api_urls())}")
            write_credentials(state, plan)
            processes.start_store(state, plan)
            processes.start_servers(state, plan)
            with lab_client(plan) as client:
                register(client, plan)
            if agents:
                step("gateway agents")
                for gw in plan.by_role("gateway"):
                    processes.start_gateway_agent(state, plan, gw.name)
                step("host agents")
                for host in plan.by_role("host"):
                    processes.start_agent(state, plan, host.name)
        step("BGP sessions between routers")
        wait_for_router_sessions(state, plan)
    except BaseException:
        down(plan.lab)
        raise
    return plan
