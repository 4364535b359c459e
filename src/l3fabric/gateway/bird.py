"""The edge gateway's BIRD configuration: fabric sessions, upstream sessions and their filters.

One function, ``gateway_config``, holds all of the gateway's routing policy;
the gateway agent feeds it from the controller, and the lab feeds it from its
plan when it runs a gateway without an agent (``lab up --no-agents``).

- Fabric peers (hosts, ToRs or route reflectors): believe no one
  (``gateway/origins.py``). A host's session imports exactly the /32s and
  /128s bound to that host and the anycast addresses of its member ports.
  Other sessions (ToRs) import, where hosts have their own AS, what origin
  validation passes (a ROA entry per address: ``route P max 32 as HOST_AS``,
  ``roa_check(...) = ROA_VALID`` on the AS path's last AS) and the
  infrastructure prefixes; under one shared AS, route reflectors pass each
  address only with its host's address as next hop (reflection keeps it),
  other non-host peers addresses inside known subnets and the infrastructure
  prefixes. Never a default route. Every fabric session has the fabric's password and import limit.
  Export everything the gateway knows, which includes the default route.
  Under iBGP the gateway reflects routes between its clients with itself as
  next hop (hosts reach each other through it, as in ``peering: gateway``).
- Upstream peers: import only a default route; export only the public
  aggregates the gateway originates itself (``originated``), so no private
  range, no single /32 and nothing learned from upstream ever goes back;
  and nothing while the gateway is drained or lacks the fabric's routes
  (``fabric_ready``, gateway/birdwatch.py).
- Local addresses: a peer's ``local`` when its registration names one; else,
  where BIRD needs one (multihop with BFD: iBGP with hosts under
  ``host_asn: same``), the fabric address of the peer's family closest to
  it, i.e. the one on its link (``routing.bird_config.local_address``).
  A session without one is skipped and reported (``skipped_peers``).
- Static routes: each public aggregate as ``unreachable`` (announced upstream;
  the VMs' /32s inside are more specific, unknown addresses get an ICMP
  error), and a fallback default route at preference 50 that yields to the
  default learned from upstream (BGP: 100).
- A gateway pair's steering route (``steer_route``): the shared pool via the
  peer's sync address, with BFD, in kernel table ``steer.ROUTE_TABLE`` only;
  it says "the peer is alive and not drained" to the reply steering
  (gateway/steer.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from l3fabric.addresses import Address, parse_address, parse_network
from l3fabric.asn import effective_asn
from l3fabric.client import HostState
from l3fabric.gateway import steer
from l3fabric.gateway.desired import GatewayDesired, desired_for, registration
from l3fabric.gateway.origins import Origins, origins
from l3fabric.routing.bird_config import (
    PARSED_PATTERNS,
    BgpPeer,
    BirdConfig,
    Policy,
    Roa,
    SessionRole,
    StaticRoute,
    place_sessions,
)
from l3fabric.routing.timers import Timers

FALLBACK_DEFAULT_PREFERENCE = 50
DEFAULTS = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
# A drained gateway's export to the fabric: everything but the default route,
# so hosts send their new outbound flows to the other gateways.
NOT_DEFAULT = Policy("prefixes", ("0.0.0.0/0{1,32}", "::/0{1,128}"))


@dataclass(frozen=True)
class PeerSpec:
    """A BGP neighbour by name, address and AS (the API's ``Peer``).

    ``role`` names the session's protocol with its name (``routing.bird_config``):
    ``p`` for a peer named in the registration, ``h`` for a host, ``rr`` for a
    route reflector; upstream peers always get ``up``.
    """

    name: str
    address: Address
    asn: int
    local: Address | None = None
    role: SessionRole = "p"


@dataclass(frozen=True)
class GatewayRouting:
    """Everything the gateway's BIRD depends on."""

    router_id: ipaddress.IPv4Address
    local_as: int
    fabric_peers: tuple[PeerSpec, ...]
    upstream: tuple[PeerSpec, ...]
    desired: GatewayDesired
    timers: Timers = field(default_factory=Timers)
    log_file: str | None = None
    # The gateway's own addresses in the fabric: local addresses of fabric sessions.
    fabric_addresses: tuple[Address, ...] = ()
    # Who may announce what (None: unknown, e.g. the lab without agents:
    # every fabric session imports ``desired.fabric_import``).
    origins: Origins | None = None
    # The infrastructure patterns ("172.16.0.0/16+") a non-host session may carry.
    infrastructure: tuple[str, ...] = ()
    # Drained (registration ``drain``): nothing upstream, no default route to
    # the fabric; it still forwards what reaches it, so running flows go on.
    drain: bool = False
    # The fabric's routes are here (gateway/birdwatch.py): without them, nothing
    # upstream either, or the internet would send replies this gateway cannot deliver.
    fabric_ready: bool = True
    # One of a pair (a shared SNAT pool): no fallback default route, so a gateway
    # without its upstream default (upstream down, or just back) attracts no
    # outbound traffic it would drop; the other gateway takes it.
    pair: bool = False
    # The pair's pool via the peer's sync address (BFD-checked), while the peer
    # is registered and not drained: replies of its ports are steered to it.
    steer_route: StaticRoute | None = None


def _fabric_import(routing: GatewayRouting, peer: PeerSpec) -> Policy:
    """What the gateway accepts from fabric peer ``peer`` (module docstring)."""
    known = routing.origins
    if known is None:
        return Policy("prefixes", routing.desired.fabric_import)
    host = peer.name if peer.role == "h" else known.host_at(str(peer.address))
    if host is not None:
        return Policy("prefixes", known.prefixes.get(host, ()))
    if known.per_host_as:
        return Policy("origin", routing.infrastructure)
    if peer.role == "rr":  # one AS: reflected routes keep the originating host's next hop
        owners = tuple((a, known.prefixes.get(h, ())) for a, h in sorted(known.addresses.items()))
        return Policy("next-hop", routing.infrastructure, owners=owners)
    return Policy("prefixes", routing.desired.fabric_import)


@lru_cache(maxsize=PARSED_PATTERNS)
def _roa(prefix: str, asn: int) -> Roa:
    # Every pass makes one per bound port: parsed and checked once (as the filters' patterns).
    return Roa(parse_network(prefix), asn)


def _roas(known: Origins | None) -> tuple[Roa, ...]:
    if known is None or not known.per_host_as:
        return ()
    # Two hosts in one AS (explicit asn) serving one anycast address: one entry.
    return tuple(
        dict.fromkeys(
            _roa(prefix, known.asns[host])
            for host, prefixes in known.prefixes.items()
            for prefix in prefixes
        )
    )


def gateway_config(routing: GatewayRouting) -> BirdConfig:
    """The BIRD config for ``routing``; ValueError for an inconsistent registration."""
    t = routing.timers
    announce = routing.fabric_ready and not routing.drain
    upstream_export = Policy("originated", routing.desired.public) if announce else Policy("none")
    fabric_export = NOT_DEFAULT if routing.drain else Policy("all")

    def session(
        p: PeerSpec, role: SessionRole, import_policy: Policy, export_policy: Policy
    ) -> BgpPeer:
        # iBGP fabric peers: reflected to each other with the gateway as next hop.
        ibgp = role != "up" and p.asn == routing.local_as
        return BgpPeer(
            name=p.name,
            address=p.address,
            asn=p.asn,
            role=role,
            bfd=t.bfd,
            password=t.password if role != "up" else None,
            import_limit=t.import_limit if role != "up" else None,
            keep_filtered=role != "up",
            source_address=p.local,
            import_policy=import_policy,
            export_policy=export_policy,
            next_hop_self=ibgp,
            rr_client=ibgp,
        )

    peers, skipped = place_sessions(
        (
            session(p, p.role, _fabric_import(routing, p), fabric_export)
            for p in routing.fabric_peers
        ),
        routing.local_as,
        routing.fabric_addresses,
    )
    upstream, skipped_upstream = place_sessions(
        (session(p, "up", Policy("default-only"), upstream_export) for p in routing.upstream),
        routing.local_as,
        (),  # upstream links are not fabric links: only an explicit local address
    )
    statics = [StaticRoute(parse_network(p), action="unreachable") for p in routing.desired.public]
    statics += [
        StaticRoute(d, action="unreachable", preference=FALLBACK_DEFAULT_PREFERENCE)
        for d in DEFAULTS
        if not routing.pair
    ]
    return BirdConfig(
        router_id=routing.router_id,
        local_as=routing.local_as,
        peers=(*peers, *upstream),
        skipped_peers=(*skipped, *skipped_upstream),
        static_routes=tuple(statics),
        roas=_roas(routing.origins),
        peer_routes=(routing.steer_route,) if routing.steer_route else (),
        peer_table=steer.ROUTE_TABLE if routing.steer_route else None,
        **t.bird_fields(),
        announce_loopback=True,
        fast_connect=True,
        log_file=routing.log_file,
    )


def _peers(records: Iterable[dict[str, Any]]) -> tuple[PeerSpec, ...]:
    return tuple(
        PeerSpec(
            str(p["name"]),
            parse_address(p["address"]),
            int(p["asn"]),
            parse_address(p["local"]) if p.get("local") is not None else None,
        )
        for p in records
    )


def derived_fabric_peers(state: HostState, local_as: int) -> tuple[PeerSpec, ...]:
    """Fabric peers when the registration lists none: from the fabric's peering mode.

    ``gateway`` and ``mesh``: every registered host (the gateway peers with
    all of them either way); ``reflectors``: the route reflectors, in the
    fabric's AS.
    """
    fabric = state.fabric
    if fabric.get("peering") == "reflectors":
        asn = int(fabric.get("asn", local_as))
        return tuple(
            PeerSpec(str(i), parse_address(a), asn, role="rr")
            for i, a in enumerate(fabric.get("route_reflectors") or [])
        )
    return tuple(
        PeerSpec(h["name"], parse_address(h["address"]), effective_asn(h, fabric), role="h")
        for h in sorted(state.hosts.values(), key=lambda h: h["name"])
    )


def steer_route(state: HostState, record: dict[str, Any]) -> StaticRoute | None:
    """The pool via the pair's peer (BFD), if this gateway steers replies to it.

    Only for an IPv4 pool and sync link (the steering table is IPv4), and only
    while the peer (the gateway whose sync address is our ``sync.peer``) is
    registered and not drained: a drained peer gets no steered replies, so it
    can be stopped with nothing in flight towards it.
    """
    sync, pool = record.get("sync"), record.get("snat_pool")
    if sync is None or pool is None:
        return None
    net, peer = parse_network(pool), parse_address(sync["peer"])
    if net.version != 4 or peer.version != 4:
        return None
    for other in state.gateways.values():
        if str((other.get("sync") or {}).get("local")) == str(peer):
            if other.get("drain"):
                return None
            return StaticRoute(net, via=peer, bfd=True)
    return None


def routing_from_state(
    state: HostState, name: str, log_file: str | None = None, fabric_ready: bool = True
) -> GatewayRouting:
    """The gateway's routing inputs from its watcher's cache; NotRegistered until registered.

    ``fabric_ready``: whether the fabric sessions are up (gateway/birdwatch.py).
    """
    record = registration(state, name)
    local_as = effective_asn(record, state.fabric, kind="gateway")
    explicit = record.get("fabric_peers")
    return GatewayRouting(
        router_id=parse_address(record["router_id"], version=4),
        local_as=local_as,
        fabric_peers=(
            _peers(explicit) if explicit is not None else derived_fabric_peers(state, local_as)
        ),
        upstream=_peers(record.get("upstream") or []),
        desired=desired_for(state, name),
        timers=Timers.from_fabric(state.fabric),
        log_file=log_file,
        fabric_addresses=tuple(parse_address(a) for a in record.get("fabric_addresses") or ()),
        origins=origins(state),
        infrastructure=tuple(
            f"{net}+"
            for p in record.get("infrastructure") or ()
            if (net := parse_network(p, strict=False)).prefixlen  # never a default route
        ),
        drain=bool(record.get("drain")),
        fabric_ready=fabric_ready,
        pair=record.get("snat_pool") is not None,
        steer_route=steer_route(state, record),
    )
