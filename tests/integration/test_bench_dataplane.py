"""A small run of ``l3fabric bench dataplane``: real lab, real iperf3, ping, nftables DNAT.

Three VMs and one-second iperf runs keep it under a minute. The benchmark
builds and removes its own lab; the fixture removes it again by name in case
the run was interrupted half-way (``bench_lab``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from l3fabric.bench import dataplane
from l3fabric.dataplane import netns as netns_mod
from l3fabric.lab import netns

from .lab_fixtures import bench_lab, needs_tools

pytestmark = needs_tools("bird", "iperf3", "socat", "nft", "ping")


@pytest.fixture
def lab_name() -> Iterator[str]:
    with bench_lab("bdp") as name:
        yield name


@pytest.mark.timeout(180)
def test_small_run_measures_both_paths_and_boot_to_reachable(lab_name: str) -> None:
    result = dataplane.run(
        {"lab": lab_name, "vms": "3", "duration": "1", "pings": "10", "rounds": "1"}
    )

    assert result["lab"] == lab_name
    assert netns.lab_namespaces(lab_name) == []  # torn down, network node included
    for key in ("l3_gbit_s", "dnat_gbit_s", "l3_rtt_ms", "dnat_rtt_ms"):
        assert result[key] > 0, key
    # Both paths really differ by the network node: one more routed hop on the
    # DNAT path (the reply's TTL is one lower), and the ratios are consistent.
    assert result["l3_reply_ttl"] == result["dnat_reply_ttl"] + 1
    assert result["l3_over_dnat_gbit"] == pytest.approx(
        result["l3_gbit_s"] / result["dnat_gbit_s"], rel=0.02
    )
    assert result["vms"] == 3
    assert result["unreachable"] == 0
    p50, p99 = result["boot_to_reachable_p50_s"], result["boot_to_reachable_p99_s"]
    assert 0 < p50 <= p99 <= result["boot_to_reachable_max_s"] < 10
    # The same boots with --dhcp: each VM got its lease and answered.
    assert result["dhcp_unreachable"] == 0
    p50, p99 = result["dhcp_boot_to_reachable_p50_s"], result["dhcp_boot_to_reachable_p99_s"]
    assert 0 < p50 <= p99 <= result["dhcp_boot_to_reachable_max_s"] < 10


def test_bad_option_is_refused_by_name() -> None:
    with pytest.raises(SystemExit, match="vms must be an integer"):
        dataplane.parse_options({"vms": "zero"})
    with pytest.raises(SystemExit, match="unknown option"):
        dataplane.parse_options({"count": "3"})


def test_an_existing_lab_is_refused_and_left_alone(lab_name: str) -> None:
    # Anything named after the lab marks it as someone's: the benchmark's
    # teardown would remove it, so the benchmark must not start.
    squatter = f"l3f-{lab_name}-other"
    netns_mod.create(squatter)
    try:
        with pytest.raises(SystemExit, match="exists already"):
            dataplane.run({"lab": lab_name, "vms": "1"})
        assert netns.lab_namespaces(lab_name) == [squatter]
    finally:
        netns_mod.delete(squatter)
