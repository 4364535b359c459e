"""What an edge gateway should announce, accept and NAT, computed from the controller's view.

Pure functions of the cache (``HostState`` as the gateway's watcher holds it)
and of the gateway's registration: no I/O, so the whole policy is unit-tested.

- Public prefixes: the subnets of networks with ``router:external=True``.
  Their aggregates are announced upstream; they are never NATed.
- Private prefixes: every other subnet. Traffic from them leaving upstream is
  source-NATed; traffic from upstream to them that conntrack does not know is
  dropped.
- Fabric import: what the gateway accepts from hosts and ToRs: addresses
  inside known subnets (any length, so the VMs' /32s), plus the fabric's
  infrastructure prefixes (router loopbacks, link nets) named in the
  registration. Never a default route.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from l3fabric.addresses import parse_network
from l3fabric.client import HostState

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NotRegistered(LookupError):
    """The controller has no registration for this gateway yet."""


@dataclass(frozen=True)
class GatewayDesired:
    """The gateway's routing and NAT policy for one state of the controller."""

    public: tuple[str, ...]  # aggregates announced upstream, sorted, overlap-free
    private: tuple[str, ...]  # source-NATed and shielded from inbound
    fabric_import: tuple[str, ...]  # BIRD prefix patterns accepted from the fabric


def _collapse(nets: list[Network]) -> tuple[str, ...]:
    out: list[str] = []
    for version in (4, 6):
        mine = [n for n in nets if n.version == version]
        out += [str(n) for n in ipaddress.collapse_addresses(mine)]  # type: ignore[arg-type]
    return tuple(out)


def subnet_prefixes(
    networks: dict[str, dict[str, Any]], subnets: dict[str, dict[str, Any]]
) -> tuple[list[Network], list[Network]]:
    """(public, private) subnet prefixes. A subnet whose network is unknown is private.

    Treating an unknown network as private is the safe side: its traffic is
    NATed and it is never announced, until the network shows up.
    """
    public: list[Network] = []
    private: list[Network] = []
    for subnet in subnets.values():
        try:
            net = parse_network(subnet.get("cidr"), strict=False)
        except ValueError:
            continue  # the API validates cidrs; one bad record must not stop the gateway
        if net.prefixlen == 0:
            continue  # a /0 "subnet" would make the default route a VM route
        network = networks.get(str(subnet.get("network_id")), {})
        (public if network.get("router:external") else private).append(net)
    return public, private


def compute(
    networks: dict[str, dict[str, Any]],
    subnets: dict[str, dict[str, Any]],
    infrastructure: list[str] | tuple[str, ...] = (),
    snat_pool: str | None = None,
) -> GatewayDesired:
    """The gateway's policy for these networks and subnets.

    A shared SNAT pool (gateway pairs) is announced upstream like a public
    aggregate: merged into one when it lies inside it, its own otherwise.
    """
    public, private = subnet_prefixes(networks, subnets)
    if snat_pool is not None:
        public.append(parse_network(snat_pool))
    infra = [parse_network(p, strict=False) for p in infrastructure]
    accepted = _collapse([*public, *private, *(n for n in infra if n.prefixlen > 0)])
    return GatewayDesired(
        public=_collapse(public),
        private=_collapse(private),
        fabric_import=tuple(f"{p}+" for p in accepted),
    )


def registration(state: HostState, name: str) -> dict[str, Any]:
    """This gateway's registration from the cache; NotRegistered until it exists."""
    record = state.gateways.get(name)
    if record is None:
        raise NotRegistered(f"gateway {name} is not registered with the controller")
    return record


def desired_for(state: HostState, name: str) -> GatewayDesired:
    record = registration(state, name)
    return compute(
        state.networks, state.subnets, record.get("infrastructure") or [], record.get("snat_pool")
    )
