"""``l3fabric bench liveness`` at a small size: every key, sane values, nothing left running.

On SQLite and on a one-member etcd: a real server process and real simulated
agents' heartbeats: every host is up, no heartbeat fails, an idle fabric
writes nothing to the store, and on etcd the controller's one lease (its
hosts' keys attached) is kept alive every TTL/3 (no more: keepalives follow
neither the heartbeats nor the hosts; no fewer: the lease keeps 2 TTL/3 of
life for a failover), whatever the heartbeat interval.
"""

from __future__ import annotations

from l3fabric.bench import liveness
from l3fabric.model.fabric import FabricConfig
from l3fabric.service.fabric import grace_s
from l3fabric.service.liveness import lease_ttl

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
    # The fabric's default heartbeat interval (the bench's agents beat faster).
    ttl = lease_ttl(grace_s(FabricConfig().model_dump()))
    # 2-4 keepalives in the 4 s window (a lease per host would be 12 times that).
    keepalives = result["etcd_keepalives_per_s_etcd"] / (3 / ttl)
    assert 0.5 <= keepalives <= 1.5, result
    assert result["lease_cpu_ratio"] > 0
    assert _children() <= before
