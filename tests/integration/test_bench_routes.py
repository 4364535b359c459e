"""``l3fabric bench routes`` end to end at a small count: every key, sane values, nothing left.

The real controller, agent and two BIRDs run, so this also checks that 300
ports created through the API become 300 routes on the host and then on its
BGP peer, and that one more port (at 300 and at 100, five times each) is one
incremental pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

COUNT = 300


def _bench_namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {
        line.split()[0] for line in listing.stdout.splitlines() if line.startswith("l3f-bench-")
    }


def _bench_processes() -> set[int]:
    """Processes whose command line names a benchmark temp dir or namespace."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"l3f-bench-" in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
            except OSError:
                pass
    return found


def test_bench_routes_reports_every_part_and_cleans_up() -> None:
    namespaces, processes = _bench_namespaces(), _bench_processes()
    argv = [sys.executable, "-m", "l3fabric.cli", "bench", "routes", "--json",
            "--set", f"count={COUNT}", "--set", "rounds=1", "--set", "timeout=60"]  # fmt: skip
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            # SIGTERM, not SIGKILL: the benchmark then removes what it made.
            bench.terminate()
            bench.communicate(timeout=60)
            raise
    assert bench.returncode == 0, stderr
    result = json.loads(stdout)

    assert result["count"] == COUNT
    for key in ("program_s", "ip_batch_s", "converge_s", "agent_start_to_peer_s"):
        assert 0 < result[key] < 60, (key, result)
    ratio = result["program_s"] / result["ip_batch_s"]  # from the rounded times
    assert abs(result["program_over_ip_batch"] - ratio) <= 0.02 * ratio + 0.01
    assert 0 <= result["bgp_propagation_s"] < 60
    # The peer can only hold the routes after the host does.
    assert result["agent_start_to_peer_s"] >= result["converge_s"]
    gap = result["agent_start_to_peer_s"] - result["converge_s"] - result["bgp_propagation_s"]
    assert abs(gap) < 0.002  # rounding only
    # The pass also starts BIRD after the routes, so it may end after converge_s.
    assert 0 < result["converge_first_pass_s"] < 60
    # One more port, at COUNT and on a host with 100: an incremental pass each.
    assert 0 < result["add_one_s"] < 60 and 0 < result["add_one_small_s"] < 60
    ratio = result["add_one_s"] / result["add_one_small_s"]
    assert abs(result["add_one_over_small"] - ratio) <= 0.02 * ratio + 0.01
    assert result["add_one_pass_incremental"] == 1 and result["add_one_small_pass_incremental"] == 1
    # Medians of several one-port adds, each timed from its plug to the peer's route.
    for size in ("add_one", "add_one_small"):
        assert result[f"{size}_samples"] == 5
        assert result[f"{size}_min_s"] <= result[f"{size}_s"] <= result[f"{size}_max_s"]
        assert 0 < result[f"{size}_pass_cpu_s"] < 60 and result[f"{size}_routes_s"] > 0
    # Step times come from the agent's pass metrics (passes.json), not its log.
    assert result["pass_routes_s"] > 0 and result["pass_observe_s"] > 0
    # The gateway's computation for one more port, at COUNT and at 100 bound ports.
    assert result["gateway_pass_small_s"] > 0 and result["gateway_pass_s"] > 0
    assert result["gateway_pass_s"] <= result["gateway_pass_max_s"] < 60
    assert 0 < result["gateway_pass_first_s"] < 60
    ratio = result["gateway_pass_s"] / result["gateway_pass_small_s"]
    assert abs(result["gateway_pass_over_small"] - ratio) <= 0.02 * ratio + 0.01

    assert _bench_namespaces() <= namespaces
    assert _bench_processes() <= processes
