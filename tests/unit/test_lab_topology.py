"""Topology files: defaults, the examples, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from l3fabric.lab.plan import build_plan
from l3fabric.lab.topology import TopologyError, load_topology, parse_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_minimal_file_gets_defaults() -> None:
    topo = parse_topology("name: t1\nracks: [{name: r1, hosts: 2}]")
    assert topo.node_names() == ["r1-tor", "r1-h1", "r1-h2", "gw1", "client1"]
    assert topo.asn.fabric == 65000 and topo.asn.internet == 64496
    assert topo.addressing.management == "172.31.254.0/24"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_load(example: str) -> None:
    assert load_topology(EXAMPLES / example).racks


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: t\nracks: [{name: r1, hosts: 2}, {name: r2, hosts: 0}]",
            "racks[1].hosts: must be a positive integer",
        ),
        ("name: t\nracks: [{name: r1, hosts: many}]", "racks[0].hosts: must be a positive integer"),
        (
            "name: t\nracks: [{name: r1, hosts: [ok, Bad]}]",
            "racks[0].hosts[1]: must start with a letter",
        ),
        ("name: Big-Lab\nracks: [{name: r1, hosts: 1}]", "name: must be 1-10 characters"),
        (
            "name: t\nracks: [{name: r1, hosts: 1, tors: true}]",
            "racks[0].tors: Extra inputs are not permitted",
        ),
        (
            "name: t\nracks: [{name: r1, hosts: 1}]\naddressing: {fabric: 8.8.8.0/24}",
            "addressing.fabric: 8.8.8.0/24 is outside",
        ),
        (
            "name: t\nracks: [{name: r1, hosts: 1}]\naddressing: {fabric6: 172.16.0.0/16}",
            "addressing.fabric6: must be an IPv6 network",
        ),
        (
            "name: t\nracks: [{name: r1, hosts: 1}]\naddressing: {clients: 10.0.0.1/24}",
            "addressing.clients: ",
        ),
        (
            "name: t\nracks: [{name: r1, hosts: [a]}]\ninternet: {clients: [a]}",
            "node name 'a' is used twice",
        ),
        ("name: t\nracks: [{name: r1, hosts: [mgmt]}]", "racks[0].hosts[0]: 'mgmt' is reserved"),
        ("name: t\nracks: []", "racks: List should have at least 1 item"),
        ("name: t\nracks: [{name: r1, hosts: 1}]\nasn: {fabric: 0}", "asn.fabric: "),
        ("name: t\nracks: [{name: r1, hosts: 1}]\napi: {port: 70000}", "api.port: "),
        (
            "name: t\nracks: [{name: r1, hosts: 1}]\netcd_members: 3",
            "etcd_members: 3 needs store: etcd (the store is sqlite)",
        ),
        (
            "name: t\nracks: [{name: r1, hosts: 1}]\nstore: etcd\netcd_members: 2",
            "etcd_members: 2: an etcd cluster here has 1, 3 or 5 members",
        ),
        ("name: t", "racks: Field required"),
        ("- just a list", "must be a YAML mapping"),
        ("name: [unclosed", "not valid YAML"),
    ],
)
def test_bad_file_names_the_field(text: str, message: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "lab.yaml")
    assert str(info.value).startswith("lab.yaml: ")
    assert message in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read topology"):
        load_topology(tmp_path / "nope.yaml")


def test_an_etcd_store_of_three_members_reaches_the_plan() -> None:
    topo = parse_topology("name: t\nracks: [{name: r1, hosts: 1}]\nstore: etcd\netcd_members: 3")
    assert build_plan(topo).etcd_members == 3
    assert build_plan(parse_topology("name: t\nracks: [{name: r1, hosts: 1}]")).etcd_members == 1
