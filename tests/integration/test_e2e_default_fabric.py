"""End to end with the API's default fabric config: iBGP in one AS, BFD on, peering gateway.

One lab for the module: rack r1 with hosts r1-h1 and r1-h2 directly under
gateway gw1 (no ToR: under ``host_asn: same`` a ToR in its own AS would pass
routes whose AS path holds the fabric's AS, see docs/lab.md), one internet
client. The hosts have no AS of their own; every session is iBGP, which BIRD
runs multihop, so each side names its local address and BFD runs multihop.
A public VM on each host. Real packets: VM to VM across the hosts (IPv4 and
IPv6) and the internet client to a public VM; every session established
with its BFD session up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from l3fabric.lab import routers
from l3fabric.routing.bird_control import BirdControl

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks: [{name: r1, hosts: 2, tor: false}]
internet: {clients: 1}
fabric: {host_asn: same}
"""
PUBLIC = ("203.0.113.0/25", "2001:db8:100::/64")
VMS = {"vm1": "r1-h1", "vm2": "r1-h2"}


def ctl(lab: Lab, node: str) -> Path:
    role = lab.plan.node(node).role
    return lab.state.agent_bird_ctl(node) if role == "host" else lab.state.bird_ctl(node)


def bgp_and_bfd(lab: Lab, node: str) -> tuple[dict[str, str], list[str]]:
    """(BGP protocol -> info, BFD session lines) of ``node``'s BIRD."""
    bird = BirdControl(str(ctl(lab, node)))
    sessions = {p.name: p.info for p in bird.protocols() if p.proto == "BGP"}
    bfd = [text for code, text in bird.request("show bfd sessions") if code in (1020, -1020)]
    return sessions, bfd


def all_up(lab: Lab, node: str) -> bool:
    sessions, bfd = bgp_and_bfd(lab, node)
    established = sessions and all(info.startswith("Established") for info in sessions.values())
    return bool(established) and sum(" Up " in line for line in bfd) == len(sessions)


def reaches(lab: Lab, node: str, address: str) -> bool:
    return lab.exec(node, "ping", "-c1", "-W1", address, check=False).returncode == 0


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Iterator[Lab]:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    with lab.client() as api:
        pub = api.create_network(name="pub", **{"router:external": True})
        for cidr in PUBLIC:
            api.create_subnet(network_id=pub["id"], cidr=cidr, ip_version=6 if ":" in cidr else 4)
    for vm, host in VMS.items():
        lab.boot(vm, ["pub"], host)
    yield lab


def test_the_lab_runs_the_documented_default_fabric_config(lab: Lab) -> None:
    with lab.client() as api:
        fabric = api.request("GET", "/v1/fabric")
        hosts = {h["name"]: h for h in api.list_hosts()}
    assert (fabric["peering"], fabric["host_asn"], fabric["bfd"]["enabled"]) == (
        "gateway",
        "same",
        True,
    )
    # No AS of their own: the fabric's, so every session is iBGP.
    assert {(h["asn"], h["effective_asn"]) for h in hosts.values()} == {(None, fabric["asn"])}


def test_every_session_is_established_with_bfd_up(lab: Lab) -> None:
    for node in ("r1-h1", "r1-h2", "gw1"):
        wait_until(lambda n=node: all_up(lab, n), 20, f"{node}: BGP established, BFD up")
    sessions, _ = bgp_and_bfd(lab, "r1-h1")
    assert len(sessions) == 2  # to gw1 over IPv4 and IPv6: none skipped
    _, bfd = bgp_and_bfd(lab, "gw1")
    up = [line for line in bfd if " Up " in line]
    assert len(up) == 6  # two hosts and the internet router, two families each
    # The hosts' sessions are iBGP, so multihop: BFD on no interface ("---").
    assert sum(" --- " in line for line in up) == 4


def test_heartbeats_report_each_session_by_birds_name_and_peer_address(lab: Lab) -> None:
    want = {routers.session_name(s): s.remote for s in lab.plan.sessions("r1-h1")}

    def reported() -> dict[str, str]:
        with lab.client() as api:
            bgp = api.request("GET", "/v1/hosts/r1-h1")["bgp"]
        return {b["name"]: b["peer"] for b in bgp if b["state"] == "up"}

    wait_until(lambda: reported() == want, 20, f"r1-h1 heartbeat lists {want}")


@pytest.mark.parametrize("version", [4, 6])
def test_vm_reaches_vm_on_the_other_host(lab: Lab, version: int) -> None:
    target = lab.vm_ip("vm2", version)
    wait_until(lambda: reaches(lab, "vm1", target), 20, f"vm1 -> vm2 over IPv{version}")


@pytest.mark.parametrize("version", [4, 6])
def test_internet_reaches_a_public_vm(lab: Lab, version: int) -> None:
    for vm in VMS:
        target = lab.vm_ip(vm, version)
        wait_until(lambda t=target: reaches(lab, "client1", t), 20, f"client1 -> {vm} IPv{version}")
