"""End to end: VMs reach each other with their own addresses over plain routed hops.

One lab for the module: rack r1 with hosts r1-h1 and r1-h2 behind a ToR,
rack r2 with r2-h1, the gateway above both ToRs. VM ``src`` on r1-h1 talks
to a VM on the same host, one on the other host of its rack, and one in the
other rack. For each, over IPv4 and IPv6: ping's reply TTL dropped by
exactly the number of routers on the path (counted from the lab's wiring),
TCP arrives from the sender's own address, the packet on the receiving tap
carries both real addresses, and every interface on the path is a plain
veth; no host or ToR has a NAT chain, and no node's conntrack table holds a
translated entry for the flow.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import deque

import pytest

from l3fabric.lab.plan import Plan, build_plan
from l3fabric.lab.topology import parse_topology

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks:
  - {name: r1, hosts: 2}
  - {name: r2, hosts: 1}
internet: {clients: 0}
"""
SENDER = ("src", "r1-h1")
# Receiver VM -> its host; the test ids name the relation to the sender.
RECEIVERS = {"same-host": "r1-h1", "same-rack": "r1-h2", "other-rack": "r2-h1"}
INITIAL_TTL = 64  # Linux's default, in every VM namespace
TCP_PORT = 5001

# A one-connection TCP server: prints "ready", then the peer address it sees,
# and sends that address back to the client.
SERVER = """
import socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, int(sys.argv[2])))
s.listen(1)
s.settimeout(10)
print("ready", flush=True)
conn, peer = s.accept()
conn.sendall(peer[0].encode())
conn.close()
print("peer", peer[0], flush=True)
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
print(c.recv(100).decode())
"""


def routed_path(plan: Plan, a: str, b: str) -> list[str]:
    """The nodes a packet crosses from host ``a`` to host ``b``: a shortest fabric path.

    Every link of the fabric is an eBGP session and every node its own AS
    (the gateways share one but never peer with each other), so BGP's
    shortest AS path is the shortest path in the link graph.
    """
    neighbours: dict[str, list[str]] = {}
    for link in plan.links:
        if link.kind == "fabric":
            neighbours.setdefault(link.a, []).append(link.b)
            neighbours.setdefault(link.b, []).append(link.a)
    previous: dict[str, str | None] = {a: None}
    queue = deque([a])
    while queue:
        node = queue.popleft()
        for nxt in neighbours.get(node, []):
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    if b not in previous:
        raise AssertionError(f"no fabric path from {a} to {b}")
    path = [b]
    while (step := previous[path[-1]]) is not None:
        path.append(step)
    return path[::-1]


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    lab.create_network("priv")
    lab.boot(SENDER[0], ["priv"], SENDER[1])
    for relation, host in RECEIVERS.items():
        lab.boot(relation, ["priv"], host)
    for router in ("r1-tor", "r2-tor", "gw1"):
        lab.wait_established(router, with_hosts=True)
    for relation in RECEIVERS:
        for version in (4, 6):
            wait_until(
                lambda r=relation, v=version: ping(lab, lab.vm_ip(r, v), wait=1).returncode == 0,
                timeout=20,
                what=f"src reaches {relation} over IPv{version}",
            )
    return lab


def ping(lab: Lab, address: str, wait: float = 2) -> subprocess.CompletedProcess[str]:
    return lab.exec(SENDER[0], "ping", "-n", "-c1", f"-W{wait}", address, check=False)


def hops(lab: Lab, relation: str) -> int:
    return len(routed_path(lab.plan, SENDER[1], RECEIVERS[relation]))


def test_routed_path_follows_the_wiring() -> None:
    """The expected hop counts: the host; host, ToR, host; and up through the gateway."""
    plan = build_plan(parse_topology("name: paths\n" + TOPOLOGY))
    assert routed_path(plan, "r1-h1", "r1-h1") == ["r1-h1"]
    assert routed_path(plan, "r1-h1", "r1-h2") == ["r1-h1", "r1-tor", "r1-h2"]
    assert routed_path(plan, "r1-h1", "r2-h1") == ["r1-h1", "r1-tor", "gw1", "r2-tor", "r2-h1"]


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("relation", list(RECEIVERS))
def test_ping_ttl_drops_by_the_routed_hop_count(lab: Lab, relation: str, version: int) -> None:
    done = ping(lab, lab.vm_ip(relation, version))
    assert done.returncode == 0, done.stdout + done.stderr
    ttl = int(re.search(r"ttl=(\d+)", done.stdout).group(1))
    assert ttl == INITIAL_TTL - hops(lab, relation), done.stdout


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("relation", list(RECEIVERS))
def test_tcp_receiver_sees_the_senders_own_address(lab: Lab, relation: str, version: int) -> None:
    server_ip, client_ip = lab.vm_ip(relation, version), lab.vm_ip(SENDER[0], version)
    with lab.background(relation, sys.executable, "-c", SERVER, server_ip, str(TCP_PORT)) as srv:
        srv.wait_for_line("ready", timeout=10)
        done = lab.exec(SENDER[0], sys.executable, "-c", CLIENT, server_ip, str(TCP_PORT))
        assert srv.wait_for_line("peer", timeout=10) == f"peer {client_ip}"
    assert done.stdout.strip() == client_ip


def tap_of(lab: Lab, vm: str) -> str:
    return lab.state.vms()[vm]["ports"][0]["tap"]


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("relation", list(RECEIVERS))
def test_packet_on_the_receiving_tap_has_the_real_addresses(
    lab: Lab, relation: str, version: int
) -> None:
    """Captured where the host hands it to the VM: sender's source, VM's destination, TTL."""
    src, dst = lab.vm_ip(SENDER[0], version), lab.vm_ip(relation, version)
    echo = "icmp[icmptype] == icmp-echo" if version == 4 else "icmp6[icmp6type] == icmp6-echo"
    capture = ["timeout", "10", "tcpdump", "-l", "-n", "-v", "-c1", "-i", tap_of(lab, relation)]
    with lab.background(RECEIVERS[relation], *capture, echo) as dump:
        dump.wait_for_line("listening on", timeout=10)
        assert ping(lab, dst).returncode == 0
        out = dump.finish(timeout=10)
    # tcpdump -v: "IP (tos 0x0, ttl 59, ...)\n    10.1.0.2 > 10.1.0.5: ICMP echo request"
    # or "IP6 (flowlabel ..., hlim 59, ...) 2001:db8:1::2 > 2001:db8:1::5: ICMP6, echo request"
    addresses = re.search(r"\s(\S+) > (\S+): ", out)
    assert addresses, out
    assert addresses.groups() == (src, dst), out
    ttl = re.search(r"(?:ttl|hlim) (\d+)", out)
    assert ttl and int(ttl.group(1)) == INITIAL_TTL - hops(lab, relation), out


def nat_chains(ruleset: dict) -> list[str]:
    return [
        f"{item['chain']['table']}/{item['chain']['name']}"
        for item in ruleset["nftables"]
        if "chain" in item and item["chain"].get("type") == "nat"
    ]


def conntrack_nat(lab: Lab, node: str, a: str, b: str) -> list[str]:
    """Tracked flows between ``a`` and ``b`` whose reply tuple is not the mirrored original."""
    out = lab.exec(node, "conntrack", "-L", "-f", "ipv6" if ":" in a else "ipv4").stdout
    bad = []
    for line in out.splitlines():
        srcs, dsts = re.findall(r"src=(\S+)", line), re.findall(r"dst=(\S+)", line)
        tracked = len(srcs) == 2 and {srcs[0], dsts[0]} == {a, b}
        if tracked and (srcs[1], dsts[1]) != (dsts[0], srcs[0]):
            bad.append(line)
    return bad


@pytest.mark.parametrize("relation", list(RECEIVERS))
def test_no_encapsulation_or_nat_on_the_path(lab: Lab, relation: str) -> None:
    path = routed_path(lab.plan, SENDER[1], RECEIVERS[relation])
    for version in (4, 6):
        a, b = lab.vm_ip(SENDER[0], version), lab.vm_ip(relation, version)
        # Forget flows from before the fabric had converged: a ping sent while
        # the gateway did not know the receiver yet went upstream, SNATed as it
        # should be. What must hold is that the converged path translates nothing.
        for node in path:
            lab.exec(node, "conntrack", "-D", "-s", a, "-d", b, check=False)
        assert ping(lab, b).returncode == 0
    for node in path:
        links = json.loads(lab.exec(node, "ip", "-d", "-j", "link", "show").stdout)
        kinds = {
            link["ifname"]: link.get("linkinfo", {}).get("info_kind")
            for link in links
            if link["ifname"] != "lo"
        }
        # veth is a plain Ethernet pair: no vxlan, gre, ipip, sit, wireguard or bridge.
        assert set(kinds.values()) == {"veth"}, f"{node}: {kinds}"
        if lab.plan.node(node).role != "gateway":
            # A gateway source-NATs private traffic leaving upstream (docs/gateway.md), so
            # it may have a NAT chain; that east-west flows through it are never
            # translated is what its conntrack table shows below.
            ruleset = json.loads(lab.exec(node, "nft", "-j", "list", "ruleset").stdout)
            assert nat_chains(ruleset) == [], f"{node} has NAT chains"
        for version in (4, 6):
            a, b = lab.vm_ip(SENDER[0], version), lab.vm_ip(relation, version)
            assert conntrack_nat(lab, node, a, b) == [], f"{node} NATs {a} <-> {b}"


def test_a_port_that_gains_ipv6_is_routed_over_it_and_one_that_loses_it_is_not(lab: Lab) -> None:
    """An IPv4-only port's tap has IPv6 off; an IPv6 address added later turns it on and routes it."""
    network = lab.create_network("v4first", cidrs=("10.3.0.0/24",))
    host = "r1-h2"
    lab.boot("late6", ["v4first"], host)
    port = lab.state.vms()["late6"]["ports"][0]
    setting = f"/proc/sys/net/ipv6/conf/{port['tap']}/disable_ipv6"

    def ipv6_off() -> bool:
        return lab.exec(host, "cat", setting).stdout.strip() == "1"

    wait_until(ipv6_off, 10, "IPv6 off on the IPv4-only port's tap")
    address = "2001:db8:3::5"
    with lab.client() as client:
        subnet = client.create_subnet(
            network_id=network["id"], cidr="2001:db8:3::/64", ip_version=6
        )
        v6 = {"subnet_id": subnet["id"], "ip_address": address}
        client.update("ports", port["id"], {"fixed_ips": [*port["fixed_ips"], v6]})
        # The VM configures its new address itself, as a guest would.
        lab.exec("late6", "ip", "addr", "add", f"{address}/128", "dev", "eth0", "nodad")
        lab.exec("late6", "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
        wait_until(lambda: ping(lab, address, wait=1).returncode == 0, 15, f"{address} answers")
        assert not ipv6_off()
        # It loses the address again: IPv6 off, and nothing routes it any more.
        client.update("ports", port["id"], {"fixed_ips": port["fixed_ips"]})
        wait_until(ipv6_off, 10, "IPv6 off again")
        assert address not in lab.exec(host, "ip", "-6", "route", "show").stdout
        assert ping(lab, address, wait=1).returncode != 0
