"""``l3fabric bench liveness``: what heartbeats cost the controller and etcd.

For each store (``--set stores=sqlite,etcd``): a real ``l3fabric server
--store URL`` on loopback, ``hosts`` hosts registered, and simulated agents
(``bench.liveness_agents``, in ``procs`` processes) heartbeating every
``interval`` s. Once the first heartbeats' writes are done (no store write
for two intervals), for ``window`` s: heartbeats per second and their
latency, the server's CPU per heartbeat, store writes per second and, on
etcd (a one-member cluster started for the run), etcd's CPU and the lease
keepalives it received (its own /metrics). Keys end in the store's name;
``hosts_up_*`` is how many hosts ``GET /v1/hosts`` shows up at the end.
``lease_cpu_ratio``: the server's CPU per heartbeat on etcd (liveness in
leases) over SQLite (liveness in memory), the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from l3fabric.bench.fanout import STORES, _cpu_s, _ok, _settle, _start_server
from l3fabric.bench.parts import OptionReader, run_parts
from l3fabric.child import terminate
from l3fabric.store import open_store
from l3fabric.store.etcd_local import LocalEtcd

KNOWN = {"stores", "hosts", "procs", "interval", "window", "timeout"}


def run(options: dict[str, str]) -> dict[str, Any]:
    reader = OptionReader("liveness", options, KNOWN)
    stores = reader.names("stores", "sqlite,etcd", STORES)
    opts = {
        "hosts": reader.integer("hosts", 1000, 1, 5000),
        "procs": reader.integer("procs", 3, 1, 64),
        "interval": float(options.get("interval", 2.0)),
        "window": reader.integer("window", 20, 1, 600),
        "timeout": reader.integer("timeout", 180, 5, 3600),
    }
    return run_parts("liveness", {}, {"all": lambda _: _measure(stores, opts)}, None)


def _measure(stores: list[str], opts: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"hosts": opts["hosts"], "interval_s": opts["interval"]}
    for store in stores:
        result.update({f"{k}_{store}": v for k, v in _phase(store, opts).items()})
    memory, lease = (result.get(f"server_cpu_ms_per_heartbeat_{s}") for s in STORES)
    if memory and lease:
        result["lease_cpu_ratio"] = round(lease / memory, 2)
    return result


def _phase(store: str, opts: dict[str, Any]) -> dict[str, Any]:
    names = [f"lv-{i:04d}" for i in range(opts["hosts"])]
    with tempfile.TemporaryDirectory(prefix="l3f-bench-liveness-") as tmp, ExitStack() as stack:
        url, etcd = _open(store, Path(tmp), stack)
        server, api = _start_server(url, Path(tmp))
        stack.callback(terminate, server)
        with httpx.Client(base_url=api, timeout=60) as client:
            for i, name in enumerate(names):
                address = f"10.255.{i // 250}.{i % 250 + 1}"
                _ok(
                    client.put(f"/v1/hosts/{name}", json={"router_id": address, "address": address})
                )
        procs = [_agents(api, names[i :: opts["procs"]], opts) for i in range(opts["procs"])]
        for proc in procs:
            stack.callback(proc.kill)
        handle = open_store(url)
        stack.callback(handle.close)
        _settle(handle, opts)  # the first heartbeats' writes (leases, BGP state)
        before = handle.revision(), _cpu_s(server.pid), _etcd_sample(etcd)
        started = time.monotonic()
        time.sleep(opts["window"])
        after = handle.revision(), _cpu_s(server.pid), _etcd_sample(etcd)
        elapsed = time.monotonic() - started
        with httpx.Client(base_url=api, timeout=60) as client:
            shown = _ok(client.get("/v1/hosts"))["hosts"]
        beats, errors = _collect(procs, started, started + elapsed)
    cpu = after[1] - before[1]
    measured: dict[str, Any] = {
        "heartbeats_per_s": round(len(beats) / elapsed, 1),
        "heartbeat_p50_ms": round(1000 * _pct(beats, 50), 1),
        "heartbeat_p99_ms": round(1000 * _pct(beats, 99), 1),
        "heartbeat_errors": errors,
        "server_cpu_ms_per_heartbeat": round(1000 * cpu / max(1, len(beats)), 3),
        "server_cpu_s_per_s": round(cpu / elapsed, 3),
        "store_writes_per_s_idle": round((after[0] - before[0]) / elapsed, 2),
        "hosts_up": sum(h["status"] == "up" for h in shown),
    }
    if etcd is not None:
        keepalives = after[2][1] - before[2][1]
        measured["etcd_cpu_s_per_s"] = round((after[2][0] - before[2][0]) / elapsed, 3)
        measured["etcd_keepalives_per_s"] = round(keepalives / elapsed, 1)
        measured["etcd_cpu_ms_per_keepalive"] = round(
            1000 * (after[2][0] - before[2][0]) / max(1, keepalives), 3
        )
    return measured


def _agents(api: str, names: list[str], opts: dict[str, Any]) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "l3fabric.bench.liveness_agents", api, str(opts["interval"])]
    proc = subprocess.Popen(
        [*argv, *names], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("bench liveness: simulated agents did not start")
    return proc


def _collect(
    procs: list[subprocess.Popen[str]], start: float, end: float
) -> tuple[list[float], int]:
    """Latencies of the heartbeats sent within [start, end]; every error of the run."""
    beats: list[float] = []
    errors = 0
    for proc in procs:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        report = json.loads(proc.stdout.read().strip().splitlines()[-1])
        errors += report["errors"]
        beats += [seconds for sent, seconds in report["beats"] if start <= sent <= end]
        proc.wait(30)
    return sorted(beats), errors


def _pct(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else 0.0


def _open(store: str, tmp: Path, stack: ExitStack) -> tuple[str, tuple[str, int] | None]:
    """A fresh store's URL and, on etcd (one member on loopback), its client URL and pid."""
    if store != "etcd":
        return f"sqlite:///{tmp / 'liveness.db'}", None
    cluster = LocalEtcd(name="l3f-bench-liveness-etcd").start()
    stack.callback(cluster.close)
    member = cluster.members[0]
    assert member.proc is not None
    return cluster.url, (member.client_url, member.proc.pid)


def _etcd_sample(member: tuple[str, int] | None) -> tuple[float, float]:
    """etcd's CPU seconds and the lease keepalives it has received (0, 0 without etcd)."""
    if member is None:
        return 0.0, 0.0
    url, pid = member
    keepalives = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith("grpc_server_msg_received_total") and "LeaseKeepAlive" in line:
            keepalives += float(line.rsplit(" ", 1)[1])
    return _cpu_s(pid), keepalives
