"""A small run of ``l3fabric bench sg``: real lab, real iperf3, real groups and rules.

Ten ports, ten members, two tries and one round keep it short. The benchmark
builds and removes its own lab.
"""

from __future__ import annotations

import pytest

from l3fabric.bench import sg
from l3fabric.lab import netns

from .lab_fixtures import bench_lab, needs_tools

pytestmark = needs_tools("bird", "iperf3", "nft", "conntrack")


@pytest.mark.timeout(180)
def test_small_run_compares_groups_with_port_security_off_and_times_enforcement() -> None:
    options = {"ports": "10", "members": "10", "duration": "1", "tries": "2", "rounds": "1"}
    with bench_lab("bsg") as name:
        result = sg.run({"lab": name, **options})
        assert netns.lab_namespaces(name) == []  # torn down
    for key in ("sg_gbit_s", "open_gbit_s", "sg_conn_per_s", "open_conn_per_s"):
        assert result[key] > 0, key
    assert result["sg_over_open_gbit"] == pytest.approx(
        result["sg_gbit_s"] / result["open_gbit_s"], rel=0.02
    )
    # Ten ports and the three VMs share the chain pairs of their sets of groups:
    # the base chains, two per group, and far fewer than a pair per port.
    assert 2 + 2 * 2 <= result["chains_on_host"] < 2 * (10 + 3)
    assert 0 < result["rule_add_enforced_p99_s"] < 5
    assert 0 < result["member_add_enforced_p99_s"] < 5
    # A one-rule change rewrites one group chain: a handful of statements.
    assert 0 < result["one_rule_statements"] < 20
