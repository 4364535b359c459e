"""Security groups with real nftables and real packets: a "host" namespace, three "VMs" on taps.

One set of namespaces for the module (the states below are applied in turn);
every check is a real TCP connection, ping or ping6 between namespaces.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane import sg_render
from l3fabric.dataplane.links import Links, tap_name
from l3fabric.dataplane.routes import EndpointRoutes, ensure_link_local_gateway
from l3fabric.dataplane.secgroups import SecurityGroupsTable
from l3fabric.dataplane.sg_model import build_state, memberships
from l3fabric.dataplane.sg_render import port_chain

from .conftest import in_ns, ip
from .scripts import ECHO_SERVERS

DEFAULT = "0d000000-0000-4000-8000-000000000001"
WEB = "0d000000-0000-4000-8000-000000000002"
OTHER = "0d000000-0000-4000-8000-000000000003"
VMS = {  # name -> (port id, IPv4, IPv6)
    "a": ("aa000000-0000-4000-8000-00000000000a", "10.9.0.1", "fd00:9::1"),
    "b": ("bb000000-0000-4000-8000-00000000000b", "10.9.0.2", "fd00:9::2"),
    "c": ("cc000000-0000-4000-8000-00000000000c", "10.9.0.3", "fd00:9::3"),
}
PORTS = (22, 80, 81)
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
for line in sys.stdin:
    s.sendall(line.encode())
    s.settimeout(float(sys.argv[3]))
    try:
        got = s.recv(100)
    except OSError:
        got = b""
    print("echo" if got else "lost", flush=True)
"""


def rule(direction: str, ethertype: str = "IPv4", **attrs: Any) -> dict[str, Any]:
    return {"id": secrets.token_hex(4), "direction": direction, "ethertype": ethertype, **attrs}


def default_rules(group: str) -> list[dict[str, Any]]:
    return [
        rule("ingress", "IPv4", remote_group_id=group),
        rule("ingress", "IPv6", remote_group_id=group),
        rule("egress", "IPv4"),
        rule("egress", "IPv6"),
    ]


def port(vm: str, groups: list[str], security: bool = True) -> dict[str, Any]:
    port_id, v4, v6 = VMS[vm]
    return {
        "id": port_id,
        "fixed_ips": [{"ip_address": v4}, {"ip_address": v6}],
        "security_groups": groups if security else [],
        "port_security_enabled": security,
    }


class Lab:
    def __init__(self, host: str, vms: dict[str, str]) -> None:
        self.host, self.vms = host, vms
        self.table = SecurityGroupsTable(host)

    def apply(self, groups: dict[str, list[dict[str, Any]]], ports: list[dict], full=False):
        objects = [{"id": g, "security_group_rules": r} for g, r in groups.items()]
        state = build_state(objects, ports, memberships(ports))
        assert not state.errors
        return self.table.apply(state, full=full)

    def tcp(self, src: str, dst: str, dport: int, v6: bool = False, wait: float = 3) -> bool:
        """A TCP connection src -> dst:dport within ``wait`` s (a drop costs all of it)."""
        address = VMS[dst][2 if v6 else 1]
        code = "import socket,sys; socket.create_connection(sys.argv[1:3], float(sys.argv[3]))"
        argv = [sys.executable, "-c", code, address, str(dport), str(wait)]
        return in_ns(self.vms[src], *argv, check=False).returncode == 0

    def blocked(self, src: str, dst: str, dport: int, v6: bool = False) -> bool:
        return not self.tcp(src, dst, dport, v6, wait=0.7)

    def ping(self, src: str, dst: str, v6: bool = False, wait: int = 3) -> bool:
        argv = ["ping", "-6" if v6 else "-4", "-c1", f"-W{wait}", VMS[dst][2 if v6 else 1]]
        return in_ns(self.vms[src], *argv, check=False).returncode == 0

    def connection(self, src: str, dst: str, dport: int) -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", CLIENT, VMS[dst][1], str(dport), "2"]
        client = subprocess.Popen(
            ["ip", "netns", "exec", self.vms[src], *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert talk(client) == "echo"
        return client


def talk(client: subprocess.Popen[str]) -> str:
    assert client.stdin and client.stdout
    client.stdin.write("hello\n")
    client.stdin.flush()
    return client.stdout.readline().strip()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    tag = "t" + secrets.token_hex(2)
    made: list[str] = []
    servers: list[subprocess.Popen[str]] = []
    try:
        host = f"l3f-{tag}-sghost"
        netns_mod.create(host)
        made.append(host)
        vms = {}
        for name, (port_id, v4, v6) in VMS.items():
            vm = f"l3f-{tag}-sg{name}"
            netns_mod.create(vm)
            made.append(vm)
            vms[name] = vm
            tap = tap_name(port_id)
            ip("-n", host, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vm)
            ip("-n", vm, "link", "set", "eth0", "up")
            ip("-n", vm, "addr", "add", f"{v4}/32", "dev", "eth0")
            ip("-n", vm, "addr", "add", f"{v6}/128", "dev", "eth0", "nodad")
            ip("-n", vm, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
            ip("-n", vm, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
            ip("-n", vm, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
            server = subprocess.Popen(
                ["ip", "netns", "exec", vm, sys.executable, "-c", ECHO_SERVERS, *map(str, PORTS)],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(server)
            assert server.stdout and server.stdout.readline().strip() == "ready"
        with Links(host) as links:
            links.ensure_host()
            for port_id, _, _ in VMS.values():
                links.ensure_tap(tap_name(port_id))
        ensure_link_local_gateway(host)
        with EndpointRoutes(host) as routes:
            routes.converge(
                {
                    f"{a}/{n}": tap_name(p)
                    for p, v4, v6 in VMS.values()
                    for a, n in ((v4, 32), (v6, 128))
                }
            )
        yield Lab(host, vms)
    finally:
        for server in servers:
            server.kill()
            server.wait()
        for name in reversed(made):
            netns_mod.delete(name)


def test_default_group_admits_members_only(lab: Lab) -> None:
    report = lab.apply(
        {DEFAULT: default_rules(DEFAULT), OTHER: [rule("egress"), rule("egress", "IPv6")]},
        [port("a", [DEFAULT]), port("b", [DEFAULT]), port("c", [OTHER])],
    )
    assert report.transaction.full
    assert lab.tcp("a", "b", 22) and lab.tcp("b", "a", 80) and lab.ping("b", "a")
    assert lab.blocked("c", "a", 80) and not lab.ping("c", "b", wait=1)
    # c's group admits nothing new: the members cannot reach it either.
    assert lab.blocked("a", "c", 80)
    # IPv6 through the same group, with neighbour discovery host <-> VM working.
    assert lab.tcp("a", "b", 80, v6=True) and lab.ping("b", "a", v6=True)
    assert lab.blocked("c", "a", 80, v6=True)


def _port_chains(lab: Lab) -> set[str]:
    listing = lab.table.listing()
    assert listing is not None
    return {c for c in listing.chains if c.startswith(("in-", "out-"))}


def test_ports_in_the_same_groups_share_one_chain_pair(lab: Lab) -> None:
    groups = {DEFAULT: default_rules(DEFAULT), OTHER: [rule("egress")]}
    lab.apply(groups, [port("a", [DEFAULT]), port("b", [DEFAULT]), port("c", [OTHER])])
    # One pair for (DEFAULT,) and one for (OTHER,): not one per port.
    assert len(_port_chains(lab)) == 4
    assert lab.tcp("a", "b", 22) and lab.blocked("c", "a", 22)
    # b leaves: a keeps the shared pair and is filtered as before.
    report = lab.apply(groups, [port("a", [DEFAULT]), port("c", [OTHER])])
    assert "delete chain" not in report.transaction.script
    assert len(_port_chains(lab)) == 4
    assert lab.blocked("c", "a", 22) and lab.blocked("a", "b", 22)
    # The last port of (DEFAULT,) leaves: its pair goes with it.
    lab.apply(groups, [port("c", [OTHER])])
    assert len(_port_chains(lab)) == 2


def test_restart_changes_nothing(lab: Lab) -> None:
    groups = {DEFAULT: default_rules(DEFAULT)}
    ports = [port("a", [DEFAULT]), port("b", [DEFAULT]), port("c", [DEFAULT])]
    lab.apply(groups, ports)
    again = SecurityGroupsTable(lab.host)  # a restarted agent: reads the kernel back
    objects = [{"id": g, "security_group_rules": r} for g, r in groups.items()]
    report = again.apply(build_state(objects, ports, memberships(ports)), full=True)
    assert report.transaction.statements == 0 and not report.pruned


def test_tcp_80_only_and_stateful_without_egress(lab: Lab) -> None:
    web = [rule("ingress", protocol="tcp", port_range_min=80, port_range_max=80)]
    lab.apply(
        {WEB: web, OTHER: [rule("egress"), rule("ingress", protocol="tcp")]},
        [port("a", [WEB]), port("c", [OTHER])],
    )
    assert lab.tcp("c", "a", 80)  # the reply passes: stateful
    assert lab.blocked("c", "a", 22)
    assert not lab.ping("c", "a", wait=1)
    # WEB has no egress rule: a cannot start a connection, though c admits TCP.
    assert lab.blocked("a", "c", 80)


def test_member_added_and_removed(lab: Lab) -> None:
    groups = {DEFAULT: default_rules(DEFAULT), OTHER: [rule("egress")]}
    lab.apply(groups, [port("a", [DEFAULT]), port("c", [OTHER])])
    assert lab.blocked("c", "a", 22)
    # c joins DEFAULT: its address enters the set and its tap moves to the
    # chains of its new set of groups; a patch, and no flow is cut.
    report = lab.apply(groups, [port("a", [DEFAULT]), port("c", [OTHER, DEFAULT])])
    assert not report.transaction.full and not report.pruned
    assert lab.tcp("c", "a", 22)
    report = lab.apply(groups, [port("a", [DEFAULT]), port("c", [OTHER])])
    assert lab.blocked("c", "a", 22)


def test_deleting_the_only_rule_cuts_an_established_connection(lab: Lab) -> None:
    allow80 = rule("ingress", protocol="tcp", port_range_min=80, port_range_max=80)
    allow_range = rule("ingress", protocol="tcp", port_range_min=80, port_range_max=81)
    others = {OTHER: [rule("egress")]}
    ports = [port("a", [WEB]), port("c", [OTHER])]
    lab.apply({WEB: [allow80, allow_range], **others}, ports)
    kept = lab.connection("c", "a", 80)
    cut = lab.connection("c", "a", 81)
    try:
        # 80-81 goes: port 81 loses its only rule, port 80 is still allowed by allow80.
        started = time.monotonic()
        report = lab.apply({WEB: [allow80], **others}, ports)
        assert time.monotonic() - started < 1.0
        assert talk(cut) == "lost"
        assert talk(kept) == "echo"
        assert [f.dport for f in report.pruned] == [81]
    finally:
        for client in (kept, cut):
            client.kill()
            client.wait()


def test_port_security_off_passes_all(lab: Lab) -> None:
    lab.apply(
        {OTHER: []},
        [port("a", [OTHER]), port("b", [], security=False), port("c", [], security=False)],
    )
    assert lab.tcp("c", "b", 22) and lab.ping("b", "c", v6=True)
    assert lab.blocked("c", "a", 22)  # a still has its (empty) group


def test_hand_deleted_rule_is_restored_by_a_full_apply(lab: Lab) -> None:
    groups = {
        WEB: [rule("ingress", protocol="tcp", port_range_min=80, port_range_max=80)],
        OTHER: [rule("egress")],
    }
    ports = [port("a", [WEB]), port("c", [OTHER])]
    lab.apply(groups, ports)
    chain = f"sgi-{WEB}"
    listing = json.loads(
        in_ns(lab.host, "nft", "-j", "list", "chain", "inet", "l3fabric-sg", chain).stdout
    )
    handle = next(i["rule"]["handle"] for i in listing["nftables"] if "rule" in i)
    in_ns(lab.host, "nft", "delete", "rule", "inet", "l3fabric-sg", chain, "handle", str(handle))
    assert lab.blocked("c", "a", 80)
    report = lab.apply(groups, ports, full=True)
    assert report.transaction.chains == (chain,) and not report.transaction.full
    assert lab.tcp("c", "a", 80)


def _nft(lab: Lab, *args: str) -> None:
    in_ns(lab.host, "nft", *args)


def test_hand_deleted_tap_element_and_pair_rule_are_restored_by_a_full_apply(lab: Lab) -> None:
    groups = {DEFAULT: default_rules(DEFAULT)}
    ports = [port("a", [DEFAULT]), port("b", [DEFAULT])]
    lab.apply(groups, ports)
    assert lab.tcp("a", "b", 22)
    # b's tap out of its pair's tap set: in no set and no map, so dropped.
    tap_set, tap = f"taps-{port_chain((DEFAULT,), 'ingress')}", tap_name(VMS["b"][0])
    _nft(lab, "delete", "element", "inet", "l3fabric-sg", tap_set, f'{{ "{tap}" }}')
    assert lab.blocked("a", "b", 22)
    report = lab.apply(groups, ports, full=True)
    assert report.transaction.script == f'add element inet l3fabric-sg {tap_set} {{ "{tap}" }}\n'
    assert lab.tcp("a", "b", 22)
    # The ingress base chain's rule for the pair deleted: that base chain is rewritten.
    listing = json.loads(
        in_ns(
            lab.host, "nft", "-a", "-j", "list", "chain", "inet", "l3fabric-sg", "sg-ingress"
        ).stdout
    )
    handle = next(
        i["rule"]["handle"] for i in listing["nftables"] if tap_set in json.dumps(i.get("rule"))
    )
    _nft(lab, "delete", "rule", "inet", "l3fabric-sg", "sg-ingress", "handle", str(handle))
    assert lab.blocked("a", "b", 22)
    report = lab.apply(groups, ports, full=True)
    assert report.transaction.chains == ("sg-ingress",) and not report.transaction.full
    assert lab.tcp("a", "b", 22)


def test_pairs_beyond_the_dedicated_ones_use_the_verdict_maps(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sg_render, "DEDICATED_MAX", 1)
    groups = {DEFAULT: default_rules(DEFAULT), OTHER: [rule("egress")]}
    ports = [port("a", [DEFAULT]), port("b", [DEFAULT]), port("c", [OTHER])]
    lab.apply(groups, ports)
    listing = lab.table.listing()
    assert listing is not None and len(listing.dedicated) == 1
    maps = json.loads(
        in_ns(lab.host, "nft", "-j", "list", "map", "inet", "l3fabric-sg", "sg_in").stdout
    )
    in_map = [e[0] for i in maps["nftables"] if "map" in i for e in i["map"].get("elem", [])]
    # The pair that sorts first has the tap set; the other's taps are in the map.
    pairs = {
        vm: port_chain(tuple(p["security_groups"]), "ingress")
        for vm, p in zip("abc", ports, strict=True)
    }
    assert sorted(in_map) == sorted(
        tap_name(VMS[vm][0]) for vm, pair in pairs.items() if pair != min(pairs.values())
    )
    assert lab.tcp("a", "b", 22) and lab.blocked("c", "a", 22) and lab.blocked("a", "c", 22)
    # With room for both, every tap moves to a tap set: one atomic replacement.
    monkeypatch.setattr(sg_render, "DEDICATED_MAX", 2)
    report = lab.apply(groups, ports)
    assert report.transaction.full
    listing = lab.table.listing()
    assert listing is not None and len(listing.dedicated) == 2
    assert lab.tcp("a", "b", 22) and lab.blocked("c", "a", 22) and lab.blocked("a", "c", 22)
