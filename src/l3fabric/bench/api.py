"""``l3fabric bench api``: Neutron API throughput and list latency.

In one run, on a temporary SQLite file:

- port creates per second over HTTP, against a real server (uvicorn on
  loopback in a child process, so client and server do not share a GIL),
  from several client threads;
- port creates per second directly on the service layer (validation, IPAM,
  store transaction; no HTTP), the baseline the HTTP figure is compared to;
- the latency of ``GET /v2.0/ports`` returning 10,000 ports.

Options (``--set KEY=VALUE``): ``count`` port creates per method (1000),
``clients`` HTTP client threads (4), ``list`` ports in the listed collection
(10000), ``repeat`` list requests timed (5; the median is reported).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from l3fabric.child import terminate
from l3fabric.service import Context, NeutronService
from l3fabric.store.sqlite import SqliteStore

DEFAULTS = {"count": 1000, "clients": 4, "list": 10_000, "repeat": 5}
START_TIMEOUT = 20.0


def _options(options: dict[str, str]) -> dict[str, int]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise SystemExit(f"bench api: unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    parsed = dict(DEFAULTS)
    for key, value in options.items():
        if not value.isdigit() or int(value) < 1:
            raise SystemExit(f"bench api: {key} must be a positive integer, got {value!r}")
        parsed[key] = int(value)
    return parsed


def run(options: dict[str, str]) -> dict[str, Any]:
    opts = _options(options)
    # One INFO line per request would swamp the output and the timings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="l3f-bench-api-") as tmp:
        db = Path(tmp) / "bench.db"
        SqliteStore(db).close()
        server, url = _start_server(db)
        try:
            return _measure(url, db, opts)
        finally:
            terminate(server)


def _measure(url: str, db: Path, opts: dict[str, int]) -> dict[str, Any]:
    count, clients = opts["count"], opts["clients"]
    with httpx.Client(base_url=url, timeout=60) as client:
        net = _post(client, "networks", {"network": {"name": "bench"}})["network"]
        # More ports than Neutron's default quota (500), and no counting per create.
        client.put("/v2.0/quotas/default", json={"quota": {"port": -1}}).raise_for_status()
        # A /14 has room for every port the benchmark makes.
        _post(client, "subnets", {"subnet": {"network_id": net["id"], "cidr": "10.64.0.0/14"}})

        http_s = _http_creates(url, net["id"], count, clients)

        store = SqliteStore(db)
        service = NeutronService(store)
        ctx = Context()
        started = time.perf_counter()
        for i in range(count):
            service.ports.create({"network_id": net["id"], "name": f"store-{i}"}, ctx)
        store_s = time.perf_counter() - started

        existing = len(service.ports.list(ctx))
        for i in range(existing, opts["list"]):
            service.ports.create({"network_id": net["id"], "name": f"fill-{i}"}, ctx)
        store.close()

        # Timed until the whole body has arrived; parsing it is the client's
        # business, and is reported separately.
        timings, parse_timings = [], []
        for _ in range(opts["repeat"]):
            started = time.perf_counter()
            response = client.get("/v2.0/ports")
            received = time.perf_counter()
            response.raise_for_status()
            ports = response.json()["ports"]
            timings.append(received - started)
            parse_timings.append(time.perf_counter() - received)
        listed = len(ports)

    http_rate = count / http_s
    store_rate = count / store_s
    return {
        "http_port_creates_per_s": round(http_rate, 1),
        "store_port_creates_per_s": round(store_rate, 1),
        "http_over_store": round(http_rate / store_rate, 3),
        "list_10k_ports_s": round(statistics.median(timings), 4),
        "list_10k_ports_client_parse_s": round(statistics.median(parse_timings), 4),
        "list_ports_count": listed,
        "list_response_bytes": len(response.content),
        "count": count,
        "clients": clients,
        "cpus": os.cpu_count(),
    }


def _post(client: httpx.Client, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/v2.0/{collection}", json=body)
    if response.status_code != 201:
        raise RuntimeError(f"POST {collection}: {response.status_code} {response.text}")
    return response.json()


def _http_creates(url: str, network_id: str, count: int, clients: int) -> float:
    """Seconds for ``count`` port creates from ``clients`` threads, each on its
    own keep-alive connection."""
    shares = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def work(worker: int, n: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as own:
            own.get("/")  # open the connection before the clock starts
            barrier.wait(timeout=60)
            for i in range(n):
                body = {"port": {"network_id": network_id, "name": f"http-{worker}-{i}"}}
                response = own.post("/v2.0/ports", json=body)
                if response.status_code != 201:
                    errors.append(f"{response.status_code} {response.text}")
                    return

    threads = [threading.Thread(target=work, args=(w, n)) for w, n in enumerate(shares)]
    for t in threads:
        t.start()
    barrier.wait(timeout=60)
    started = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"HTTP port create failed: {errors[0]}")
    return elapsed


def _start_server(db: Path) -> tuple[subprocess.Popen[str], str]:
    """The API in a child process; it binds port 0 on loopback and tells us the port."""
    child = subprocess.Popen(
        [sys.executable, "-m", "l3fabric.bench.api", "--serve", str(db)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], START_TIMEOUT)
    line = child.stdout.readline().strip() if ready else ""
    if not line.isdigit():
        child.kill()
        child.wait(timeout=10)
        raise RuntimeError(f"the API server did not start (said {line!r})")
    url = f"http://127.0.0.1:{line}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return child, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or child.poll() is not None:
            child.kill()
            child.wait(timeout=10)
            raise RuntimeError("the API server did not answer")
        time.sleep(0.05)


def _serve(db: str) -> None:
    import uvicorn

    from l3fabric.api.app import create_app

    # proto must say TCP: asyncio sets TCP_NODELAY on accepted connections only
    # then, and without it every keep-alive response waits ~40 ms (Nagle
    # against the client's delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    app = create_app(SqliteStore(db))
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the benchmark's API server (internal)")
    parser.add_argument("--serve", metavar="DB", required=True)
    _serve(parser.parse_args().serve)
