"""BIRD 2 configs of the lab's own routers (ToRs, the internet router), through the shared model.

Hosts are not here (each host's agent renders its own BIRD), and neither is
the gateway's policy: it lives in ``l3fabric.gateway.bird``. The gateway agent
renders the gateway's BIRD from the controller; only a lab without agents
(``network_only`` or ``--no-agents``) has the gateway rendered here, from the
plan, by that same function. Every config is a ``routing.bird_config``
model, so the fabric has one BIRD renderer.

Every link is an eBGP session on the link's addresses (one per address
family), so no IGP and no next-hop tricks are needed. Policies, by role:

- ToR: imports everything from its hosts and the gateways, exports everything.
- internet: originates a default route to the gateways, imports what they send.
- every router announces its loopback addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from l3fabric.addresses import parse_address
from l3fabric.gateway.bird import DEFAULTS, GatewayRouting, PeerSpec, gateway_config
from l3fabric.gateway.desired import GatewayDesired
from l3fabric.lab.plan import Plan, Session
from l3fabric.routing.bird_config import (
    BgpPeer,
    BirdConfig,
    Policy,
    SessionRole,
    StaticRoute,
    protocol_name,
)
from l3fabric.routing.bird_config import render as render_bird
from l3fabric.routing.timers import Timers

# Timers shared with the hosts through the fabric config (see up.py).
KEEPALIVE_S = 3
HOLD_S = 9
BFD_INTERVAL_MS = 100
BFD_MULTIPLIER = 3
GRACEFUL_RESTART_S = 120
# The topology's defaults (fabric.bgp_password, fabric.bgp_import_limit):
# every fabric session of the lab (hosts, ToRs, gateways) is TCP-MD5 signed,
# and a gateway accepts at most so many routes from one fabric peer; the
# internet router's sessions are not the fabric's.
PASSWORD = "l3fabric-lab"
IMPORT_LIMIT = 20_000
TIMERS = Timers(
    hold_s=HOLD_S,
    keepalive_s=KEEPALIVE_S,
    bfd=True,
    bfd_interval_ms=BFD_INTERVAL_MS,
    bfd_multiplier=BFD_MULTIPLIER,
    graceful_restart=True,
    graceful_restart_s=GRACEFUL_RESTART_S,
)


def lab_timers(plan: Plan) -> Timers:
    """The routers' timers with the topology's session password and import limit."""
    return replace(TIMERS, password=plan.bgp_password, import_limit=plan.bgp_import_limit or None)


ALL = Policy("all")


def peer_label(s: Session) -> str:
    """The name of a session's peer as the controller knows it: ``r1-tor``, ``r1-tor-v6``."""
    return f"{s.peer}-v6" if ":" in s.remote else s.peer


def session_role(s: Session) -> SessionRole:
    """``up`` for a session with the internet router (a gateway's upstream), else ``p``.

    Every lab session is a peer named in a registration (hosts' ``peers``,
    gateways' ``fabric_peers`` and ``upstream``), so agents name them so too.
    """
    return "up" if s.peer_role == "internet" else "p"


def session_name(s: Session) -> str:
    """The BIRD protocol name of a session, the same in lab-rendered and agent-rendered BIRDs."""
    return protocol_name(session_role(s), peer_label(s))


def _router(plan: Plan, node: str, log_file: str, statics: tuple[StaticRoute, ...] = ()) -> str:
    n = plan.node(node)
    peers = tuple(
        BgpPeer(
            name=peer_label(s),
            address=parse_address(s.remote),
            asn=s.peer_asn,
            role=session_role(s),
            bfd=TIMERS.bfd,
            password=None if internet else plan.bgp_password,
            source_address=parse_address(s.local),
            import_policy=ALL,
            export_policy=ALL,
        )
        for s in plan.sessions(node)
        for internet in [n.role == "internet" or s.peer_role == "internet"]
    )
    config = BirdConfig(
        router_id=parse_address(n.router_id, version=4),
        local_as=n.asn or 0,
        peers=peers,
        static_routes=statics,
        **TIMERS.bird_fields(),
        announce_loopback=True,
        fast_connect=True,
        log_file=log_file,
    )
    return render_bird(config)


def tor_config(plan: Plan, node: str, log_file: str) -> str:
    return _router(plan, node, log_file)


def internet_config(plan: Plan, node: str, log_file: str) -> str:
    defaults = tuple(StaticRoute(p, action="unreachable") for p in DEFAULTS)
    return _router(plan, node, log_file, defaults)


def gateway_routing(plan: Plan, node: str, log_file: str | None = None) -> GatewayRouting:
    """The gateway's routing from the plan alone: the topology's public ranges are the subnets."""
    n = plan.node(node)
    sessions = plan.sessions(node)

    def peers(upstream: bool) -> tuple[PeerSpec, ...]:
        return tuple(
            PeerSpec(peer_label(s), parse_address(s.remote), s.peer_asn, parse_address(s.local))
            for s in sessions
            if (s.peer_role == "internet") == upstream
        )

    public = tuple(
        str(net)
        for version in (4, 6)
        for net in ipaddress.collapse_addresses(  # type: ignore[type-var]
            ipaddress.ip_network(p)
            for p in plan.public
            if ipaddress.ip_network(p).version == version
        )
    )
    accepted = (*public, *plan.infrastructure)
    return GatewayRouting(
        router_id=parse_address(n.router_id, version=4),
        local_as=n.asn or 0,
        fabric_peers=peers(upstream=False),
        upstream=peers(upstream=True),
        desired=GatewayDesired(
            public=public, private=(), fabric_import=tuple(f"{p}+" for p in accepted)
        ),
        timers=lab_timers(plan),
        log_file=log_file,
    )


def lab_gateway_config(plan: Plan, node: str, log_file: str) -> str:
    return render_bird(gateway_config(gateway_routing(plan, node, log_file)))


RENDERERS = {"tor": tor_config, "gateway": lab_gateway_config, "internet": internet_config}


def render(plan: Plan, node: str, log_file: str) -> str:
    """The BIRD config of router ``node`` (a ToR, the internet router, or an agentless gateway)."""
    role = plan.node(node).role
    try:
        renderer = RENDERERS[role]
    except KeyError:
        raise ValueError(f"{node} is a {role}; the lab renders BIRD only for routers") from None
    return renderer(plan, node, log_file)
