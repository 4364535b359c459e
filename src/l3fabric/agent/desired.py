"""One port as the host's data plane sees it: its tap, host prefixes and allowed sources.

Pure functions of one port object of the controller's view; ``agent/plan.py``
assembles the host's desired state from them (and caches them per port
object, so an incremental pass converts only the ports that changed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from l3fabric.addresses import is_canonical_address, parse_address, parse_network
from l3fabric.dataplane.links import tap_name
from l3fabric.dataplane.nft import normalise_sources
from l3fabric.dataplane.sg_model import port_security


@dataclass(frozen=True)
class Endpoint:
    """One port bound to this host, as the data plane sees it."""

    port_id: str
    tap: str
    addresses: tuple[str, ...]  # host prefixes of its fixed IPs ("10.1.0.5/32")
    allowed_sources: tuple[str, ...]  # fixed IPs + allowed address pairs
    admin_up: bool
    guard: tuple[str, ...] = ()  # allowed_sources as nftables set elements (merged)


# The guard of a port with port security off: every source (Neutron: no
# anti-spoofing). Elements of the same sets, so the table's skeleton and its
# drift model stay as they are.
ANY_SOURCE = ("0.0.0.0/0", "::/0")


def host_prefix(address: str) -> str:
    """``10.1.0.5`` -> ``10.1.0.5/32``; ``2001:db8::5`` -> ``2001:db8::5/128``.

    A ValueError names an address that is neither.
    """
    if ":" not in address:
        # IPv4 by the C parser (addresses.is_canonical_address): ipaddress
        # costs ~20 us an address, a tenth of a 10,000-port pass.
        if not is_canonical_address(address):
            raise ValueError(f"{address!r} is not an IP address")
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


# What ``endpoint_of`` and the anycast plan read of a port: a port whose
# other fields changed (its reported ``status``) needs no new conversion.
ENDPOINT_FIELDS = (
    "fixed_ips",
    "allowed_address_pairs",
    "admin_state_up",
    "binding:host_id",
    "port_security_enabled",
)


def same_endpoint(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """True if ``new`` converts to the same endpoint as ``old`` (cheap: identity first)."""
    # Spelled out, not a loop over ENDPOINT_FIELDS: half the time, and a pass
    # after 10,000 reported statuses compares 10,000 of them.
    return old is new or (
        old.get("fixed_ips") == new.get("fixed_ips")
        and old.get("allowed_address_pairs") == new.get("allowed_address_pairs")
        and old.get("admin_state_up") == new.get("admin_state_up")
        and old.get("binding:host_id") == new.get("binding:host_id")
        and old.get("port_security_enabled") == new.get("port_security_enabled")
    )


def endpoint_of(port: Mapping[str, Any]) -> Endpoint:
    addresses = tuple(host_prefix(ip["ip_address"]) for ip in port.get("fixed_ips") or [])
    pairs = (
        _source_prefix(p.get("ip_address", "")) for p in port.get("allowed_address_pairs") or []
    )
    allowed = tuple(dict.fromkeys([*addresses, *(p for p in pairs if p)]))
    tap = tap_name(port["id"])
    return Endpoint(
        port_id=port["id"],
        tap=tap,
        addresses=addresses,
        allowed_sources=allowed,
        admin_up=bool(port.get("admin_state_up", True)),
        guard=normalise_sources(tap, allowed if port_security(port) else ANY_SOURCE),
    )
