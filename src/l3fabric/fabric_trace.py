"""Where an address lives and how the fabric routes it, from the controller's views.

``trace(query, ports, networks, groups, floatingips, hosts, gateways)``
finds the ports ``query`` names (an address, a port id, or a VM: the ports'
``device_id``) and, per address: its port, network (external or tenant),
host, the security groups that apply, the floating IPs on it, whether it is
public (a gateway announces it upstream) or leaves through source NAT, and
who has its route: the host it is bound to, that host's established BGP
sessions that export routes (its route reflectors, ToRs, gateways or mesh
peers), and each gateway whose session with that host is established.
This is what the agents report in their heartbeats (a few seconds old),
not a per-prefix query of every router.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

JSON = dict[str, Any]


def _matches(port: JSON, query: str) -> bool:
    if query in (port["id"], port.get("device_id"), port.get("name")):
        return True
    return any(f["ip_address"] == query for f in port.get("fixed_ips", []))


def _inside(address: str, prefixes: Iterable[str]) -> str | None:
    ip = ipaddress.ip_address(address)
    for prefix in prefixes:
        net = ipaddress.ip_network(prefix, strict=False)
        if ip.version == net.version and ip in net:
            return prefix
    return None


def _established(view: JSON) -> list[JSON]:
    return [s for s in view.get("bgp", []) if str(s.get("info", "")).startswith("Established")]


def _reach(address: str, gateways: list[JSON]) -> JSON:
    """Public (announced upstream by a gateway), NATed (a gateway's private prefix) or neither."""
    for gw in gateways:
        nat = gw.get("nat") or {}
        public = _inside(address, nat.get("public_prefixes", []))
        if public:
            return {"kind": "public", "gateway": gw["name"], "prefix": public}
        private = _inside(address, nat.get("private_prefixes", []))
        if private:
            return {"kind": "source NAT", "gateway": gw["name"], "prefix": private}
    return {"kind": "fabric only", "gateway": None, "prefix": None}


def _routers(host: JSON | None, gateways: list[JSON]) -> JSON:
    """Who has the route of an address on ``host``: the host and the peers that took it."""
    if host is None:
        return {"origin": None, "origin_up": False, "announced_to": [], "gateways": []}
    announced = [
        {"session": s["name"], "peer": s.get("peer", ""), "routes_out": s.get("routes_out", 0)}
        for s in _established(host)
        if s.get("routes_out", 1)
    ]
    learned = [
        {"gateway": gw["name"], "session": s["name"], "routes_in": s.get("routes_in", 0)}
        for gw in gateways
        for s in _established(gw)
        if s.get("peer") == host.get("address")
    ]
    return {
        "origin": host["name"],
        "origin_up": host.get("status") == "up",
        "announced_to": announced,
        "gateways": learned,
    }


def trace(
    query: str,
    ports: list[JSON],
    networks: list[JSON],
    groups: list[JSON],
    floatingips: list[JSON],
    hosts: list[JSON],
    gateways: list[JSON],
) -> list[JSON]:
    """One entry per address of every port ``query`` names (none: nothing matched)."""
    floating = [f for f in floatingips if f.get("floating_ip_address") == query]
    wanted = {f["port_id"] for f in floating if f.get("port_id")}
    found = [p for p in ports if _matches(p, query) or p["id"] in wanted]
    nets = {n["id"]: n for n in networks}
    group_names = {g["id"]: g.get("name") or g["id"] for g in groups}
    by_host = {h["name"]: h for h in hosts}
    entries = []
    for port in found:
        net = nets.get(port["network_id"], {})
        host = by_host.get(port.get("binding:host_id") or "")
        for fixed in port.get("fixed_ips", []):
            address = fixed["ip_address"]
            entries.append(
                {
                    "address": address,
                    "port": port["id"],
                    "device": port.get("device_id") or None,
                    "port_status": port.get("status"),
                    "network": net.get("name") or port["network_id"],
                    "network_kind": "external" if net.get("router:external") else "tenant",
                    "host": port.get("binding:host_id") or None,
                    "security_groups": [
                        group_names.get(g, g) for g in port.get("security_groups", [])
                    ],
                    "port_security": port.get("port_security_enabled", True),
                    "floating_ips": [
                        f["floating_ip_address"]
                        for f in floatingips
                        if f.get("port_id") == port["id"]
                        and f.get("fixed_ip_address") in (None, address)
                    ],
                    "reach": _reach(address, gateways),
                    "route": _routers(host, gateways),
                }
            )
    return entries
