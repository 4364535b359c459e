"""The addressing plan: names, addresses, AS numbers and sessions from a topology."""

from __future__ import annotations

import ipaddress

import pytest

from l3fabric.lab.plan import Plan, build_plan
from l3fabric.lab.topology import TopologyError, parse_topology

DC = """
name: dc
racks:
  - {name: r1, hosts: 2}
  - {name: r2, hosts: [r2-a, r2-b]}
internet: {clients: 2}
"""


def plan_of(text: str) -> Plan:
    return build_plan(parse_topology(text))


def test_wiring_with_tors() -> None:
    plan = plan_of(DC)
    pairs = {(link.kind, link.a, link.b) for link in plan.links}
    assert ("upstream", "internet", "gw1") in pairs
    assert ("fabric", "gw1", "r1-tor") in pairs and ("fabric", "gw1", "r2-tor") in pairs
    assert ("fabric", "r2-tor", "r2-b") in pairs
    assert ("client", "internet", "client2") in pairs
    # Hosts hang off their ToR only.
    assert not any(link.a == "gw1" and plan.nodes[link.b].role == "host" for link in plan.links)
    assert {n.namespace for n in plan.nodes.values()} >= {"l3f-dc-r1-h1", "l3f-dc-mgmt"}


def test_without_tors_each_host_links_to_each_gateway() -> None:
    plan = plan_of(
        "name: s\nracks: [{name: r1, hosts: 2, tor: false}]\ngateways: [{name: ga}, {name: gb}]"
    )
    host_links = {(link.a, link.b) for link in plan.links if link.kind == "fabric"}
    assert host_links == {(g, h) for g in ("ga", "gb") for h in ("r1-h1", "r1-h2")}


def test_link_addresses_are_distinct_point_to_point_pairs() -> None:
    plan = plan_of(DC)
    seen = set()
    for link in plan.links:
        if link.kind == "mgmt":
            continue
        for a, b in ((link.a4, link.b4), (link.a6, link.b6)):
            ia, ib = ipaddress.ip_interface(a), ipaddress.ip_interface(b)
            assert ia.network == ib.network and ia.ip != ib.ip
            assert ia.network.prefixlen in (31, 127)
            assert ia.network not in seen
            seen.add(ia.network)


def test_interface_names_fit_the_kernel_and_are_recognisable() -> None:
    plan = plan_of(DC)
    for link in plan.links:
        for name in (link.a_ifname, link.b_ifname):
            assert len(name) <= 15 and name.startswith("l3f-")


def test_asns_and_sessions() -> None:
    plan = plan_of(DC)
    assert plan.nodes["gw1"].asn == 65000
    assert plan.nodes["r2-tor"].asn == 65102
    assert plan.nodes["r2-b"].asn == 4200000004
    sessions = plan.sessions("r1-h2")
    assert {(s.peer, s.peer_asn) for s in sessions} == {("r1-tor", 65101)}
    assert len(sessions) == 2  # IPv4 and IPv6
    gw = {s.peer for s in plan.sessions("gw1")}
    assert gw == {"internet", "r1-tor", "r2-tor"}


def test_management_addresses_for_hosts_and_gateways_only() -> None:
    plan = plan_of(DC)
    managed = {n.name for n in plan.nodes.values() if n.mgmt_address}
    assert managed == {"gw1", "r1-h1", "r1-h2", "r2-a", "r2-b"}
    assert plan.controller_mgmt == "172.31.254.1"
    assert plan.agent_api_url() == "http://172.31.254.1:9696"


def test_clients_route_default_to_the_internet_router() -> None:
    plan = plan_of(DC)
    assert plan.routes["client1"][0] == "default via 198.51.100.0"


def test_range_too_small_names_the_field() -> None:
    with pytest.raises(TopologyError, match=r"addressing\.fabric: 172\.16\.0\.0/30 is too small"):
        plan_of("name: t\naddressing: {fabric: 172.16.0.0/30}\nracks: [{name: r1, hosts: 3}]")


def test_asn_clash_is_an_error() -> None:
    with pytest.raises(TopologyError, match=r"asn\.fabric: 65101"):
        plan_of("name: t\nasn: {fabric: 65101}\nracks: [{name: r1, hosts: 1}]")


def test_plan_round_trips_through_json() -> None:
    plan = plan_of(DC)
    assert Plan.model_validate_json(plan.model_dump_json()) == plan
