"""The host agent serves anycast addresses in a real lab: probes, resilient routes, announcements.

One lab for the module: hosts r1-h1 and r1-h2 peering directly with gateway
gw1. Two VMs on r1-h1 are the members of a native group with a TCP check,
each holding the group address on its loopback and serving it with a tiny
listener. The host's resilient nexthop group and the gateway's BIRD (the
route and its healthy-members community) are read as a user would, while
listeners stop and start. Then the Neutron way: one address in the
allowed_address_pairs of ports on both hosts.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from l3fabric.dataplane.nexthops import ResilientRoutes
from l3fabric.routing.bird_control import BirdControl, BirdError

from .lab_fixtures import Background, Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks: [{name: r1, hosts: 2, tor: false}]
internet: {clients: 1}
"""
HOST, OTHER = "r1-h1", "r1-h2"
ANYCAST = "10.1.0.80"
PAIR = "10.1.0.90"
PORT = 8080
CHECK = {"type": "tcp", "port": PORT, "interval_s": 0.3, "timeout_s": 0.2, "rise": 2, "fall": 2}
COMMUNITY = re.compile(r"\(4200000000, 1, (\d+)\)")
# Accepts and closes connections until killed; "ready" once listening.
LISTENER = f"""
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT}))
s.listen(64)
print("ready", flush=True)
while True:
    s.accept()[0].close()
"""


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    net = lab.create_network("priv", cidrs=("10.1.0.0/24",))
    for vm, host in (("m1", HOST), ("m2", HOST), ("m3", OTHER)):
        lab.boot(vm, [net["id"]], host)
    for vm in ("m1", "m2"):
        lab.exec(vm, "ip", "addr", "add", f"{ANYCAST}/32", "dev", "lo")
    lab.wait_established("gw1", with_hosts=True)
    return lab


def port_id(lab: Lab, vm: str) -> str:
    return lab.state.vms()[vm]["ports"][0]["id"]


def members(lab: Lab, host: str, prefix: str) -> int:
    """How many next hops the host's resilient route to ``prefix`` has (0: no route)."""
    with ResilientRoutes(netns=lab.ns(host)) as routes:
        return next((len(h) for net, h in routes.read().items() if str(net) == prefix), 0)


def announced(lab: Lab, address: str) -> list[int]:
    """The healthy-member counts the gateway learned for ``address``, one per path."""
    ctl = BirdControl(str(lab.state.bird_ctl("gw1")))
    try:
        lines = [line for _, line in ctl.request(f"show route {address}/32 all")]
    except BirdError as exc:
        assert "Network not found" in str(exc), exc
        return []
    return sorted(int(n) for line in lines for n in COMMUNITY.findall(line))


@pytest.fixture
def listeners(lab: Lab) -> Iterator[dict[str, Background]]:
    with ExitStack() as stack:
        jobs = {vm: stack.enter_context(lab.background(vm, sys.executable, "-c", LISTENER)) for vm in ("m1", "m2")}  # fmt: skip
        for job in jobs.values():
            job.wait_for_line("ready", 10)
        yield jobs


def test_native_group_follows_member_health(lab: Lab, listeners: dict[str, Background]) -> None:
    subnet = lab.state.vms()["m1"]["ports"][0]["fixed_ips"][0]["subnet_id"]
    with lab.client() as client:
        group = client.create_anycast(
            name="web",
            subnet_id=subnet,
            address=ANYCAST,
            members=[port_id(lab, "m1"), port_id(lab, "m2")],
            health_check=CHECK,
        )
    prefix = f"{ANYCAST}/32"
    up = wait_until(lambda: members(lab, HOST, prefix) == 2, 10, "both members routed")
    wait_until(lambda: announced(lab, ANYCAST) == [2], 5, "gateway learns n=2")
    print(f"\ngroup created -> both members routed: {up:.2f} s")
    # The announcement is BIRD's, not the kernel's: no blackhole on the host.
    kernel = lab.exec(HOST, "ip", "route", "show", "exact", prefix).stdout
    assert "blackhole" not in kernel and "proto 97 metric 10" in kernel, kernel
    # A client on the other host connects: members answer from the anycast
    # address, which their host's guard lets out.
    connect = f"import socket; socket.create_connection(('{ANYCAST}', {PORT}), timeout=2).close()"
    # Soon after the announcement: one CI run saw a single reset right after it.
    wait_until(
        lambda: lab.exec("m3", sys.executable, "-c", connect, check=False).returncode == 0,
        3,
        "a client on the other host connects to the anycast address",
    )

    expected = CHECK["interval_s"] * CHECK["fall"]
    started = time.monotonic()
    listeners["m1"].stop()
    one = wait_until(lambda: members(lab, HOST, prefix) == 1, 5, "m1 leaves the group")
    wait_until(lambda: announced(lab, ANYCAST) == [1], 5, "gateway learns n=1")
    gw_one = time.monotonic() - started
    print(f"m1 down -> host group 1 member: {one:.2f} s, gateway n=1: {gw_one:.2f} s "
          f"(interval x fall = {expected:.1f} s)")  # fmt: skip
    assert one < expected + 1.0

    started = time.monotonic()
    listeners["m2"].stop()
    wait_until(lambda: announced(lab, ANYCAST) == [], 5, "route withdrawn from the gateway")
    gone = time.monotonic() - started
    # Withdrawn before the route goes (the pass's order), so the route may lag a moment.
    wait_until(lambda: members(lab, HOST, prefix) == 0, 2, "host route removed after withdrawal")
    print(f"m2 down -> withdrawn at the gateway: {gone:.2f} s")
    assert gone < expected + 1.0

    with lab.background("m2", sys.executable, "-c", LISTENER) as job:
        job.wait_for_line("ready", 10)
        started = time.monotonic()
        wait_until(lambda: announced(lab, ANYCAST) == [1], 5, "back after rise")
        back = time.monotonic() - started
        assert members(lab, HOST, prefix) == 1
        print(f"m2 up -> announced again: {back:.2f} s (interval x rise = "
              f"{CHECK['interval_s'] * CHECK['rise']:.1f} s)")  # fmt: skip
        status = wait_until(
            lambda: (
                lab.client().get_anycast(group["id"])["status"]["members"][port_id(lab, "m2")]
                == "healthy"
            ),
            5,
            "status reported",
        )
        assert status < 5


def test_allowed_address_pair_on_two_hosts_is_announced_by_both(lab: Lab) -> None:
    with lab.client() as client:
        for vm in ("m1", "m3"):
            client.update("ports", port_id(lab, vm), {"allowed_address_pairs": [{"ip_address": PAIR}]})  # fmt: skip
    took = wait_until(lambda: announced(lab, PAIR) == [1, 1], 10, "both hosts announce the pair")
    print(f"\npair set -> announced by both hosts: {took:.2f} s")
    assert members(lab, HOST, f"{PAIR}/32") == 1 and members(lab, OTHER, f"{PAIR}/32") == 1
    # BIRD installs only its best route, the local announcement: no BGP copy yet.
    assert not any("proto bird" in r for r in kernel_routes(lab, HOST, PAIR))
    with lab.client() as client:
        client.update("ports", port_id(lab, "m1"), {"allowed_address_pairs": []})
    # Withdrawn here: the host now reaches the other holder through BGP.
    wait_until(lambda: announced(lab, PAIR) == [1], 5, "only r1-h2 announces the pair")
    wait_until(
        lambda: (
            [r for r in kernel_routes(lab, HOST, PAIR) if "proto bird metric 32" in r]
            and members(lab, HOST, f"{PAIR}/32") == 0
        ),
        5,
        "r1-h1 routes the pair by BGP",
    )


def kernel_routes(lab: Lab, host: str, address: str) -> list[str]:
    done = subprocess.run(
        ["ip", "-n", lab.ns(host), "route", "show", "exact", f"{address}/32"],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    return done.stdout.splitlines()
