"""Driving a lab's gateway pair: is it whole, which gateway carries most, drain and return.

Shared by the gateway-pair tests, ``bench gateway`` and the demo.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

from l3fabric.gateway.steer import ROUTE_TABLE
from l3fabric.gateway.steer import TABLE as STEER_TABLE
from l3fabric.lab import faults
from l3fabric.lab.credentials import lab_client
from l3fabric.lab.plan import Plan
from l3fabric.lab.probe import run_in
from l3fabric.lab.topology import Addressing, Api, Gateway, Internet, Rack, Topology
from l3fabric.loopback import free_port

GATEWAYS = ("gw1", "gw2")
POOL = "203.0.113.240/28"  # inside the lab's public 203.0.113.0/24, apart from its subnets


def topology(name: str, hosts: int, clients: int) -> Topology:
    """One rack of ``hosts`` without a ToR under a gateway pair sharing ``POOL``."""
    return Topology(
        name=name,
        racks=[Rack(name="r1", hosts=hosts, tor=False)],
        gateways=[Gateway(name=gw) for gw in GATEWAYS],
        internet=Internet(clients=clients),
        addressing=Addressing(snat_pool=POOL),
        api=Api(port=free_port()),
    )


def client_address(plan: Plan, name: str) -> str:
    """Internet client ``name``'s IPv4 address."""
    link = next(lk for lk in plan.links if lk.kind == "client" and lk.b == name)
    return link.b4.split("/")[0]


def paths(plan: Plan, node: str, prefix: str) -> int:
    """How many next hops ``node``'s kernel has for ``prefix`` (``default`` too)."""
    which = ["default"] if prefix == "default" else ["exact", prefix]
    return run_in(plan.node(node).namespace, ["ip", "route", "show", *which], 10).stdout.count(
        "via"
    )


def steers(plan: Plan, gateway: str) -> bool:
    """Whether ``gateway`` steers its peer's replies to it: it has a route through the peer
    (alive and not drained) and no hold-down (gateway/steer.py)."""
    ns = plan.node(gateway).namespace
    if not run_in(ns, ["ip", "route", "show", "table", str(ROUTE_TABLE)], 10).stdout.strip():
        return False
    held = run_in(ns, ["nft", "list", "set", "netdev", STEER_TABLE, "peer_down"], 10).stdout
    return "elements" not in held


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def whole(plan: Plan, pool: str, timeout: float = 30.0, settle_s: float = 1.0) -> None:
    """Wait until both gateways serve: two paths to the pool upstream, two defaults on every
    host, and each steers its peer's replies to it (their BFD session is up).

    A gateway that has just come back may still lose a new connection for a
    few seconds more (docs/gateway.md, "Known limits"): ``settle_s`` more.
    """
    hosts = [h.name for h in plan.by_role("host")]
    _wait(
        lambda: (
            paths(plan, "internet", pool) == 2
            and all(paths(plan, h, "default") == 2 for h in hosts)
            and all(steers(plan, gw) for gw in GATEWAYS)
        ),
        timeout,
        "two paths through the gateway pair",
    )
    time.sleep(settle_s)


def _received(plan: Plan, gateway: str) -> int:
    ns = plan.node(gateway).namespace
    out = run_in(ns, ["ip", "-s", "-j", "link", "show"], 10).stdout
    names = set(faults.gateway_links(plan, gateway))
    return sum(i["stats64"]["rx"]["packets"] for i in json.loads(out) if i["ifname"] in names)


def busiest(plan: Plan, over_s: float = 0.5) -> str:
    """The gateway that received most packets on its data links over ``over_s``."""
    before = {gw: _received(plan, gw) for gw in GATEWAYS}
    time.sleep(over_s)
    return max(before, key=lambda gw: _received(plan, gw) - before[gw])


@contextlib.contextmanager
def drained(plan: Plan, gateway: str, pool: str, timeout: float = 10.0) -> Iterator[None]:
    """``gateway`` drained (the API) until nothing routes new flows through it and its peer
    steers no reply to it; undrained after."""
    hosts = [h.name for h in plan.by_role("host")]
    others = [gw for gw in GATEWAYS if gw != gateway]
    with lab_client(plan) as api:
        api.request("POST", f"/v1/gateways/{gateway}/drain")
    try:
        _wait(
            lambda: (
                paths(plan, "internet", pool) == 1
                and all(paths(plan, h, "default") == 1 for h in hosts)
                and not any(steers(plan, gw) for gw in others)
            ),
            timeout,
            f"{gateway} drained",
        )
        yield
    finally:
        with lab_client(plan) as api:
            api.request("DELETE", f"/v1/gateways/{gateway}/drain")
