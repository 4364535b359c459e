"""``l3fabric bench store``: the store backends side by side, in one run on one machine.

SQLite (the baseline) against etcd with 1 and 3 members (started on
loopback by ``LocalEtcd``): single-key creates from 1 and 8 threads, Neutron
port creates through ``NeutronService`` (no HTTP), the latency from a write to
a blocked watch returning it, and a watch from just before the caller's own
write. Keys end in the backend's name (``_sqlite``, ``_etcd1``, ``_etcd3``).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from l3fabric.service import Context, NeutronService
from l3fabric.store import Store, open_store
from l3fabric.store.etcd_local import LocalEtcd

DEFAULTS = {"count": 400}  # creates per measurement (ports: a quarter)


def run(options: dict[str, str]) -> dict[str, Any]:
    count = int(options.pop("count", DEFAULTS["count"]))
    if options or count < 8:
        raise SystemExit(f"bench store: options are count=N (N >= 8), got {options or count}")
    result: dict[str, Any] = {}
    for name, opened in (("sqlite", _sqlite()), ("etcd1", _etcd(1)), ("etcd3", _etcd(3))):
        with opened as store:
            result.update({f"{k}_{name}": v for k, v in _measure(store, count).items()})
    result["port_creates_etcd3_over_sqlite"] = round(
        result["port_creates_per_s_etcd3"] / result["port_creates_per_s_sqlite"], 3
    )
    return result


@contextmanager
def _sqlite() -> Iterator[Store]:
    with tempfile.TemporaryDirectory(prefix="l3f-bench-store-") as tmp:
        store = open_store(f"sqlite:///{tmp}/bench.db")
        try:
            yield store
        finally:
            store.close()


@contextmanager
def _etcd(members: int) -> Iterator[Store]:
    with LocalEtcd(members, name="l3f-bench-etcd") as cluster:
        store = open_store(cluster.url)
        try:
            yield store
        finally:
            store.close()


def _measure(store: Store, count: int) -> dict[str, float]:
    return {
        "creates_per_s_1thread": round(_creates(store, count, 1), 1),
        "creates_per_s_8threads": round(_creates(store, count, 8), 1),
        "port_creates_per_s": round(_ports(store, count // 4), 1),
        "watch_latency_p50_s": round(_watch_latency(store, 30), 4),
        "own_write_watch_p50_s": round(_own_write(store, 30), 4),
    }


def _creates(store: Store, count: int, threads: int) -> float:
    def work(worker: int) -> None:
        for i in range(count // threads):
            store.create(f"/bench/{threads}/{worker}/{i}", {"i": i, "pad": "x" * 200})

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return (count // threads * threads) / (time.perf_counter() - started)


def _ports(store: Store, count: int) -> float:
    service, ctx = NeutronService(store), Context()
    net = service.networks.create({"name": "bench"}, ctx)
    service.subnets.create({"network_id": net["id"], "cidr": "10.64.0.0/16"}, ctx)
    started = time.perf_counter()
    for i in range(count):
        service.ports.create({"network_id": net["id"], "name": f"p{i}"}, ctx)
    return count / (time.perf_counter() - started)


def _watch_latency(store: Store, samples: int) -> float:
    """From a write's acknowledgement to a watch blocked before it returning it."""
    latencies = []
    for i in range(samples):
        since, done = store.revision(), {}

        def poll(since: int = since, done: dict = done) -> None:
            done["events"], _ = store.watch("/lat/", since, 5)
            done["at"] = time.perf_counter()

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.02)
        written = time.perf_counter()
        store.put(f"/lat/{i}", {})
        poller.join()
        latencies.append(done["at"] - written)
    return statistics.median(latencies)


def _own_write(store: Store, samples: int) -> float:
    """A watch from just before the caller's own write (the quota refresh does this)."""
    latencies = []
    for i in range(samples):
        since = store.revision()
        store.put(f"/own/{i}", {})
        started = time.perf_counter()
        store.watch("/own/", since, 0)
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies)
