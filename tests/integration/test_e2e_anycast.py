"""End to end: one anycast address, three member VMs on two hosts, traffic from the internet.

One lab for the module (examples/small.yaml's shape: one rack of two hosts
without a ToR, a gateway, one internet client). A public network (no NAT on
the way) holds ``web``, a ``/v1/anycast`` group with a TCP health check
(0.5 s x fall 2, rise 2) and three members: m1 and m2 on r1-h1, m3 on r1-h2.
Each member VM holds the address on its loopback and runs the member
service (``lab/anycast_traffic.py``). Every test starts from all three
healthy and reachable (the ``web`` fixture restores what a test broke).
Measured and bounded: the spread of 600 connections, member failover,
host failover, long-lived connections across a member removal, and moving
an address between VMs. ``pytest -s`` shows the numbers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from l3fabric.lab import anycast_traffic as traffic
from l3fabric.lab.anycast_group import LAB_CHECK, AnycastGroup, member_failover_bound
from l3fabric.lab.faults import host_cut_off

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks:
  - {name: r1, hosts: 2, tor: false}
internet: {clients: 1}
"""
PUBLIC_CIDR = "203.0.113.0/25"
WEB = "203.0.113.80"  # the group's address
MOBILE = "203.0.113.81"  # moved between VMs by test (e)
PLACEMENT = {"m1": "r1-h1", "m2": "r1-h1", "m3": "r1-h2"}
CHECK = LAB_CHECK
MEMBER_FAILOVER_S = member_failover_bound(CHECK)
HOST_FAILOVER_S = 1.0
MOBILITY_S = 1.0
STEADY_S = 1.0  # how long every new connection must be right before a change counts as done


@dataclass
class Web:
    lab: Lab
    group: AnycastGroup

    @property
    def client_ns(self) -> str:
        return self.lab.ns("client1")


@pytest.fixture(scope="module")
def setup(module_lab_factory) -> Iterator[Web]:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    with lab.client() as api:
        net = api.create_network(name="public", **{"router:external": True})
        subnet = api.create_subnet(network_id=net["id"], cidr=PUBLIC_CIDR, ip_version=4)
    group = AnycastGroup(
        lab.plan, "web", subnet["id"], "public", WEB, PLACEMENT, CHECK, extra=(MOBILE,)
    )
    try:
        lab.wait_established("gw1", with_hosts=True)
        yield Web(lab, group)
    finally:
        group.close()


@pytest.fixture
def web(setup: Web) -> Web:
    """All three members up, in the group and reachable from the internet client."""
    for vm in PLACEMENT:
        setup.group.start(vm)
    setup.group.set_members(list(PLACEMENT))
    # A host cut off by a test needs its BGP sessions back (connect retry 2 s).
    setup.group.wait_all_answer(setup.client_ns, timeout=40)
    return setup


def sample_change(
    web: Web,
    address: str,
    change: Callable[[], object],
    good: Callable[[str | None], bool],
    within: float,
    name: str,
) -> float:
    """Sample ``address`` while ``change()`` happens; seconds until only ``good`` answered."""
    seen = traffic.measure_change(web.client_ns, address, change, good, timeout=within + 5)
    settled = seen.settled
    before = sorted({str(s.member) for s in seen.before})
    print(
        f"\n{name}: settled in {settled if settled is None else round(settled, 3)} s "
        f"(bound {within} s); {len(seen.after)} samples after the event, "
        f"{seen.wrong(good)} to the old place or failed; before: {before}"
    )
    assert seen.before and "None" not in before, f"sampler broken before the change: {before}"
    assert settled is not None, f"{name}: new connections still wrong {within + 5} s later"
    return settled


def test_600_connections_reach_every_member_with_a_fair_share(web: Web) -> None:
    got = traffic.spread(web.client_ns, WEB, connections=600)
    shares = {m: round(got.share(m), 1) for m in PLACEMENT}
    print(f"\nspread of 600 connections: {shares} %, {got.failed} failed")
    assert got.failed == 0
    # Each member, not each host, is one share: m3 alone on r1-h2 gets a third, not a half.
    for member, share in shares.items():
        assert 20.0 <= share <= 47.0, f"{member}: {share} % of connections"


def test_killed_member_service_stops_getting_connections(web: Web) -> None:
    # Until the check fails twice, connections hashed to m1 are refused (its VM
    # is up, its service is not); after that none may reach it.
    settled = sample_change(
        web,
        WEB,
        lambda: web.group.kill("m1"),
        good=lambda m: m in ("m2", "m3"),
        within=MEMBER_FAILOVER_S,
        name="member m1 killed",
    )
    assert settled <= MEMBER_FAILOVER_S


def test_host_down_moves_traffic_within_a_second(web: Web) -> None:
    with contextlib.ExitStack() as stack:  # the finalizer: its links come up whatever happens
        cut: list[str] = []

        def down() -> None:
            cut.extend(stack.enter_context(host_cut_off(web.lab.plan, "r1-h1")))

        settled = sample_change(
            web,
            WEB,
            down,
            good=lambda m: m == "m3",
            within=HOST_FAILOVER_S,
            name="host r1-h1 (m1, m2) cut off: its uplinks down",
        )
    assert cut, "r1-h1 has no uplinks in the plan"
    assert settled <= HOST_FAILOVER_S


def test_removing_a_member_keeps_the_other_members_connections(web: Web) -> None:
    flows = traffic.open_flows(web.client_ns, WEB, 90)
    try:
        held = {f.member for f in flows}
        assert held == set(PLACEMENT), f"long-lived connections only reached {held}"
        # m1 shares r1-h1 with m2: its host keeps announcing, with one member less.
        web.group.set_members(["m2", "m3"])
        removed_at = time.monotonic()
        wait_until(
            lambda: all(
                traffic.who(web.client_ns, WEB, timeout=1.0) in ("m2", "m3") for _ in range(30)
            ),
            timeout=10,
            what="new connections avoiding the removed member m1",
        )
        gone_after = time.monotonic() - removed_at
        answers = [traffic.ask(f) for f in flows]
    finally:
        traffic.close_flows(flows)
    broken = traffic.broken(flows, answers, gone="m1")
    kept = sum(1 for f in flows if f.member != "m1")
    print(
        f"\nm1 removed: new connections avoid it after {gone_after:.2f} s; "
        f"{len(broken)} of {kept} connections to m2/m3 broken"
    )
    assert kept > 0 and broken == []


def test_moving_an_address_to_another_vm_moves_new_connections_within_a_second(
    web: Web,
) -> None:
    # No health check: the address goes where the API says at once.
    ports = web.group.ports
    with web.lab.client() as api:
        subnet = web.group.group["subnet_id"]
        group = api.create_anycast(
            name="mobile", subnet_id=subnet, address=MOBILE, members=[ports["m1"]]
        )
    try:
        wait_until(
            lambda: traffic.who(web.client_ns, MOBILE, timeout=1.0) == "m1",
            timeout=10,
            what=f"{MOBILE} reaching m1",
        )

        def move() -> None:
            with web.lab.client() as api:
                api.update_anycast(group["id"], members=[ports["m3"]])

        settled = sample_change(
            web,
            MOBILE,
            move,
            good=lambda m: m == "m3",
            within=MOBILITY_S,
            name="address moved from m1 (r1-h1) to m3 (r1-h2)",
        )
    finally:
        with web.lab.client() as api:
            api.delete_anycast(group["id"])
    assert settled <= MOBILITY_S
