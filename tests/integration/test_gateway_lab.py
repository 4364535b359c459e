"""The edge gateway agent in a real lab: what it announces upstream, NAT, and the inbound shield.

One lab for the module: host r1-h1 directly under gateway gw1, the internet
router above it, one client machine. A public VM and a private VM on r1-h1.
Everything is measured with real packets, BIRD's own tables and the
gateway's conntrack table.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from l3fabric.gateway.nat import snat_flows
from l3fabric.lab import routers
from l3fabric.routing.bird_control import BirdControl

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401
from .scripts import LONG_CLIENT

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks: [{name: r1, hosts: 1, tor: false}]
internet: {clients: 1}
"""
PUBLIC = "203.0.113.0/25"
PRIVATE = "10.1.0.0/24"
PORT = 5007

# An echo server for one connection: prints "ready", then the peer's address,
# and echoes every line back until the client closes.
ECHO_SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(20)
print("ready", flush=True)
conn, peer = s.accept()
print("peer", peer[0], flush=True)
conn.settimeout(20)
f = conn.makefile("rwb")
for line in f:
    f.write(line)
    f.flush()
"""


def upstream_address(lab: Lab) -> str:
    link = next(lk for lk in lab.plan.links if lk.kind == "upstream")
    return link.b4.split("/")[0]  # side b is the gateway


def client_address(lab: Lab) -> str:
    link = next(lk for lk in lab.plan.links if lk.kind == "client")
    return link.b4.split("/")[0]


def gateway_snat(lab: Lab) -> list[tuple[str, str]]:
    """(private source, translated source) of the gateway's source-NATed conntrack entries."""
    return snat_flows(lab.exec("gw1", "conntrack", "-L").stdout.splitlines())


def reaches(lab: Lab, node: str, address: str) -> bool:
    return lab.exec(node, "ping", "-c1", "-W1", address, check=False).returncode == 0


def announced_to_internet(lab: Lab) -> set[str]:
    """The prefixes the internet router's BIRD holds from the gateway (both families)."""
    ctl = BirdControl(str(lab.state.bird_ctl("internet")))
    prefixes: set[str] = set()
    for session in (s for s in lab.plan.sessions("internet") if s.peer == "gw1"):
        for _, text in ctl.request(f"show route protocol '{routers.session_name(session)}'"):
            match = re.match(r"^([0-9a-fA-F:.]+/\d+)\s", text)
            if match:
                prefixes.add(match.group(1))
    return prefixes


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Iterator[Lab]:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    with lab.client() as api:
        pub = api.create_network(name="pub", **{"router:external": True})
        api.create_subnet(network_id=pub["id"], cidr=PUBLIC, ip_version=4)
        priv = api.create_network(name="priv")
        api.create_subnet(network_id=priv["id"], cidr=PRIVATE, ip_version=4)
    lab.boot("pubvm", ["pub"], "r1-h1")
    lab.boot("privvm", ["priv"], "r1-h1")
    client = client_address(lab)
    wait_until(lambda: reaches(lab, "client1", lab.vm_ip("pubvm")), 15, "public VM from client")
    wait_until(lambda: reaches(lab, "privvm", client), 15, "client from the private VM")
    yield lab


def test_public_vm_is_reached_from_the_internet_with_real_addresses(lab: Lab) -> None:
    vm = lab.vm_ip("pubvm")
    with lab.background("pubvm", "python3", "-c", ECHO_SERVER, vm, str(PORT)) as server:
        server.wait_for_line("ready", 10)
        # The flag path "/" exists: both echoes go at once.
        out = lab.exec("client1", "python3", "-c", LONG_CLIENT, vm, str(PORT), "/").stdout
        assert out.split() == ["got", "one", "got", "two"]
        assert server.wait_for_line("peer", 10) == f"peer {client_address(lab)}"
    # No NAT on the public path: nothing of it in the gateway's SNAT state.
    assert not [flow for flow in gateway_snat(lab) if vm in flow]


def test_private_vm_is_snated_to_the_gateway_and_the_flow_survives_a_rule_change(
    lab: Lab, tmp_path: Path
) -> None:
    client = client_address(lab)
    flag = tmp_path / "go"
    with lab.background("client1", "python3", "-c", ECHO_SERVER, client, str(PORT)) as server:
        server.wait_for_line("ready", 10)
        with lab.background(
            "privvm", "python3", "-c", LONG_CLIENT, client, str(PORT), str(flag)
        ) as vm:
            vm.wait_for_line("got one", 10)
            # The client sees the gateway's upstream address, not the VM's.
            assert server.wait_for_line("peer", 10) == f"peer {upstream_address(lab)}"
            assert (lab.vm_ip("privvm"), upstream_address(lab)) in gateway_snat(lab)
            # A new private subnet rewrites the NAT table while the flow runs.
            with lab.client() as api:
                net = api.create_network(name="priv2")
                api.create_subnet(network_id=net["id"], cidr="10.2.0.0/24", ip_version=4)
            wait_until(
                lambda: "10.2.0.0/24" in lab.exec("gw1", "nft", "list", "set", "inet",
                                                  "l3fabric_gw", "private4").stdout,
                5,
                "new private subnet in the gateway's NAT set",
            )  # fmt: skip
            flag.touch()
            vm.wait_for_line("got two", 10)

    # The controller has the gateway's report: sessions and conntrack counters.
    def reported() -> bool:
        with lab.client() as api:
            gw = api.get_gateway("gw1")
        established = [s for s in gw["bgp"] if s["info"].startswith("Established")]
        nat = gw["nat"]
        return (
            len(established) == 4
            and "10.2.0.0/24" in nat["private_prefixes"]
            and nat["conntrack_entries"] >= 1
            and set(nat["conntrack_stats"]) >= {"insert_failed", "drop", "error"}
        )

    wait_until(reported, 8, "gateway heartbeat with sessions and NAT state")


def test_internet_cannot_reach_a_private_vm_even_routed_to_the_gateway(lab: Lab) -> None:
    vm = lab.vm_ip("privvm")
    lab.exec("internet", "ip", "route", "replace", PRIVATE, "via", upstream_address(lab))
    try:
        assert not reaches(lab, "client1", vm)
        counters = lab.exec("gw1", "nft", "list", "chain", "inet", "l3fabric_gw", "forward")
        drops = re.search(r"ip daddr @private4 counter packets (\d+)", counters.stdout)
        assert drops is not None and int(drops.group(1)) > 0
    finally:
        lab.exec("internet", "ip", "route", "del", PRIVATE, check=False)


def test_upstream_holds_exactly_the_public_aggregates_and_new_ones_within_2_s(lab: Lab) -> None:
    assert announced_to_internet(lab) == {PUBLIC}
    with lab.client() as api:
        net = api.create_network(name="pub2", **{"router:external": True})
        started = time.monotonic()
        api.create_subnet(network_id=net["id"], cidr="203.0.113.128/25", ip_version=4)
    # Adjacent public subnets go upstream as one aggregate; private ones never.
    wait_until(
        lambda: announced_to_internet(lab) == {"203.0.113.0/24"}, 2.0, "new public aggregate"
    )
    lab.boot("pubvm2", ["pub2"], "r1-h1")
    wait_until(lambda: reaches(lab, "client1", lab.vm_ip("pubvm2")), 5, "VM on the new subnet")
    assert time.monotonic() - started < 10
    assert not any(p.startswith("10.") for p in announced_to_internet(lab))


def last_pass(lab: Lab) -> dict:
    """The gateway's last pass as its heartbeat reports it (``agent.last_pass``)."""
    with lab.client() as api:
        return api.get_gateway("gw1")["agent"].get("last_pass") or {}


def recorded_passes(lab: Lab) -> list[dict]:
    """The gateway's passes that did something, as it wrote them (``passes.json``)."""
    path = lab.state.agent_dir("gw1") / "passes.json"
    return json.loads(path.read_text())["passes"] if path.exists() else []


def test_a_hand_deleted_nat_rule_is_restored_and_a_settled_gateway_plans_nothing(
    lab: Lab,
) -> None:
    chain = ("nft", "-a", "list", "chain", "inet", "l3fabric_gw", "forward")
    handle = re.search(r"ip daddr @private4 counter .* # handle (\d+)", lab.exec("gw1", *chain).stdout)  # fmt: skip
    assert handle is not None
    lab.exec("gw1", "nft", "delete", "rule", "inet", "l3fabric_gw", "forward", "handle", handle.group(1))  # fmt: skip
    assert "@private4" not in lab.exec("gw1", *chain).stdout
    known = len(recorded_passes(lab))
    # Any wake-up is a pass that reads the table by content: a new network will do.
    with lab.client() as api:
        api.create_network(name="nudge1")
    wait_until(lambda: "@private4" in lab.exec("gw1", *chain).stdout, 5, "the shield rule back")
    wait_until(lambda: len(recorded_passes(lab)) > known, 3, "the repair in passes.json")
    repair = recorded_passes(lab)[known:]
    assert [p["steps"]["nat"]["ops"] for p in repair if "nat" in p["steps"]] == [1]
    assert all(p["errors"] == [] for p in repair)
    # The heartbeat carries the last pass (per step seconds, operations, errors);
    # with nothing to change, a pass plans no operation (recorded only as an idle full pass).
    wait_until(lambda: last_pass(lab).get("number", 0) >= repair[-1]["number"], 8, "heartbeat")
    with lab.client() as api:
        api.create_network(name="nudge2")
    wait_until(lambda: last_pass(lab)["number"] > repair[-1]["number"], 8, "the next pass")
    settled = last_pass(lab)
    assert settled["ops"] == 0 and settled["errors"] == []
    assert {"observe", "desired", "plan"} <= set(settled["steps"])
    assert all(p["operations"] == 0 for p in recorded_passes(lab)[known + len(repair) :])
