"""``l3fabric bench anycast``: its JSON keys, the result's meaning, and nothing left behind."""

from __future__ import annotations

import subprocess

from l3fabric.bench import anycast, anycast_failover


def namespaces() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


def test_bench_anycast_reports_moved_flows_and_cleans_up() -> None:
    before = {n for n in namespaces() if n.startswith("l3f-ba")}
    result = anycast.run({"connections": "120", "parts": "rehash"})
    assert result["connections"] == 120 and result["members"] == 4
    assert result["moved_pct_resilient"] == 0.0
    assert result["moved_pct_multipath"] > 0.0
    assert result["surviving_flows_resilient"] > 0
    assert {n for n in namespaces() if n.startswith("l3f-ba")} == before


def test_bench_anycast_failover_reports_member_and_host_times_and_cleans_up() -> None:
    before = {n for n in namespaces() if n.startswith("l3f-bf")}
    result = anycast.run({"parts": "failover", "tries": "2"})
    for kind in ("member", "host", "host_silent"):
        median, worst = result[f"{kind}_failover_s_median"], result[f"{kind}_failover_s_max"]
        assert 0.0 <= median <= worst < anycast_failover.GIVE_UP_S
    assert result["check_interval_s"] == 0.5 and result["check_fall"] == 2
    assert {n for n in namespaces() if n.startswith("l3f-bf")} == before
