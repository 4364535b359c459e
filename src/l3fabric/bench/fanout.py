"""``l3fabric bench fanout``: how the watch serves many hosts.

For each store (``--set stores=sqlite``) and each host count (``hosts=1,1000``),
on a fresh store: a real ``l3fabric server --store URL`` on loopback, the
hosts registered, simulated agents (``bench.fanout_agents``, real HTTP long
polls and heartbeats at the real interval, in ``procs`` processes), ``ports``
ports bound to each host, then:

- ``store_writes_per_s_idle``: store revisions per second while every host
  only heartbeats (after the ports' statuses have settled);
- ``creates`` port creates over HTTP spread over the hosts (``clients``
  threads); the latency from each create's 201 to its host's watch receiving
  the port (``event_p99_s_N``), and the server's CPU seconds per create and
  its resident memory (``server_cpu_s_per_event``, ``server_rss_mb``).

Keys end in the store's name (``_sqlite``, ``_etcd``: a one-member etcd
started on loopback for the run); ``fanout_p99_ratio`` is the p99
at the largest host count over the p99 at the smallest. Ports have no
security groups, so a create concerns its host only (a port in a group is
also a member record that every host needs: docs/controller.md).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from l3fabric import event_trace, keys
from l3fabric.bench import fanout_trace
from l3fabric.bench.parts import OptionReader, run_parts
from l3fabric.child import terminate
from l3fabric.loopback import free_port
from l3fabric.service import Context, NeutronService
from l3fabric.store import open_store

KNOWN = {"stores", "hosts", "creates", "ports", "procs", "clients", "interval", "idle", "timeout"}
STORES = ("sqlite", "etcd")
START_TIMEOUT = 30.0
HOST_PREFIX = "fh-"


def run(options: dict[str, str]) -> dict[str, Any]:
    reader = OptionReader("fanout", options, KNOWN)
    stores = options.get("stores", "sqlite").split(",")
    unknown = [s for s in stores if s not in STORES]
    if unknown:
        raise SystemExit(f"bench fanout: unknown store(s) {unknown}; known: {list(STORES)}")
    counts = [int(n) for n in options.get("hosts", "1,1000").split(",") if n.isdigit()]
    if not counts or min(counts) < 1 or max(counts) > 5000:
        raise SystemExit("bench fanout: hosts wants host counts 1..5000, e.g. hosts=1,1000")
    opts = {
        "creates": reader.integer("creates", 1000, 1, 100_000),
        "ports": reader.integer("ports", 10, 0, 100),
        "procs": reader.integer("procs", 4, 1, 64),
        "clients": reader.integer("clients", 4, 1, 64),
        "interval": float(options.get("interval", 2.0)),
        "idle": reader.integer("idle", 10, 1, 600),
        "timeout": reader.integer("timeout", 300, 5, 3600),
    }
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # run_parts turns SIGTERM into an exception, so the servers and agents are stopped.
    return run_parts("fanout", {}, {"all": lambda _: _measure(stores, counts, opts)}, None)


def _measure(stores: list[str], counts: list[int], opts: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"creates": opts["creates"], "cpus": os.cpu_count()}
    for store in stores:
        p99 = {}
        for n in counts:
            measured = _phase(store, n, opts)
            p99[n] = measured["event_p99_s"]
            result[f"event_p99_s_{n}_{store}"] = measured.pop("event_p99_s")
            result[f"event_p50_s_{n}_{store}"] = measured.pop("event_p50_s")
            result[f"server_cpu_s_per_event_net_{n}_{store}"] = measured[
                "server_cpu_s_per_event_net"
            ]
            # Per host count: where the events' time went, how late the agents were.
            for key in [k for k in measured if k.startswith(("trace_", "agent_loop_lag"))]:
                result[f"{key}_{n}_{store}"] = measured.pop(key)
            if n == max(counts):
                result.update({f"{key}_{store}": value for key, value in measured.items()})
        low, high = p99[min(counts)], p99[max(counts)]
        result[f"fanout_p99_ratio_{store}"] = round(high / low, 2) if low > 0 else None
    return result


def _store_url(store: str, tmp: Path, stack: ExitStack) -> str:
    """A fresh store: a SQLite file in ``tmp``, or a one-member etcd on loopback."""
    if store == "etcd":
        from l3fabric.store.etcd_local import LocalEtcd

        cluster = LocalEtcd(name="l3f-bench-fanout-etcd").start()
        stack.callback(cluster.close)
        return cluster.url
    return f"sqlite:///{tmp / 'fanout.db'}"


def _phase(store: str, hosts: int, opts: dict[str, Any]) -> dict[str, Any]:
    """One server, ``hosts`` agents, the idle and the create measurements."""
    names = [f"{HOST_PREFIX}{i:04d}" for i in range(hosts)]
    with tempfile.TemporaryDirectory(prefix="l3f-bench-fanout-") as tmp, ExitStack() as stack:
        url = _store_url(store, Path(tmp), stack)
        server, api = _start_server(url, Path(tmp))
        stack.callback(terminate, server)
        with httpx.Client(base_url=api, timeout=60) as client:
            network_id = _prepare(client, names)
            agents = Agents(api, names, opts)
            stack.callback(agents.kill)
            store_handle = open_store(url)
            stack.callback(store_handle.close)
            _fill(store_handle, network_id, names, opts["ports"])
            _settle(store_handle, opts)
            cpu_before = _cpu_s(server.pid)
            writes = _idle_writes(store_handle, opts["idle"])
            idle_cpu = (_cpu_s(server.pid) - cpu_before) / opts["idle"]
            cpu_before, started = _cpu_s(server.pid), time.monotonic()
            created, elapsed = _creates(api, network_id, names, opts)
            agents.wait_for(set(created), opts["timeout"])
            cpu = _cpu_s(server.pid) - cpu_before
            busy = time.monotonic() - started
            rss = _rss_mb(server.pid)
            errors, first_error = agents.stop()
            lags = agents.lags(started, started + busy)
            seen = agents.seen
    latencies = [max(0.0, seen[p] - t) for p, t in created.items() if p in seen]
    missing = len(created) - len(latencies)
    if not latencies:
        raise RuntimeError(f"bench fanout: no create reached its host ({first_error})")
    traced = fanout_trace.stages(event_trace.PREFIX, created) if event_trace.enabled else {}
    return {
        **traced,
        # How late the simulated agents' event loops were while the creates ran.
        "agent_loop_lag_p99_ms": round(1000 * _percentile(lags, 99), 2) if lags else None,
        "agent_loop_lag_max_ms": round(1000 * max(lags), 2) if lags else None,
        "event_p99_s": round(_percentile(latencies, 99), 4),
        "event_p50_s": round(statistics.median(latencies), 4),
        "events_missing": missing,
        "agent_errors": errors,
        "agent_first_error": first_error[:200],
        "server_cpu_s_per_event": round(cpu / len(created), 5),
        # The heartbeats' share taken out: what the creates and their events cost.
        "server_cpu_s_per_event_net": round(max(0.0, cpu - idle_cpu * busy) / len(created), 5),
        "server_cpu_s_per_s_idle": round(idle_cpu, 3),
        "server_rss_mb": round(rss, 1),
        "store_writes_per_s_idle": round(writes, 2),
        "creates_per_s": round(len(created) / elapsed, 1),
        "hosts": hosts,
    }


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def _start_server(url: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    log = (tmp / "server.log").open("wb")
    argv = [sys.executable, "-m", "l3fabric.cli", "server", "--store", url,
            "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    server = subprocess.Popen(argv, stdout=log, stderr=log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if httpx.get(f"{api}/v1/fabric", timeout=1).status_code == 200:
                return server, api
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            terminate(server)
            said = (tmp / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"bench fanout: the server did not start: {said}")
        time.sleep(0.1)


def _prepare(client: httpx.Client, names: list[str]) -> str:
    """Unlimited ports, one network without port security, and the hosts registered."""
    client.put("/v2.0/quotas/default", json={"quota": {"port": -1}}).raise_for_status()
    body = {"network": {"name": "fanout", "port_security_enabled": False}}
    network = _ok(client.post("/v2.0/networks", json=body))["network"]
    subnet = {"subnet": {"network_id": network["id"], "cidr": "10.64.0.0/12"}}
    _ok(client.post("/v2.0/subnets", json=subnet))
    for i, name in enumerate(names):
        host = {"router_id": f"10.255.{i // 250}.{i % 250 + 1}", "address": f"10.255.{i // 250}.{i % 250 + 1}"}  # fmt: skip
        _ok(client.put(f"/v1/hosts/{name}", json=host))
    return network["id"]


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code not in (200, 201):
        raise RuntimeError(
            f"bench fanout: {response.request.url}: {response.status_code} {response.text}"
        )
    return response.json()


class Agents:
    """The simulated agents' processes, and the ports they have received (read as they come)."""

    def __init__(self, api: str, names: list[str], opts: dict[str, Any]) -> None:
        self.seen: dict[str, float] = {}
        self.reports: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self.children: list[subprocess.Popen[str]] = []
        self._readers: list[threading.Thread] = []
        procs = min(opts["procs"], len(names))
        for i in range(procs):
            argv = [sys.executable, "-m", "l3fabric.bench.fanout_agents", api,
                    str(opts["interval"]), *names[i::procs]]  # fmt: skip
            child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.children.append(child)
        for child in self.children:
            assert child.stdout is not None
            line = child.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"bench fanout: simulated agents did not start ({line!r})")
            reader = threading.Thread(target=self._read, args=(child,), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            kind, _, rest = line.strip().partition(" ")
            with self._lock:
                if kind == "seen":
                    port_id, at = rest.split()
                    self.seen[port_id] = float(at)
                elif kind == "done":
                    self.reports.append(json.loads(rest))
                self._lock.notify_all()

    def wait_for(self, port_ids: set[str], timeout: float) -> None:
        """Until every port in ``port_ids`` has reached its host, or ``timeout``."""
        with self._lock:
            self._lock.wait_for(lambda: port_ids <= self.seen.keys(), timeout)

    def lags(self, start: float, end: float) -> list[float]:
        """The agents' event-loop lags (s) between ``start`` and ``end`` (after ``stop``)."""
        return [lag for r in self.reports for at, lag in r.get("lags", ()) if start <= at <= end]

    def stop(self) -> tuple[int, str]:
        """Stop the agents; their error count and first error."""
        for child in self.children:
            if child.poll() is None and child.stdin is not None:
                child.stdin.close()
        for reader in self._readers:
            reader.join(timeout=30)
        self.kill()
        errors = sum(r["errors"] for r in self.reports)
        return errors, next((r["first_error"] for r in self.reports if r["first_error"]), "")

    def kill(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait(timeout=10)


def _fill(store: Any, network_id: str, names: list[str], per_host: int) -> None:
    """``per_host`` ports bound to each host, through the service layer (faster than HTTP)."""
    service, ctx = NeutronService(store), Context()
    for i in range(per_host):
        for name in names:
            body = {"network_id": network_id, "name": f"fill-{i}", "binding:host_id": name}
            service.ports.create(body, ctx)


def _settle(store: Any, opts: dict[str, Any]) -> None:
    """Wait until the agents' status reports stop writing: every bound port
    ACTIVE (on a loaded machine, two intervals without a write came while
    thousands were still to be written), then two intervals without a write."""
    quiet = 2 * opts["interval"] + 1
    deadline = time.monotonic() + opts["timeout"]
    while time.monotonic() < deadline and any(
        kv.value.get("binding:host_id") and kv.value.get("status") != "ACTIVE"
        for kv in store.range(keys.neutron_prefix("ports"))[0]
    ):
        time.sleep(1)
    last, since = store.revision(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.5)
        now = store.revision()
        if now != last:
            last, since = now, time.monotonic()


def _idle_writes(store: Any, seconds: int) -> float:
    before = store.revision()
    time.sleep(seconds)
    return (store.revision() - before) / seconds


def _creates(
    api: str, network_id: str, names: list[str], opts: dict[str, Any]
) -> tuple[dict[str, float], float]:
    """Port id -> when its 201 arrived, for ``creates`` ports spread over the hosts."""
    count, clients = opts["creates"], opts["clients"]
    created: dict[str, float] = {}
    errors: list[str] = []

    def work(worker: int) -> None:
        with httpx.Client(base_url=api, timeout=opts["timeout"]) as client:
            for i in range(worker, count, clients):
                body = {"port": {"network_id": network_id, "name": f"bench-{i}",
                                 "binding:host_id": names[i % len(names)]}}  # fmt: skip
                try:
                    response = client.post("/v2.0/ports", json=body)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    return
                if response.status_code != 201:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    return
                port_id = response.json()["port"]["id"]
                created[port_id] = time.monotonic()
                event_trace.mark("created", port_id)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=opts["timeout"])
    if errors or not created:
        raise RuntimeError(f"bench fanout: port create failed: {errors[:1] or 'timed out'}")
    return created, time.monotonic() - started


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
