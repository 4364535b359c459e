"""The topology's ``fabric:`` section: the lab can run the API's default fabric config."""

from __future__ import annotations

import pytest

from l3fabric.lab.plan import build_plan
from l3fabric.lab.topology import TopologyError, parse_topology
from l3fabric.lab.up import _peers, fabric_config, gateway_registration

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
