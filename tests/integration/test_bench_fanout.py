"""``l3fabric bench fanout`` at a small size: every key, sane values, nothing left running.

On SQLite and on a one-member etcd: a real server process and real simulated agents (HTTP long polls and
heartbeats): every port created reaches the watch of the host it is bound
to, no agent request fails, idle hosts write nothing to the store, and the
server and agent processes are gone afterwards.
"""

from __future__ import annotations

import os
from pathlib import Path

from l3fabric.bench import fanout

HOSTS = 12


def _children() -> set[int]:
    """This process's children (the benchmark runs in it: its server and agents would be)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def test_bench_fanout_reports_every_key_and_cleans_up() -> None:
    before = _children()
    options = {"stores": "sqlite,etcd", "hosts": f"1,{HOSTS}", "creates": "24", "ports": "2",
               "idle": "2", "timeout": "60"}  # fmt: skip
    result = fanout.run(options)

    assert result["creates"] == 24
    for store in ("sqlite", "etcd"):
        for hosts in (1, HOSTS):
            assert 0 < result[f"event_p99_s_{hosts}_{store}"] < 30, result
        assert result[f"events_missing_{store}"] == 0 and result[f"agent_errors_{store}"] == 0
        assert result[f"fanout_p99_ratio_{store}"] > 0
        # The simulated agents' own event-loop lag while the creates ran.
        assert 0 <= result[f"agent_loop_lag_p99_ms_{HOSTS}_{store}"] < 30_000
        assert 0 < result[f"server_cpu_s_per_event_{store}"] < 5
        assert 20 < result[f"server_rss_mb_{store}"] < 2000
        # Heartbeats of idle hosts keep their liveness in memory: no store writes.
        assert result[f"store_writes_per_s_idle_{store}"] < 1
    assert _children() <= before
