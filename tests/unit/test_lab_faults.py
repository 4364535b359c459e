"""Which links ``host_cut_off`` takes down: a host's fabric links, never its management link."""

from __future__ import annotations

import pytest

from l3fabric.lab.errors import LabError
from l3fabric.lab.faults import uplinks
from l3fabric.lab.plan import build_plan
from l3fabric.lab.topology import parse_topology

NO_TOR = """
name: f
racks: [{name: r1, hosts: 2, tor: false}]
gateways: [{name: gw1}, {name: gw2}]
"""


def test_a_host_without_tor_has_one_uplink_per_gateway() -> None:
    plan = build_plan(parse_topology(NO_TOR))
    links = uplinks(plan, "r1-h1")
    assert len(links) == 2
    ours = {(k.b_ifname, k.a) for k in plan.links if k.b == "r1-h1" and k.kind == "fabric"}
    assert ours == {(links[0], "gw1"), (links[1], "gw2")}
    assert not set(links) & set(uplinks(plan, "r1-h2"))


def test_a_host_behind_a_tor_has_one_uplink_and_only_hosts_have_them() -> None:
    plan = build_plan(parse_topology("name: f\nracks: [{name: r1, hosts: 1}]"))
    assert len(uplinks(plan, "r1-h1")) == 1
    with pytest.raises(LabError, match="not a compute host"):
        uplinks(plan, "gw1")
