"""``l3fabric lab demo``: a whole data centre, driven by the openstack CLI, checked with packets.

Brings a topology up, creates a public and a private network with the real
``openstack`` client, boots VMs on several hosts and racks, then measures what
a user relies on (reachability, hop counts, real source addresses, port
status, route withdrawal, anti-spoofing, external connectivity, security
groups, anycast spread and failover) and prints one table: check, what was measured, pass or fail.
Tears everything down unless ``keep``.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from l3fabric.lab import boot as vms
from l3fabric.lab import probe
from l3fabric.lab.credentials import admin_token, lab_client
from l3fabric.lab.demo_anycast import AnycastChecks
from l3fabric.lab.demo_external import Endpoint, ExternalChecks
from l3fabric.lab.demo_secgroups import check_web_group
from l3fabric.lab.down import down
from l3fabric.lab.plan import Node, Plan, vm_namespace
from l3fabric.lab.state import LabState
from l3fabric.lab.topology import Topology
from l3fabric.lab.up import up
from l3fabric.osc import OpenStackCLI

PRIVATE_CIDR = "10.1.0.0/24"
REACHABLE_WITHIN_S = 2.0
SPOOFED_PINGS = 5


@dataclass
class Check:
    name: str
    measured: str
    ok: bool


@dataclass
class Vm:
    name: str
    host: Node
    address: str  # of its first port
    addresses: tuple[str, ...] = ()  # one per port

    def ns(self, lab: str) -> str:
        return vm_namespace(lab, self.name)

    def endpoint(self, lab: str, port: int = 0) -> Endpoint:
        return Endpoint(self.name, self.ns(lab), (self.addresses or (self.address,))[port])


def expected_hops(a: Node, b: Node, plan: Plan) -> int:
    """Routers between two VMs: their hosts, plus ToRs and the gateway in between."""
    if a.name == b.name:
        return 1
    has_tor = bool(plan.by_role("tor"))
    if a.rack == b.rack:
        return 3  # host, ToR (or gateway), host
    return 5 if has_tor else 3  # host, ToR, gateway, ToR, host


class Demo:
    def __init__(self, topo: Topology, console: Console) -> None:
        self.topo = topo
        self.console = console
        self.checks: list[Check] = []
        self.plan: Plan | None = None

    def check(self, name: str, measured: str, ok: bool) -> None:
        self.checks.append(Check(name, measured, ok))
        mark = "[green]pass[/green]" if ok else "[red]FAIL[/red]"
        self.console.print(f"  {mark}  {name}: {measured}", highlight=False)

    def run(self, keep: bool) -> bool:
        started = time.monotonic()
        self.console.rule(f"[bold]lab {self.topo.name}: building the data centre")
        self.plan = up(self.topo, step=lambda text: self.console.print(f"  ... {text}"))
        self.console.print(f"  up in {time.monotonic() - started:.1f} s")
        try:
            self._exercise(self.plan)
        finally:
            if keep:
                self.console.print(
                    f"\nlab {self.topo.name} left up: `l3fabric lab status`,"
                    f" `l3fabric lab down {self.topo.name}`"
                )
            else:
                down(self.topo.name)
        self._table()
        return all(c.ok for c in self.checks)

    def _exercise(self, plan: Plan) -> None:
        aggregate = next(p for p in plan.public if ipaddress.ip_network(p).version == 4)
        # The first half now; check 7 adds the second half later.
        public, later = (str(n) for n in ipaddress.ip_network(aggregate).subnets())
        openstack = OpenStackCLI(plan.api_url(), self.console, token=admin_token(plan.lab))
        self.console.rule("[bold]networks, through the openstack CLI")
        openstack("a public network: routed as it is, no NAT", "network", "create", "--external", "public")  # fmt: skip
        openstack("its subnet", "subnet", "create", "--network", "public", "--subnet-range", public, "public-v4")  # fmt: skip
        openstack("a private network", "network", "create", "private")
        openstack("its subnet", "subnet", "create", "--network", "private", "--subnet-range", PRIVATE_CIDR, "private-v4")  # fmt: skip

        hosts = plan.by_role("host")
        racks: dict[str | None, list[Node]] = {}
        for host in hosts:
            racks.setdefault(host.rack, []).append(host)
        first_rack = next(iter(racks.values()))
        other_rack = next((r for k, r in racks.items() if k != hosts[0].rack), None) or first_rack
        placements = [
            ("vm1", ["private"], hosts[0], None),
            # Configured by DHCP from its host's dnsmasq, as a cloud image is.
            ("vm2", ["private"], hosts[0], "dhclient"),
            ("vm3", ["private"], first_rack[1] if len(first_rack) > 1 else hosts[0], None),
            ("vm4", ["public"], other_rack[0], None),
        ]
        self.console.rule("[bold]VMs, booted as Nova would (port bound to a host, then a tap)")
        booted: list[Vm] = []
        for name, networks, host, dhcp in placements:
            booted.append(self._boot(plan, name, networks, host, booted, dhcp))
        self._check_paths(plan, booted)
        self._check_status(openstack)
        self._check_spoofing(plan, booted[0], booted[-1])
        self._check_management(plan, booted[0])
        self._check_withdraw(plan, booted[2])
        self._check_external(plan, openstack, booted, other_rack[-1], public, later)
        self.console.rule("[bold]security groups, enforced at the VM's host")
        check_web_group(plan, openstack, other_rack[-1], "public", self.check)
        self.console.rule("[bold]anycast: one address, three VMs on two hosts")
        AnycastChecks(plan, self.check, self.console).run(
            "public-v4", "public", first_rack[0], other_rack[-1]
        )

    def _check_external(
        self,
        plan: Plan,
        openstack: OpenStackCLI,
        booted: list[Vm],
        host: Node,
        public: str,
        later: str,
    ) -> None:
        self.console.rule("[bold]external connectivity through the edge gateway")
        ext = ExternalChecks(plan, self.check)
        private, public_vm = booted[0].endpoint(plan.lab), booted[3].endpoint(plan.lab)
        ext.inbound_public(public_vm, booted[3].host)
        ext.outbound_private(private)
        ext.no_inbound_private(private)
        ext.east_west(public_vm, private)
        ext.upstream_table([public])
        both = self._boot(plan, "vm5", ["private", "public"], host, [])
        ext.dual_homed(both.endpoint(plan.lab, port=1), both.address)

        def new_subnet() -> Endpoint:
            # Through the API directly: the openstack CLI's own start-up takes ~1.5 s.
            with lab_client(plan) as client:
                network = client.list("networks", name="public")[0]["id"]
                client.create_subnet(
                    network_id=network, cidr=later, ip_version=4, name="public-v4-b"
                )
            address = str(next(ipaddress.ip_network(later).hosts()) + 9)
            vms.boot(plan, LabState(plan.lab), "vm6", ["public"], host.name, [address])
            return Vm("vm6", host, address).endpoint(plan.lab)

        ext.new_subnet(new_subnet)
        ext.upstream_table([public, later])

    def _boot(
        self,
        plan: Plan,
        name: str,
        networks: list[str],
        host: Node,
        before: list[Vm],
        dhcp: str | None = None,
    ) -> Vm:
        t0 = time.monotonic()
        record: dict[str, Any] = vms.boot(
            plan, LabState(plan.lab), name, networks, host.name, [], dhcp=dhcp
        )
        addresses = [p["fixed_ips"][0]["ip_address"] for p in record["ports"]]
        vm = Vm(name, host, addresses[0], tuple(addresses))
        self.console.print(
            f"  {name}: {', '.join(addresses)} on {host.name} ({', '.join(networks)})"
            + (f", by DHCP ({dhcp})" if dhcp else "")
        )
        if dhcp:
            self._check_lease(plan, vm, dhcp, time.monotonic() - t0)
        if before:
            # Reachable from the first VM, which sits elsewhere in the fabric.
            seconds = probe.wait_reachable(before[0].ns(plan.lab), vm.address, timeout=10)
            total = time.monotonic() - t0
            self.check(
                f"{name} reachable after boot",
                f"{total:.2f} s from the boot call" if seconds is not None else "not within 10 s",
                seconds is not None and total < REACHABLE_WITHIN_S,
            )
        return vm

    def _check_lease(self, plan: Plan, vm: Vm, client: str, seconds: float) -> None:
        """The VM holds its port's address and the routed design's default route, by DHCP."""
        ns = vm.ns(plan.lab)
        addr = probe.run_in(ns, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"], timeout=5).stdout
        route = probe.run_in(ns, ["ip", "-4", "route", "show", "default"], timeout=5).stdout
        got = next((w for w in addr.split() if w.startswith(vm.address + "/")), None)
        via = "via 169.254.1.1 dev eth0" in route
        self.check(
            f"{vm.name} configured by DHCP ({client})",
            f"{got or 'no address'}, default {'via 169.254.1.1' if via else 'missing'},"
            f" lease in {seconds:.2f} s",
            got is not None and via,
        )

    def _check_paths(self, plan: Plan, booted: list[Vm]) -> None:
        self.console.rule("[bold]paths: real addresses, routed hop by hop, no NAT")
        src = booted[0]
        for dst in booted[1:]:
            where = (
                "same host"
                if dst.host.name == src.host.name
                else "same rack"
                if dst.host.rack == src.host.rack
                else "other rack"
            )
            result = probe.ping(src.ns(plan.lab), dst.address, count=3)
            hops = expected_hops(src.host, dst.host, plan)
            ttl_ok = result.ttl == 64 - hops
            self.check(
                f"{src.name} -> {dst.name} ({where}) ping",
                f"{result.received}/{result.sent} replies, ttl {result.ttl} (= 64 - {hops} routers)",
                result.ok and ttl_ok,
            )
            seen = probe.tcp_peer_address(dst.ns(plan.lab), dst.address, src.ns(plan.lab))
            self.check(
                f"{src.name} -> {dst.name} TCP source",
                f"server saw {seen}, sender is {src.address}",
                seen == src.address,
            )

    def _check_status(self, openstack: OpenStackCLI) -> None:
        out = openstack(
            "every port, as Neutron shows it",
            "port",
            "list",
            "-c",
            "Status",
            "-f",
            "value",
            quiet=True,
        )
        statuses = out.split()
        active = statuses.count("ACTIVE")
        self.check(
            "ports ACTIVE",
            f"{active} of {len(statuses)}",
            bool(statuses) and active == len(statuses),
        )

    def _check_spoofing(self, plan: Plan, src: Vm, dst: Vm) -> None:
        self.console.rule("[bold]anti-spoofing at the host")
        host_ns = src.host.namespace
        spoofed = str(ipaddress.ip_address(src.address) + 200)
        vm_ns = src.ns(plan.lab)
        probe.run_in(vm_ns, ["ip", "addr", "add", f"{spoofed}/32", "dev", "eth0"], timeout=5)
        before = probe.antispoof_drops(host_ns)
        result = probe.ping(vm_ns, dst.address, count=SPOOFED_PINGS, source=spoofed)
        dropped = probe.antispoof_drops(host_ns) - before
        probe.run_in(vm_ns, ["ip", "addr", "del", f"{spoofed}/32", "dev", "eth0"], timeout=5)
        self.check(
            f"{src.name} sending as {spoofed}",
            f"{dropped} of {SPOOFED_PINGS} dropped at {src.host.name}, {result.received} answered",
            dropped >= SPOOFED_PINGS and result.received == 0,
        )

    def _check_management(self, plan: Plan, vm: Vm) -> None:
        # Another host's management address: routable from vm's host, which
        # sits on the management network, so only the agent's isolation stops it.
        other = next(n for n in plan.by_role("host") if n.name != vm.host.name)
        target = (other.mgmt_address or "").split("/")[0]
        result = probe.ping(vm.ns(plan.lab), target, count=2)
        self.check(
            f"{vm.name} -> {other.name} on the management network",
            f"{result.received}/{result.sent} replies to {target}",
            result.received == 0,
        )

    def _check_withdraw(self, plan: Plan, vm: Vm) -> None:
        self.console.rule("[bold]deleting a VM withdraws its route everywhere")
        routers = [n.namespace for n in plan.nodes.values() if n.role in ("host", "tor", "gateway")]
        t0 = time.monotonic()
        vms.delete(plan, LabState(plan.lab), vm.name)
        seconds = probe.wait_withdrawn(routers, f"{vm.address}/32", timeout=10)
        total = time.monotonic() - t0
        self.check(
            f"{vm.name} deleted: route gone from {len(routers)} routers",
            f"{total:.2f} s" if seconds is not None else "still present after 10 s",
            seconds is not None and total < REACHABLE_WITHIN_S,
        )

    def _table(self) -> None:
        table = Table(title=f"lab demo: {self.topo.name}")
        table.add_column("check")
        table.add_column("measured")
        table.add_column("result")
        for c in self.checks:
            table.add_row(c.name, c.measured, "[green]pass[/green]" if c.ok else "[red]FAIL[/red]")
        self.console.print(table)


def run_demo(topo: Topology, console: Console, keep: bool = False) -> bool:
    """Run the demo on ``topo``; True if every check passed."""
    return Demo(topo, console).run(keep)
