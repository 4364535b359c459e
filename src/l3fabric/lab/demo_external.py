"""The demo's external-connectivity checks (docs/external-connectivity.md, checks 1-7), with real packets.

Each check measures, from the lab's internet client and VMs, one promise of
the edge gateway design: public addresses reached directly with no NAT,
private ones NATed once at the gateway, never reachable from outside,
exactly the public aggregates announced upstream, dual-homed VMs answering
from the right address, and new public subnets reachable at once.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from l3fabric.lab import probe
from l3fabric.lab.plan import Node, Plan

# check(name, measured, ok), provided by the demo.
Report = Callable[[str, str, bool], None]
NEW_SUBNET_REACHABLE_S = 2.0


@dataclass(frozen=True)
class Endpoint:
    """Something that sends or answers: a VM or the internet client."""

    name: str
    ns: str
    address: str


def node_addresses(plan: Plan) -> dict[str, str]:
    """Every lab link address -> the node that holds it (to name traceroute hops)."""
    owners: dict[str, str] = {}
    for node in plan.nodes.values():
        for _, addresses in plan.interfaces(node.name):
            for address in addresses:
                owners[address.split("/")[0]] = node.name
        if node.router_id:
            owners[node.router_id] = node.name
    return owners


def client_endpoint(plan: Plan) -> Endpoint:
    client = plan.by_role("client")[0]
    address = next(
        a.split("/")[0]
        for _, addresses in plan.interfaces(client.name)
        for a in addresses
        if ":" not in a
    )
    return Endpoint(client.name, client.namespace, address)


def upstream_address(plan: Plan, gateway: Node) -> str:
    """The gateway's address on its link to the internet router: what SNAT shows."""
    return next(
        s.local
        for s in plan.sessions(gateway.name)
        if s.peer_role == "internet" and ":" not in s.local
    )


def expected_path(plan: Plan, host: Node) -> list[str]:
    """Routers from the internet client to a VM on ``host``, in order."""
    path = [plan.by_role("internet")[0].name, plan.by_role("gateway")[0].name]
    tors = [t for t in plan.by_role("tor") if t.rack == host.rack]
    path += [t.name for t in tors[:1]]
    return [*path, host.name]


class ExternalChecks:
    def __init__(self, plan: Plan, check: Report) -> None:
        self.plan = plan
        self.check = check
        self.client = client_endpoint(plan)
        self.gateway = plan.by_role("gateway")[0]
        self.internet = plan.by_role("internet")[0]

    def inbound_public(self, vm: Endpoint, host: Node) -> None:
        """1: the internet reaches a public VM directly: real addresses, no extra hop."""
        seen = probe.tcp_peer_address(vm.ns, vm.address, self.client.ns)
        self.check(
            f"1. internet -> public {vm.name} TCP",
            f"{vm.name} saw {seen}, client is {self.client.address}",
            seen == self.client.address,
        )
        owners = node_addresses(self.plan)
        hops = probe.traceroute(self.client.ns, vm.address)
        names = [owners.get(h, h) if h != vm.address else vm.name for h in hops]
        expected = [*expected_path(self.plan, host), vm.name]
        self.check(
            f"1. traceroute internet -> {vm.name}",
            " > ".join(names) or "no answer",
            names == expected,
        )

    def outbound_private(self, vm: Endpoint) -> None:
        """2: a private VM reaches the internet, NATed once to the gateway's address."""
        snat = upstream_address(self.plan, self.gateway)
        seen = probe.tcp_peer_address(self.client.ns, self.client.address, vm.ns)
        flows = probe.snat_flows(self.gateway.namespace, vm.address, self.client.address)
        self.check(
            f"2. private {vm.name} -> internet",
            f"client saw {seen} (gateway {snat}); gateway conntrack: {flows} SNAT flow(s)",
            seen == snat and flows > 0,
        )

    def no_inbound_private(self, vm: Endpoint) -> None:
        """3: the internet cannot reach a private VM, even routed straight at the gateway."""
        gw = upstream_address(self.plan, self.gateway)
        route = [f"{vm.address}/32", "via", gw]
        probe.run_in(self.internet.namespace, ["ip", "route", "replace", *route], timeout=5)
        try:
            result = probe.ping(self.client.ns, vm.address, count=3)
            seen = probe.tcp_peer_address(vm.ns, vm.address, self.client.ns, timeout=3)
        finally:
            probe.run_in(self.internet.namespace, ["ip", "route", "del", *route], timeout=5)
        self.check(
            f"3. internet -> private {vm.name} (static route to the gateway)",
            f"{result.received}/{result.sent} ping replies, TCP {'connected' if seen else 'refused'}",
            result.received == 0 and seen is None,
        )

    def east_west(self, public: Endpoint, private: Endpoint) -> None:
        """4: public and private VMs talk directly, with their own addresses."""
        seen = probe.tcp_peer_address(public.ns, public.address, private.ns)
        back = probe.tcp_peer_address(private.ns, private.address, public.ns)
        self.check(
            f"4. {private.name} <-> {public.name} (private <-> public)",
            f"{public.name} saw {seen}, {private.name} saw {back}",
            seen == private.address and back == public.address,
        )

    def upstream_table(self, public_subnets: list[str]) -> None:
        """5: the upstream router holds exactly the public aggregates from the fabric."""
        learned = probe.bgp_routes(self.internet.namespace)
        # Adjacent public subnets are announced as the aggregate that covers them.
        nets = [ipaddress.ip_network(p) for p in public_subnets]
        wanted = [
            str(n)
            for v in (4, 6)
            for n in ipaddress.collapse_addresses(x for x in nets if x.version == v)
        ]
        self.check(
            "5. upstream router's BGP routes",
            ", ".join(learned) or "none",
            learned == wanted,
        )

    def dual_homed(self, vm: Endpoint, private: str) -> None:
        """6: a VM with a private and a public port answers and sends from its public address."""
        # Just booted: wait until its route reached the edge (bounded), then connect.
        probe.wait_reachable(self.client.ns, vm.address, timeout=10)
        inbound = probe.tcp_peer_address(vm.ns, vm.address, self.client.ns)
        outbound = probe.tcp_peer_address(
            self.client.ns, self.client.address, vm.ns, source=vm.address
        )
        self.check(
            f"6. dual-homed {vm.name} ({private} + {vm.address})",
            f"inbound: it saw {inbound}; outbound from {vm.address}: client saw {outbound}",
            inbound == self.client.address and outbound == vm.address,
        )

    def new_subnet(self, create: Callable[[], Endpoint]) -> None:
        """7: a new public subnet is reachable from the internet within 2 s."""
        started = time.monotonic()
        vm = create()
        seconds = probe.wait_reachable(self.client.ns, vm.address, timeout=10)
        total = time.monotonic() - started
        self.check(
            f"7. new public subnet: {vm.name} {vm.address} from the internet",
            f"{total:.2f} s from the subnet create call"
            if seconds is not None
            else "not within 10 s",
            seconds is not None and total < NEW_SUBNET_REACHABLE_S,
        )
