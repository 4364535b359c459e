"""The host's BIRD configuration, derived from the fabric config and its registration.

Peers come from the host's registration when it lists them explicitly (the
lab does, for hosts behind ToR routers); otherwise from the fabric's peering
mode: the gateways, every other host as well (``mesh``), or the route
reflectors. The export policy is always "endpoints": only the /32 and /128
routes this agent installed leave the host (learned from the announcement
table ``ENDPOINTS_TABLE``, see dataplane/announce.py and
routing/bird_config.py), and the anycast addresses it serves (``anycast``:
prefix -> healthy local members, see agent/anycast.py). The endpoints are not
in the config: adding one changes no config.

Each session's local address is the peer's ``local`` when the registration
names one, else, where BIRD needs one (multihop with BFD: every iBGP session
under ``host_asn: same``), the host's registered ``address``. A session of
the other family than that address then has no local address: it is left
out of the config and reported (``BirdConfig.skipped_peers``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from l3fabric.addresses import parse_address, parse_network
from l3fabric.asn import effective_asn
from l3fabric.client import HostState
from l3fabric.dataplane.announce import ENDPOINTS_TABLE
from l3fabric.routing.bird_config import (
    AnycastRoute,
    BgpPeer,
    BirdConfig,
    Policy,
    SessionRole,
    place_sessions,
)
from l3fabric.routing.timers import Timers

ENDPOINTS = Policy("endpoints")
ALL = Policy("all")


class NotRegistered(LookupError):
    """The controller has no registration for this host yet: nothing to peer with."""


def _peer(
    role: SessionRole, name: str, address: str, asn: int, t: Timers, local: str | None = None
) -> BgpPeer:
    # The cache holds canonical addresses only (record_check); parsing is strict regardless.
    return BgpPeer(
        name=name,
        address=parse_address(address),
        asn=asn,
        role=role,
        bfd=t.bfd,
        password=t.password,
        source_address=parse_address(local) if local is not None else None,
        import_policy=ALL,
        export_policy=ENDPOINTS,
    )


def _derived_peers(state: HostState, local_as: int, t: Timers) -> list[BgpPeer]:
    fabric = state.fabric
    peers: list[BgpPeer] = []
    for gw in sorted(state.gateways.values(), key=lambda g: g["name"]):
        asn = effective_asn(gw, fabric, kind="gateway")
        for i, address in enumerate(gw.get("fabric_addresses") or []):
            peers.append(_peer("g", f"{gw['name']}:{i}", str(address), asn, t))
    if fabric.get("peering") == "mesh":
        for other in sorted(state.hosts.values(), key=lambda h: h["name"]):
            peers.append(
                _peer("h", other["name"], str(other["address"]), effective_asn(other, fabric), t)
            )
    elif fabric.get("peering") == "reflectors":
        peers = [
            _peer("rr", str(i), str(address), int(fabric.get("asn", local_as)), t)
            for i, address in enumerate(fabric.get("route_reflectors") or [])
        ]
    return peers


def host_bird_config(state: HostState, anycast: Mapping[str, int] | None = None) -> BirdConfig:
    """The BIRD config for the host in ``state``; NotRegistered until it is registered.

    ``anycast``: the anycast prefixes to announce, each with its healthy member count.
    """
    host: dict[str, Any] | None = state.host
    if host is None:
        raise NotRegistered("this host is not registered with the controller")
    fabric = state.fabric
    local_as = effective_asn(host, fabric)
    timers = Timers.from_fabric(fabric)
    if host.get("peers") is not None:
        peers = [
            _peer("p", p["name"], str(p["address"]), int(p["asn"]), timers, p.get("local"))
            for p in host["peers"]
        ]
    else:
        peers = _derived_peers(state, local_as, timers)
    placed, skipped = place_sessions(peers, local_as, [parse_address(host["address"])])
    return BirdConfig(
        router_id=parse_address(host["router_id"], version=4),
        local_as=local_as,
        peers=tuple(placed),
        skipped_peers=tuple(skipped),
        anycast_routes=tuple(
            AnycastRoute(parse_network(p), n) for p, n in sorted((anycast or {}).items())
        ),
        endpoints_table=ENDPOINTS_TABLE,
        **timers.bird_fields(),
        # Connect at once and retry in seconds (BIRD's defaults: 5 s, then
        # 120 s after a refused connection and 60-300 s after an error, e.g. a
        # gateway that restarted or a BFD flap): routes must follow in a second.
        fast_connect=True,
        connect_delay_time=0,
    )
