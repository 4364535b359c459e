"""A gateway pair with shared NAT state: private flows survive a gateway's failure and drain.

One lab for the module: hosts r1-h1 and r1-h2 under gateways gw1 and gw2
(ECMP both ways: hosts hash over both, so does the internet router), the
shared SNAT pool 203.0.113.240/28 with the ports split between them, and
conntrackd syncing their state over the lab's sync link. Real packets: 20
long-lived TCP connections from two private VMs to an internet client, a
line each way every 100 ms (``lab/long_flows.py``), while the gateway that
carries most of them freezes, loses its links, or is drained; a public VM
is pinged from the internet meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from l3fabric.gateway.steer import ROUTE_TABLE
from l3fabric.lab import faults, gateway_pair
from l3fabric.lab import long_flows as lf
from l3fabric.routing.bird_process import BirdProcess

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks: [{name: r1, hosts: 2, tor: false}]
gateways: [{name: gw1}, {name: gw2}]
internet: {clients: 2}
addressing: {snat_pool: 203.0.113.240/28}
"""
POOL = gateway_pair.POOL
PORT = 7100
FLOWS_PER_VM = 10
MAX_GAP_S = 1.0
PUBLIC_LOSS_S = 0.5
PING_INTERVAL_S = 0.02


def client_address(lab: Lab, name: str = "client1") -> str:
    return gateway_pair.client_address(lab.plan, name)


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    with lab.client() as api:
        pub = api.create_network(name="pub", **{"router:external": True})
        api.create_subnet(network_id=pub["id"], cidr="203.0.113.0/25", ip_version=4)
        priv = api.create_network(name="priv")
        api.create_subnet(network_id=priv["id"], cidr="10.1.0.0/24", ip_version=4)
    lab.boot("priv1", ["priv"], "r1-h1")
    lab.boot("priv2", ["priv"], "r1-h2")
    lab.boot("pub1", ["pub"], "r1-h1")
    for gw in ("gw1", "gw2"):
        lab.wait_established(gw, with_hosts=True)
    wait_until(lambda: reaches(lab, "client2", lab.vm_ip("pub1")), 20, "public VM from client2")
    for vm in ("priv1", "priv2"):
        wait_until(lambda v=vm: reaches(lab, v, client_address(lab)), 20, f"client from {vm}")
    return lab


def reaches(lab: Lab, node: str, address: str) -> bool:
    return lab.exec(node, "ping", "-c1", "-W1", address, check=False).returncode == 0


@contextlib.contextmanager
def public_pings(lab: Lab) -> Iterator[dict[str, float]]:
    """Ping the public VM from client2 every 20 ms for the block; ``lost_s`` after it."""
    result: dict[str, float] = {}
    argv = ["ping", "-n", "-i", str(PING_INTERVAL_S), "-W", "1", lab.vm_ip("pub1")]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("client2"), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield result
    finally:
        proc.send_signal(signal.SIGINT)  # ping prints its summary
        out, _ = proc.communicate(timeout=10)
    sent = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert sent is not None, out
    result["lost_s"] = (int(sent.group(1)) - int(sent.group(2))) * PING_INTERVAL_S


@dataclass
class Run:
    """One scenario's measurements."""

    gateway: str  # the one that failed (or was drained)
    client: list[lf.Flow]  # server-to-client direction, per connection
    server: list[lf.Flow]  # client-to-server direction
    public_lost_s: float
    fault: tuple[float, float] = (0.0, 0.0)  # when it began and ended (time.monotonic())

    def assert_survived(self, max_gap: float) -> None:
        assert len(self.client) == 2 * FLOWS_PER_VM
        dead = [f for f in self.client if not f.ok]
        assert not dead, f"{len(dead)} of {len(self.client)} connections lost: {dead}"
        assert len(self.server) == 2 * FLOWS_PER_VM
        worst = max(self.client + self.server, key=lambda f: f.gap_s)
        began, ended = self.fault
        assert worst.gap_s < max_gap, (
            f"longest silence {worst.gap_s:.3f} s (gateway {self.gateway}), ending"
            f" {worst.gap_end - began:.2f} s after the fault began, {worst.gap_end - ended:.2f} s"
            " after it ended"
        )
        assert self.public_lost_s < PUBLIC_LOSS_S


def flows_through(
    lab: Lab,
    fault: Callable[[str], contextlib.AbstractContextManager[Any]],
    hold_s: float = 2.5,
    recovery: bool = True,
) -> Run:
    """20 long flows while ``fault(the busiest gateway)`` lasts ``hold_s``.

    ``recovery``: the flows run on for 4 s after the gateway is back (they
    move back to it); else they end while the fault lasts.
    """
    duration = hold_s + (4.0 if recovery else 0.5)
    for gw in gateway_pair.GATEWAYS:
        lab.wait_established(gw, with_hosts=True, timeout=30)
    gateway_pair.whole(lab.plan, POOL)
    server = lf.start(lf.server_argv(lab.ns("client1"), PORT))
    clients: list[subprocess.Popen[bytes]] = []
    try:
        lf.wait_line(server, "ready", 30)
        clients = [
            lf.start(lf.client_argv(lab.ns(vm), client_address(lab), PORT, FLOWS_PER_VM, duration))
            for vm in ("priv1", "priv2")
        ]
        for proc in clients:
            lf.wait_line(proc, "connected", 30)
        gateway = gateway_pair.busiest(lab.plan)
        with fault(gateway), public_pings(lab) as pings:
            began = time.monotonic()
            time.sleep(hold_s)
            if not recovery:
                out = "".join(lf.finish(proc, duration + 20) for proc in clients)
            ended = time.monotonic()
        if recovery:
            out = "".join(lf.finish(proc, duration + 20) for proc in clients)
        time.sleep(0.3)  # the server notices the closes
    finally:
        for proc in clients:
            lf.stop(proc)
        server_out = lf.stop(server)
    flows = lf.parse_client(out), lf.parse_server(server_out)
    return Run(gateway, *flows, pings["lost_s"], (began, ended))


def frozen(lab: Lab) -> Callable[[str], contextlib.AbstractContextManager[Any]]:
    return lambda gw: faults.gateway_frozen(lab.plan, lab.state, gw)


def test_translated_ports_follow_each_gateways_slice_of_the_shared_pool(lab: Lab) -> None:
    tables = {gw: lab.exec(gw, "nft", "list", "table", "inet", "l3fabric_gw").stdout for gw in ("gw1", "gw2")}  # fmt: skip
    assert "snat ip to 203.0.113.240/28:1024-33279" in tables["gw1"]
    assert "snat ip to 203.0.113.240/28:33280-65535" in tables["gw2"]
    # Both announce the pool upstream: the internet router has two paths to it.
    route = lab.exec("internet", "ip", "route", "show", "exact", POOL).stdout
    assert route.count("nexthop via") == 2, route
    # conntrackd runs in each gateway's namespace with the agent's config.
    for gw in ("gw1", "gw2"):
        conf = lab.state.agent_dir(gw) / "conntrackd" / "conntrackd.conf"
        assert "DisableExternalCache on" in conf.read_text()
        pids = lab.exec(gw, "pgrep", "-f", str(conf)).stdout.split()
        assert len(pids) == 1


def test_a_flow_whose_directions_cross_the_two_gateways_works_before_and_after(lab: Lab) -> None:
    # Out through gw1 only (r1-h1's route to client2), back through gw2 only (the internet
    # router's route to the pool for packets from client2).
    for gw in gateway_pair.GATEWAYS:  # a gateway an earlier test failed is back
        lab.wait_established(gw, with_hosts=True, timeout=30)
    gateway_pair.whole(lab.plan, POOL)
    client2 = client_address(lab, "client2")
    gw1_link = next(lk for lk in lab.plan.links if lk.a == "gw1" and lk.b == "r1-h1")
    gw2_up = next(lk for lk in lab.plan.links if lk.kind == "upstream" and lk.b == "gw2")
    pins = [
        ("r1-h1", ["route", "replace", f"{client2}/32", "via", gw1_link.a4.split("/")[0]]),
        ("internet", ["route", "replace", POOL, "via", gw2_up.b4.split("/")[0], "table", "77"]),
        ("internet", ["rule", "add", "from", client2, "lookup", "77", "priority", "77"]),
    ]
    for node, cmd in pins:
        lab.exec(node, "ip", *cmd)
    steered_before = steered(lab, "gw2")
    try:
        for _ in range(2):  # before and after gw1's failure (then recovery)
            crossing_flow(lab, client2)
            with faults.gateway_frozen(lab.plan, lab.state, "gw2"):
                time.sleep(1.0)
            wait_until(lambda: reaches(lab, "priv1", client2), 15, "gw2 back")
    finally:
        lab.exec("internet", "ip", "rule", "del", "priority", "77", check=False)
        lab.exec("internet", "ip", "route", "flush", "table", "77", check=False)
        lab.exec("r1-h1", "ip", "route", "del", f"{client2}/32", check=False)
    # The handshake's SYN-ACK came back through gw2 and went on to gw1 (its port's owner).
    assert steered(lab, "gw2") > steered_before


def test_a_gateway_whose_bird_is_killed_stops_steering_until_it_is_back(lab: Lab) -> None:
    # BIRD killed: its kernel routes stay, the steering route through the peer too, but
    # nothing checks the peer any more. The agent removes that route at once (replies
    # use the synced state here) and restarts BIRD, whose BFD session puts it back.
    for gw in gateway_pair.GATEWAYS:
        lab.wait_established(gw, with_hosts=True, timeout=30)
    gateway_pair.whole(lab.plan, POOL)
    bird = BirdProcess("bird", run_dir=str(lab.state.agent_dir("gw1")))
    killed = bird.pid()
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    took = wait_until(lambda: not steering_route(lab, "gw1"), 2, "gw1's steering route gone")
    assert took < 1.0
    wait_until(lambda: bird.pid() not in (None, killed), 15, "BIRD restarted by the agent")
    gateway_pair.whole(lab.plan, POOL)  # steering again: BFD to gw2 is up


def steering_route(lab: Lab, gateway: str) -> bool:
    return bool(lab.exec(gateway, "ip", "route", "show", "table", str(ROUTE_TABLE)).stdout.strip())


def test_every_connection_survives_a_frozen_gateway(lab: Lab) -> None:
    run = flows_through(lab, frozen(lab))
    run.assert_survived(MAX_GAP_S)


@contextlib.contextmanager
def cut_off_keeping_nat(lab: Lab, gateway: str) -> Iterator[None]:
    """``gateway``'s links down; before they come back (its agent ran a pass when its fabric
    sessions went down), its NAT still names its upstream interface: new connections
    through it are translated the moment it is back, not after its next pass."""
    with faults.gateway_cut_off(lab.plan, gateway):
        yield
        out = lab.exec(gateway, "nft", "list", "set", "inet", "l3fabric_gw", "upstream").stdout
        assert "elements" in out, out


def test_every_connection_survives_a_gateway_whose_links_go_down(lab: Lab) -> None:
    run = flows_through(lab, lambda gw: cut_off_keeping_nat(lab, gw))
    run.assert_survived(MAX_GAP_S)


@contextlib.contextmanager
def drained_then_frozen(lab: Lab, gateway: str) -> Iterator[None]:
    """Drain ``gateway`` (the API), wait until nothing routes through it, then freeze it."""
    with gateway_pair.drained(lab.plan, gateway, POOL):
        with lab.client() as api:
            assert api.get_gateway(gateway)["drain"] is True
        with faults.gateway_frozen(lab.plan, lab.state, gateway):
            yield


def test_a_drained_gateway_leaves_without_a_gap(lab: Lab) -> None:
    run = flows_through(lab, lambda gw: drained_then_frozen(lab, gw), recovery=False)
    # Drained first: the flows moved to the other gateway before it froze.
    run.assert_survived(max_gap=0.5)
    assert run.public_lost_s == 0


def crossing_flow(lab: Lab, client2: str) -> None:
    server = lf.start(lf.server_argv(lab.ns("client2"), PORT + 1))
    try:
        lf.wait_line(server, "ready", 30)
        out = lf.finish(lf.start(lf.client_argv(lab.ns("priv1"), client2, PORT + 1, 1, 3.0)), 30)
    finally:
        lf.stop(server)
    (flow,) = lf.parse_client(out)
    assert flow.ok and flow.lines >= 10, out


def steered(lab: Lab, gateway: str) -> int:
    """SYN-ACKs ``gateway`` passed to its peer (their port is the peer's)."""
    out = lab.exec(gateway, "nft", "list", "table", "netdev", "l3fabric_steer").stdout
    match = re.search(r"counter packets (\d+)", out)
    return int(match.group(1)) if match else 0
