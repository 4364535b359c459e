"""DHCP on every host: the agent's dnsmasq, real clients in lab VMs (``lab boot --dhcp``).

One lab for the module: two hosts, a network with a DHCP-enabled IPv4
subnet (DNS servers, a host route, MTU 1400 on the network) and a
``dhcpv6-stateful`` IPv6 subnet.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from l3fabric.lab import boot
from l3fabric.lab.dhcp_client import netns_etc

from .lab_fixtures import Lab, module_lab_factory, needs_root, needs_tools, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root, needs_tools("dnsmasq", "dhclient", "udhcpc")]

HOST = "r1-h1"
OTHER = "r1-h2"
DNS4 = "192.0.2.53"
DNS6 = "2001:db8::53"
MTU = 1400


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory("racks: [{name: r1, hosts: 2, tor: false}]")
    with lab.client() as client:
        net = client.create_network(name="dhcp", mtu=MTU)
        client.create_subnet(
            network_id=net["id"],
            cidr="10.7.0.0/24",
            ip_version=4,
            dns_nameservers=[DNS4],
            host_routes=[{"destination": "198.51.100.0/24", "nexthop": "10.7.0.1"}],
        )
        client.create_subnet(
            network_id=net["id"],
            cidr="2001:db8:7::/64",
            ip_version=6,
            ipv6_address_mode="dhcpv6-stateful",
            ipv6_ra_mode="dhcpv6-stateful",
            dns_nameservers=[DNS6],
        )
    lab.wait_established("gw1", with_hosts=True)
    return lab


def dhcp_boot(lab: Lab, vm: str, host: str = HOST, client: str = "dhclient") -> dict[str, Any]:
    return boot.boot(lab.plan, lab.state, vm, ["dhcp"], host, [], dhcp=client)


def lease_info(lab: Lab, vm: str) -> dict[str, Any]:
    return json.loads((boot.dhcp_dir(lab.state, vm) / "eth0.json").read_text())


def agent_dir(lab: Lab, host: str) -> Path:
    return lab.state.agent_dir(host)


def dnsmasq_pid(lab: Lab, host: str) -> int:
    return int((agent_dir(lab, host) / "dnsmasq.pid").read_text())


def test_dhclient_gets_address_routes_dns_mtu_and_ipv6(lab: Lab) -> None:
    real_resolv = Path("/etc/resolv.conf").read_bytes()
    record = dhcp_boot(lab, "d1")
    ip4, ip6 = (f["ip_address"] for f in sorted(record["ports"][0]["fixed_ips"], key=lambda f: ":" in f["ip_address"]))  # fmt: skip
    addrs = lab.exec("d1", "ip", "addr", "show", "eth0").stdout
    assert f"inet {ip4}/24" in addrs
    assert f"inet6 {ip6}/128" in addrs
    assert "mtu 1400" in addrs
    routes = lab.exec("d1", "ip", "route").stdout
    assert "default via 169.254.1.1 dev eth0" in routes
    assert "169.254.1.1 dev eth0 scope link" in routes
    assert "198.51.100.0/24 via 10.7.0.1 dev eth0" in routes
    # IPv6: the default route comes from the host's router advertisement
    # (via the tap's link-local address).
    wait_until(
        lambda: re.search(
            r"default via fe80::\S+ dev eth0 proto ra", lab.exec("d1", "ip", "-6", "route").stdout
        ),
        timeout=10,
        what="the RA's default route",
    )
    ns = record["namespace"]
    resolv = (netns_etc(ns) / "resolv.conf").read_text()
    assert f"nameserver {DNS4}" in resolv and f"nameserver {DNS6}" in resolv
    # Inside the VM, /etc/resolv.conf is its own; the machine's is untouched.
    assert DNS4 in lab.exec("d1", "cat", "/etc/resolv.conf").stdout
    assert Path("/etc/resolv.conf").read_bytes() == real_resolv
    assert lease_info(lab, "d1")["ipv4"]["hostname"] == "host-" + ip4.replace(".", "-")
    # The lease works in the routed fabric: a VM on the other host reaches it, both families.
    lab.boot("s1", ["dhcp"], OTHER)
    for address in (ip4, ip6):
        wait_until(
            lambda a=address: lab.exec("s1", "ping", "-c1", "-W1", a, check=False).returncode == 0,
            timeout=15,
            what=f"s1 reaches d1 at {address}",
        )
    lab.delete("s1")
    lab.delete("d1")
    assert not netns_etc(ns).exists()


def test_udhcpc_gets_address_and_routes(lab: Lab) -> None:
    record = dhcp_boot(lab, "u1", client="udhcpc")
    ip4 = next(
        f["ip_address"] for f in record["ports"][0]["fixed_ips"] if ":" not in f["ip_address"]
    )
    assert f"inet {ip4}/24" in lab.exec("u1", "ip", "addr", "show", "eth0").stdout
    routes = lab.exec("u1", "ip", "route").stdout
    assert "default via 169.254.1.1 dev eth0" in routes
    assert "mtu 1400" in lab.exec("u1", "ip", "link", "show", "eth0").stdout
    lab.delete("u1")


def udhcpc_once(ns: str) -> tuple[int, str]:
    """One udhcpc run in ``ns`` that applies nothing (its script is ``true``): (exit code, output)."""
    argv = ["udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "2", "-T", "1", "-s", "/bin/true"]
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=15
    )
    return done.returncode, done.stdout + done.stderr


def test_unknown_mac_gets_nothing_and_other_vms_hear_nothing(lab: Lab) -> None:
    dhcp_boot(lab, "k1")  # dnsmasq runs on HOST, serving k1
    lab.boot("k2", ["dhcp"], HOST)  # a neighbour VM on the same host
    host_ns = lab.plan.node(HOST).namespace
    stranger = f"l3f-{lab.name}-vm-stranger"
    subprocess.run(["ip", "netns", "add", stranger], check=True)
    try:
        subprocess.run(
            ["ip", "-n", host_ns, "link", "add", "tap00000000-st", "type", "veth", "peer", "name", "eth0", "netns", stranger],
            check=True,
        )  # fmt: skip
        subprocess.run(["ip", "-n", host_ns, "link", "set", "tap00000000-st", "up"], check=True)
        subprocess.run(["ip", "-n", stranger, "link", "set", "eth0", "up"], check=True)
        with lab.background(
            "k2", "tcpdump", "-n", "-l", "-i", "eth0", "udp port 67 or udp port 68"
        ) as cap:
            cap.wait_for_line("listening on", timeout=10)
            code, out = udhcpc_once(stranger)
            # k1 asks again: its DHCP must not reach k2 either.
            assert "obtained" in udhcpc_once(lab.ns("k1"))[1]
            output = cap.stop()
        assert code != 0 and "obtained" not in out, out
        assert " > " not in output.split("listening on", 1)[1], output
    finally:
        subprocess.run(["ip", "netns", "del", stranger], check=False)
    lab.delete("k1")
    lab.delete("k2")


def test_no_answer_on_a_link_that_is_not_a_tap(lab: Lab) -> None:
    """A link like a fabric link (not ``tap*``), even for a known MAC: dnsmasq is not there."""
    record = dhcp_boot(lab, "f1")
    host_ns = lab.plan.node(HOST).namespace
    peer = f"l3f-{lab.name}-vm-fabricpeer"
    subprocess.run(["ip", "netns", "add", peer], check=True)
    try:
        mac = record["ports"][0]["mac"]
        subprocess.run(
            ["ip", "-n", host_ns, "link", "add", "l3f-fab9", "type", "veth", "peer", "name", "eth0", "address", mac, "netns", peer],
            check=True,
        )  # fmt: skip
        subprocess.run(["ip", "-n", host_ns, "link", "set", "l3f-fab9", "up"], check=True)
        subprocess.run(["ip", "-n", peer, "link", "set", "eth0", "up"], check=True)
        code, out = udhcpc_once(peer)
        assert code != 0 and "obtained" not in out, out
        # The same MAC on its tap is served (the refusal above is the link's).
        assert "obtained" in udhcpc_once(lab.ns("f1"))[1]
    finally:
        subprocess.run(["ip", "netns", "del", peer], check=False)
    lab.delete("f1")


def test_address_change_and_deletion_reach_dnsmasq_without_restart(lab: Lab) -> None:
    dhcp_boot(lab, "c2")  # stays: dnsmasq keeps a port to serve
    record = dhcp_boot(lab, "c1")
    pid = dnsmasq_pid(lab, HOST)
    port_id = record["ports"][0]["id"]
    with lab.client() as client:
        port = client.get("ports", port_id)
        v6 = [f for f in port["fixed_ips"] if ":" in f["ip_address"]]
        client.update("ports", port_id, {"fixed_ips": [{"ip_address": "10.7.0.77"}, *v6]})
    hosts = agent_dir(lab, HOST) / "dhcp-hosts"
    wait_until(
        lambda: ",10.7.0.77," in hosts.read_text(),
        timeout=10,
        what="the new address in dnsmasq's hosts file",
    )
    # The VM asks again (as at its next renewal) and gets the new address.
    wait_until(
        lambda: "lease of 10.7.0.77 obtained" in udhcpc_once(lab.ns("c1"))[1],
        timeout=10,
        what="the new lease",
    )
    with lab.client() as client:
        client.delete("ports", port_id)
    wait_until(
        lambda: record["ports"][0]["mac"] not in hosts.read_text(),
        timeout=10,
        what="the port gone from dnsmasq",
    )
    assert "obtained" not in udhcpc_once(lab.ns("c1"))[1]
    assert dnsmasq_pid(lab, HOST) == pid and os.path.exists(f"/proc/{pid}")
    lab.delete("c1")
    lab.delete("c2")
