"""The topology's ``fabric:`` section: the lab can run the API's default fabric config."""

from __future__ import annotations

import pytest

from l3fabric.lab import routers
from l3fabric.lab.plan import build_plan
from l3fabric.lab.topology import TopologyError, parse_topology
from l3fabric.lab.up import _peers, fabric_config, gateway_registration
from l3fabric.model.fabric import FabricConfig

SAME = "name: t\nracks: [{name: r1, hosts: 2, tor: false}]\nfabric: {host_asn: same}"


def test_host_asn_same_puts_the_hosts_in_the_fabric_as() -> None:
    plan = build_plan(parse_topology(SAME))
    assert plan.host_asn == "same"
    assert {n.asn for n in plan.by_role("host")} == {plan.fabric_asn}
    assert fabric_config(plan.host_asn)["host_asn"] == "same"
    # Every session names its local address: the host's end of the link.
    for peer, session in zip(_peers(plan, "r1-h2"), plan.sessions("r1-h2"), strict=True):
        assert (peer["local"], peer["asn"]) == (session.local, plan.fabric_asn)
    gw = gateway_registration(plan, "gw1")
    assert {p["local"] for p in gw["fabric_peers"]} <= set(gw["fabric_addresses"])


def test_the_lab_keeps_per_host_ases_by_default() -> None:
    plan = build_plan(parse_topology("name: t\nracks: [{name: r1, hosts: 2}]"))
    assert plan.host_asn == "per-host"
    assert plan.fabric_asn not in {n.asn for n in plan.by_role("host")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: t\nracks: [{name: r1, hosts: 1}]\nfabric: {host_asn: same}",
            'fabric.host_asn "same" needs racks without a ToR (tor: false)',
        ),
        (
            "name: t\nracks: [{name: r1, hosts: 1}]\nfabric: {host_asn: ebgp}",
            "fabric.host_asn: Input should be 'same' or 'per-host'",
        ),
        ("name: t\nracks: [{name: r1, hosts: 1}]\nfabric: {bfd: off}", "fabric.bfd: Extra inputs"),
    ],
)
def test_a_bad_fabric_section_names_the_field(text: str, message: str) -> None:
    with pytest.raises(TopologyError) as err:
        parse_topology(text)
    assert message in str(err.value)


def test_the_labs_sessions_are_signed_and_limited_as_the_topology_says() -> None:
    default = build_plan(parse_topology("name: t\nracks: [{name: r1, hosts: 1}]"))
    assert fabric_config(default.host_asn)["bgp_password"] == "l3fabric-lab"
    assert 'password "l3fabric-lab";' in routers.render(default, "r1-tor", "/tmp/x.log")
    own = "name: t\nracks: [{name: r1, hosts: 1}]\nfabric: {bgp_password: s3cret, bgp_import_limit: 9}"
    plan = build_plan(parse_topology(own))
    body = fabric_config(plan.host_asn, plan.bgp_password, plan.bgp_import_limit)
    assert FabricConfig.model_validate(body).bgp_password == "s3cret"
    tor = routers.render(plan, "r1-tor", "/tmp/x.log")
    gateway = routers.render(plan, "gw1", "/tmp/x.log")
    assert 'password "s3cret";' in tor and 'password "s3cret";' in gateway
    assert "import limit 9 action restart;" in gateway
    internet = routers.render(plan, "internet", "/tmp/x.log")
    assert "password" not in internet  # the internet router's sessions are not the fabric's
    with pytest.raises(TopologyError, match="bgp_password"):
        parse_topology('name: t\nracks: [{name: r1, hosts: 1}]\nfabric: {bgp_password: "a\\"b"}')
