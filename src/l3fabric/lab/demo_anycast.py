"""The demo's anycast checks: one address, three VMs on two hosts, traffic from the internet.

A ``/v1/anycast`` group on the public subnet with a TCP health check; two
members on one host and one on a host in another rack, each running the
member service. From the internet client: the spread of 300 new
connections over the members (a bar per member), then one member's service
is killed and the time until no new connection reaches it is measured.
"""

from __future__ import annotations

import contextlib

from rich.console import Console

from l3fabric.lab import anycast_traffic as traffic
from l3fabric.lab.anycast_group import LAB_CHECK, AnycastGroup, member_failover_bound
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.demo_external import Report
from l3fabric.lab.plan import Node, Plan

CONNECTIONS = 300
CHECK = LAB_CHECK
FAILOVER_BOUND_S = member_failover_bound(CHECK)
READY_S = 20.0
BAR = 40  # characters of a 100 % bar


def bars(spread: traffic.Spread, placement: dict[str, str]) -> list[str]:
    """One line per member: name, host, a bar of its share, percent and count."""
    lines = []
    for member, host in placement.items():
        share = spread.share(member)
        bar = "█" * round(share * BAR / 100)
        lines.append(
            f"  {member} on {host:<6} {bar:<{BAR}} {share:5.1f} % ({spread.counts[member]})"
        )
    if spread.failed:
        lines.append(f"  failed: {spread.failed}")
    return lines


class AnycastChecks:
    def __init__(self, plan: Plan, check: Report, console: Console) -> None:
        self.plan = plan
        self.check = check
        self.console = console
        self.client_ns = plan.by_role("client")[0].namespace

    def run(self, subnet_name: str, network: str, pair_host: Node, single_host: Node) -> None:
        with lab_client(self.plan) as api:
            subnet = api.list("subnets", name=subnet_name)[0]["id"]
        placement = {"web1": pair_host.name, "web2": pair_host.name, "web3": single_host.name}
        group = AnycastGroup(self.plan, "web", subnet, network, None, placement, CHECK)
        try:
            self.console.print(
                f"  group web: {group.address} on {', '.join(placement)}"
                f" (tcp check every {CHECK['interval_s']} s, fall {CHECK['fall']})"
            )
            self._spread(group)
            self._failover(group)
        finally:
            group.close()

    def _spread(self, group: AnycastGroup) -> None:
        with contextlib.suppress(TimeoutError):  # the check below shows what is missing
            group.wait_all_answer(self.client_ns, READY_S)
        got = traffic.spread(self.client_ns, group.address, connections=CONNECTIONS)
        for line in bars(got, group.placement):
            self.console.print(line, highlight=False)
        shares = {m: got.share(m) for m in group.placement}
        self.check(
            f"anycast spread of {CONNECTIONS} connections from the internet",
            ", ".join(f"{m} {s:.0f} %" for m, s in shares.items()) + f", {got.failed} failed",
            got.failed == 0 and all(20.0 <= s <= 47.0 for s in shares.values()),
        )

    def _failover(self, group: AnycastGroup) -> None:
        victim = next(iter(group.placement))
        seen = traffic.measure_change(
            self.client_ns,
            group.address,
            lambda: group.kill(victim),
            lambda m: m is not None and m != victim,
            timeout=FAILOVER_BOUND_S + 3,
        )
        measured = (
            f"{seen.settled:.2f} s from the kill (bound {FAILOVER_BOUND_S:.1f} s)"
            if seen.settled is not None
            else "new connections still failing"
        )
        self.check(
            f"anycast failover: {victim}'s service killed",
            measured,
            seen.settled is not None and seen.settled <= FAILOVER_BOUND_S,
        )
