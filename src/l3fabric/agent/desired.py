"""What a compute host's kernel should hold, computed from the agent's cache.

Pure functions of the controller's view (``HostState``) and the set of tap
devices that exist: no I/O, so the whole policy is unit-testable.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from l3fabric.addresses import parse_address, parse_network
from l3fabric.dataplane.links import tap_name


@dataclass(frozen=True)
class Endpoint:
    """One port bound to this host, as the data plane sees it."""

    port_id: str
    tap: str
    addresses: tuple[str, ...]  # host prefixes of its fixed IPs ("10.1.0.5/32")
    allowed_sources: tuple[str, ...]  # fixed IPs + allowed address pairs
    admin_up: bool


@dataclass
class Desired:
    """The converged state: endpoint routes and the anti-spoofing sets."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # by port id
    routes: dict[str, str] = field(default_factory=dict)  # prefix -> tap
    allowed: dict[str, list[str]] = field(default_factory=dict)  # tap -> source prefixes

    @property
    def ipv6_taps(self) -> set[str]:
        """Taps of ports with an IPv6 address: they need the fe80::1 next hop."""
        return {ep.tap for ep in self.endpoints.values() if any(":" in a for a in ep.addresses)}

    def port_status(self, programmed_taps: Iterable[str]) -> dict[str, str]:
        """ACTIVE for each up port whose tap is programmed, DOWN for the rest."""
        ready = set(programmed_taps)
        return {
            port_id: "ACTIVE" if ep.admin_up and ep.tap in ready else "DOWN"
            for port_id, ep in self.endpoints.items()
        }


def host_prefix(address: str) -> str:
    """``10.1.0.5`` -> ``10.1.0.5/32``; ``2001:db8::5`` -> ``2001:db8::5/128``.

    A ValueError names an address that is neither.
    """
    if ":" not in address:
        # IPv4 by the C parser: ipaddress costs ~20 us an address, a tenth of a
        # 10,000-port pass. inet_pton refuses what ipaddress refuses (short
        # forms, leading zeros), so an accepted text is already canonical.
        try:
            socket.inet_pton(socket.AF_INET, address)
        except OSError:
            raise ValueError(f"{address!r} is not an IP address") from None
        return f"{address}/32"
    ip = parse_address(address)  # strict: never a zone ID into a route or a config
    return f"{ip}/{ip.max_prefixlen}"


def _source_prefix(value: str) -> str | None:
    # allowed_address_pairs hold an address or a CIDR; the API validated them,
    # but one bad value must not stop the host from programming the rest.
    try:
        return str(parse_network(value, strict=False))
    except ValueError:
        return None


def endpoint_of(port: dict[str, Any]) -> Endpoint:
    addresses = tuple(host_prefix(ip["ip_address"]) for ip in port.get("fixed_ips") or [])
    pairs = (
        _source_prefix(p.get("ip_address", "")) for p in port.get("allowed_address_pairs") or []
    )
    allowed = tuple(dict.fromkeys([*addresses, *(p for p in pairs if p)]))
    return Endpoint(
        port_id=port["id"],
        tap=tap_name(port["id"]),
        addresses=addresses,
        allowed_sources=allowed,
        admin_up=bool(port.get("admin_state_up", True)),
    )


def compute(ports: Iterable[dict[str, Any]], existing_taps: set[str]) -> Desired:
    """The desired state for the ports bound to this host.

    A port is routed only when it is administratively up and its tap exists
    (the VM is plugged in); anti-spoofing rules are kept for every bound port,
    so a tap that appears is guarded from its first packet.
    """
    desired = Desired()
    for port in ports:
        ep = endpoint_of(port)
        desired.endpoints[ep.port_id] = ep
        desired.allowed[ep.tap] = list(ep.allowed_sources)
        if ep.admin_up and ep.tap in existing_taps:
            for prefix in ep.addresses:
                desired.routes[prefix] = ep.tap
    return desired
