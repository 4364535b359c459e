"""End to end: a VM cannot send from an address that is not its own.

One lab for the module: rack r1 with hosts r1-h1 and r1-h2 behind a ToR.
The ``attacker`` VM (on r1-h1) gives its eth0 extra addresses and pings the
``target`` VM (on r1-h2) from them; tcpdump inside the target records every
echo request that arrives. Each round ends with a ping from the attacker's
real address, which must arrive: packets on the same path arrive in order,
so once it is seen, any spoofed packet sent before it would have been too,
and no fixed sleep is needed. An address the API puts in the port's
``allowed_address_pairs`` becomes a permitted source once the agent has
applied it.
"""

from __future__ import annotations

import json
import re

import pytest

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks:
  - {name: r1, hosts: 2}
internet: {clients: 0}
"""
ATTACKER = ("attacker", "r1-h1")
TARGET = ("target", "r1-h2")
VICTIM = ("victim", "r1-h2")  # a VM whose real address the attacker claims
UNUSED = {4: "10.1.0.200", 6: "2001:db8:1::200"}  # in the subnet, on no port
PAIR = {4: "10.1.0.201", 6: "2001:db8:1::201"}  # becomes an allowed address pair
SPOOFED_PINGS = 3
ECHO_REQUESTS = "icmp[icmptype] == icmp-echo or icmp6[icmp6type] == icmp6-echo"


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Lab:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    lab.create_network("priv")
    for vm, host in (ATTACKER, TARGET, VICTIM):
        lab.boot(vm, ["priv"], host)
    lab.wait_established("r1-tor", with_hosts=True)
    for version in (4, 6):
        lab.first_reply(ATTACKER[0], lab.vm_ip(TARGET[0], version), within=20)
        # The extra addresses the attacker sends from: the kernel uses them as
        # sources only when asked (ping -I), its own address stays the default.
        for address in (UNUSED[version], PAIR[version], lab.vm_ip(VICTIM[0], version)):
            extra = [f"{address}/32"] if version == 4 else [f"{address}/128", "nodad"]
            lab.exec(ATTACKER[0], "ip", "addr", "add", *extra, "dev", "eth0")
    return lab


def arrived_sources(lab: Lab, version: int, sources: list[str]) -> set[str]:
    """Ping the target from each of ``sources``, then from the attacker's own address.

    Returns the sources of every echo request the target received.
    """
    own, target = lab.vm_ip(ATTACKER[0], version), lab.vm_ip(TARGET[0], version)
    capture = ("timeout", "20", "tcpdump", "-l", "-n", "-i", "eth0", ECHO_REQUESTS)
    with lab.background(TARGET[0], *capture) as dump:
        dump.wait_for_line("listening on", timeout=10)
        for source in sources:
            ping = ("ping", "-n", f"-c{SPOOFED_PINGS}", "-i0.05", "-W0.2", "-I", source, target)
            lab.exec(ATTACKER[0], *ping, check=False)
        lab.exec(ATTACKER[0], "ping", "-n", "-c1", "-W2", "-I", own, target)
        dump.wait_for_line(f" {own} > {target}: ", timeout=10)
    found = (re.search(r"IP6? (\S+) > \S+: ", line) for line in dump.lines)
    return {m.group(1) for m in found if m}


def dropped_at_host(lab: Lab) -> int:
    """Packets the anti-spoofing rule on the attacker's host has dropped so far."""
    chain = json.loads(
        lab.exec(ATTACKER[1], "nft", "-j", "list", "chain", "inet", "l3fabric", "prerouting").stdout
    )
    for item in chain["nftables"]:
        expr = item.get("rule", {}).get("expr", [])
        if any("drop" in e for e in expr):
            return next(e["counter"]["packets"] for e in expr if "counter" in e)
    raise AssertionError(f"no drop rule with a counter on {ATTACKER[1]}: {chain}")


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("claimed", ["unused-address", "other-vm-address"])
def test_spoofed_source_never_arrives(lab: Lab, claimed: str, version: int) -> None:
    source = UNUSED[version] if claimed == "unused-address" else lab.vm_ip(VICTIM[0], version)
    before = dropped_at_host(lab)
    arrived = arrived_sources(lab, version, [source])
    assert lab.vm_ip(ATTACKER[0], version) in arrived  # the real address gets through
    assert source not in arrived
    assert dropped_at_host(lab) - before >= SPOOFED_PINGS  # dropped at the attacker's host


def nft_allows(lab: Lab, address: str) -> bool:
    family = "allowed6" if ":" in address else "allowed4"
    listed = lab.exec(ATTACKER[1], "nft", "list", "set", "inet", "l3fabric", family).stdout
    return re.search(rf"\. {re.escape(address)}(/\d+)?\b", listed) is not None


@pytest.mark.parametrize("version", [4, 6])
def test_allowed_address_pair_is_a_permitted_source(lab: Lab, version: int) -> None:
    pair = PAIR[version]
    assert pair not in arrived_sources(lab, version, [pair])
    port_id = lab.state.vms()[ATTACKER[0]]["ports"][0]["id"]
    with lab.client() as client:
        client.update("ports", port_id, {"allowed_address_pairs": [{"ip_address": pair}]})
    try:
        applied = wait_until(lambda: nft_allows(lab, pair), timeout=10, what=f"{pair} in nftables")
        print(f"\nallowed_address_pairs update -> in the host's nftables set: {applied:.3f} s")
        assert pair in arrived_sources(lab, version, [pair])
    finally:
        with lab.client() as client:
            client.update("ports", port_id, {"allowed_address_pairs": []})
    wait_until(lambda: not nft_allows(lab, pair), timeout=10, what=f"{pair} out of nftables")
    assert pair not in arrived_sources(lab, version, [pair])


def _drop_rule_handle(lab: Lab) -> int | None:
    chain = json.loads(
        lab.exec(ATTACKER[1], "nft", "-j", "list", "chain", "inet", "l3fabric", "prerouting").stdout
    )
    for item in chain["nftables"]:
        rule = item.get("rule", {})
        if any("drop" in e for e in rule.get("expr", [])):
            return int(rule["handle"])
    return None


def _routed(lab: Lab, address: str) -> bool:
    """The agent's own route (protocol 96) to ``address`` is on the attacker's host."""
    show = ("ip", "route", "show", "exact", f"{address}/32", "proto", "96")
    return bool(lab.exec(ATTACKER[1], *show).stdout.strip())


def test_a_route_element_and_rule_deleted_by_hand_are_restored(lab: Lab) -> None:
    host, address = ATTACKER[1], lab.vm_ip(ATTACKER[0])
    tap = "tap" + lab.state.vms()[ATTACKER[0]]["ports"][0]["id"][:11]
    handle = _drop_rule_handle(lab)
    assert handle is not None and nft_allows(lab, address) and _routed(lab, address)
    # A route and a set element alone: the next full pass (every 10 s) reads
    # the kernel and the table by content and adds back just those.
    lab.exec(host, "ip", "route", "del", f"{address}/32", "proto", "96")
    element = f'{{ "{tap}" . {address} }}'  # a host address: the hash set, no prefix length
    lab.exec(host, "nft", "delete", "element", "inet", "l3fabric", "allowed4", element)
    assert not nft_allows(lab, address) and not _routed(lab, address)
    repaired = wait_until(
        lambda: _routed(lab, address) and nft_allows(lab, address),
        timeout=25,
        what="the route and the set element back",
    )
    print(f"\nroute and element repaired after {repaired:.1f} s")
    assert _drop_rule_handle(lab) == handle  # element by element: the table was not rewritten
    # The drop rule alone: its table is rewritten (the digest in its comment
    # is the same; the rule count per chain tells).
    lab.exec(host, "nft", "delete", "rule", "inet", "l3fabric", "prerouting", "handle", str(handle))
    assert _drop_rule_handle(lab) is None
    repaired = wait_until(
        lambda: _drop_rule_handle(lab) is not None and nft_allows(lab, address),
        timeout=25,
        what="the drop rule back",
    )
    print(f"drop rule repaired after {repaired:.1f} s")
    arrived = arrived_sources(lab, 4, [UNUSED[4]])
    assert lab.vm_ip(ATTACKER[0]) in arrived and UNUSED[4] not in arrived
