"""``l3fabric bench liveness`` at a small size: every key, sane values, nothing left running.

On SQLite and on a one-member etcd: a real server process and real simulated
agents' heartbeats: every host is up, no heartbeat fails, an idle fabric
writes nothing to the store, and on etcd each heartbeat is one lease
keepalive (no more: they are not repeated; no fewer: each extends the lease).
"""

from __future__ import annotations

from l3fabric.bench import liveness

from .test_bench_fanout import _children

HOSTS = 12


def test_bench_liveness_reports_every_key_and_cleans_up() -> None:
    before = _children()
    options = {"stores": "sqlite,etcd", "hosts": str(HOSTS), "interval": "0.5", "window": "4"}
    result = liveness.run(options)

    for store in ("sqlite", "etcd"):
        assert result[f"hosts_up_{store}"] == HOSTS, result
        assert result[f"heartbeat_errors_{store}"] == 0
        assert result[f"store_writes_per_s_idle_{store}"] == 0
        assert 0.7 * HOSTS / 0.5 < result[f"heartbeats_per_s_{store}"] <= 1.1 * HOSTS / 0.5
        assert 0 < result[f"server_cpu_ms_per_heartbeat_{store}"] < 100
    keepalives = result["etcd_keepalives_per_s_etcd"] / result["heartbeats_per_s_etcd"]
    assert 0.8 < keepalives < 1.2, result
    assert result["lease_cpu_ratio"] > 0
    assert _children() <= before
