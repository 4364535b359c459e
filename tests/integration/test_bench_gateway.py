"""``l3fabric bench gateway`` at smoke size: its JSON keys, the pair's result, nothing left behind."""

from __future__ import annotations

import subprocess

from l3fabric.bench import gateway

from .lab_fixtures import needs_root


def namespaces() -> set[str]:
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30)
    return {line.split()[0] for line in done.stdout.splitlines() if line.strip()}


@needs_root
def test_bench_gateway_reports_survival_rates_and_speeds_and_cleans_up() -> None:
    before = {n for n in namespaces() if n.startswith("l3f-bg")}
    result = gateway.run({"flows": "20", "hold_s": "2", "rate_s": "1", "stream_s": "1"})
    assert result["flows"] == 20 and result["failed_gateway"] in ("gw1", "gw2")
    assert result["flows_survived_pct"] == 100.0
    # A gap, not the 1 s target: timing targets are measured (docs/benchmarks.md),
    # and test_gateway_pair holds the gap under 1 s on its own lab. A CI run at
    # load 13 measured 1.78 s here (the failed gateway's return).
    assert 0.0 < result["max_gap_s"] < 5.0
    assert result["new_conn_per_s_two"] > 0 and result["new_conn_per_s_one"] > 0
    # No new connection through the pair waited for a retransmission (its replies
    # went to the gateway that holds its state: no race with the sync).
    assert result["new_conn_retrans_two"] == 0
    assert result["nat_gbit_s_synced"] > 0 and result["nat_gbit_s_unsynced"] > 0
    assert result["nat_synced_over_unsynced"] is not None
    assert {n for n in namespaces() if n.startswith("l3f-bg")} == before
