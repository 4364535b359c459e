"""Simulated host agents for ``l3fabric bench fanout``: one process, many hosts.

Each host does what a host agent does on the wire: a snapshot
(``GET /v1/watch?host=H``), then long polls from its revision (a new
snapshot on 410), and a heartbeat every ``interval`` seconds carrying every
port it holds as ACTIVE (the agents' worst case: they normally send only the
statuses that changed). It records when each port first reached it.

Protocol with the benchmark, one line each on stdout: ``ready`` once every
host has its snapshot and is watching; ``seen PORT_ID TIME`` when a port
first reaches its host (``time.monotonic``, the system-wide CLOCK_MONOTONIC,
so the benchmark compares it with its own); when stdin closes it stops and
prints ``done {"errors": N, "first_error": TEXT}``.

Run: ``python -m l3fabric.bench.fanout_agents URL INTERVAL HOST...`` (internal).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from l3fabric.http_guard import raise_fd_limit

WATCH_TIMEOUT_S = 25
# Snapshots in flight per process: agents start over minutes in a real
# fabric, not all in the same second.
SNAPSHOTS_AT_ONCE = 8


@dataclass
class Agents:
    """What this process's hosts saw, and what went wrong."""

    client: httpx.AsyncClient
    interval: float
    starting: asyncio.Semaphore
    errors: int = 0
    first_error: str = ""

    def failed(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what

    async def snapshot(self, host: str, ports: set[str]) -> int:
        while True:
            async with self.starting:
                try:
                    answer = await self.client.get("/v1/watch", params={"host": host})
                except httpx.HTTPError as exc:
                    answer = None
                    self.failed(f"snapshot {host}: {exc!r}")
            if answer is not None and answer.status_code == 200:
                break
            if answer is not None:
                self.failed(f"snapshot {host}: {answer.status_code} {answer.text[:200]}")
            await asyncio.sleep(1)
        body = answer.json()
        ports.clear()
        ports.update(p["id"] for p in body["ports"])
        return int(body["revision"])

    async def watch(self, host: str, ports: set[str], revision: int) -> None:
        params: dict[str, Any] = {"host": host, "timeout": WATCH_TIMEOUT_S}
        while True:
            try:
                answer = await self.client.get("/v1/watch", params={**params, "since": revision})
            except httpx.HTTPError as exc:
                self.failed(f"watch {host}: {exc!r}")
                await asyncio.sleep(1)
                continue
            now = time.monotonic()
            if answer.status_code == 410:
                revision = await self.snapshot(host, ports)
                continue
            if answer.status_code != 200:
                self.failed(f"watch {host}: {answer.status_code} {answer.text[:200]}")
                await asyncio.sleep(1)
                continue
            body = answer.json()
            for event in body["events"]:
                if event["kind"] != "port":
                    continue
                if event["type"] == "put":
                    if event["id"] not in ports:
                        print("seen", event["id"], now, flush=True)
                    ports.add(event["id"])
                else:
                    ports.discard(event["id"])
            revision = body["revision"]

    async def heartbeat(self, host: str, ports: set[str]) -> None:
        # Spread over the interval, as agents started at different times are.
        await asyncio.sleep(random.uniform(0, self.interval))
        while True:
            started = time.monotonic()
            body = {"ports": dict.fromkeys(ports, "ACTIVE"), "agent": {"bench": True}}
            try:
                answer = await self.client.post(f"/v1/hosts/{host}/heartbeat", json=body)
                if answer.status_code != 200:
                    self.failed(f"heartbeat {host}: {answer.status_code} {answer.text[:200]}")
            except httpx.HTTPError as exc:
                self.failed(f"heartbeat {host}: {exc!r}")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))


async def _main(url: str, interval: float, hosts: list[str]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=2 * len(hosts) + 8, max_keepalive_connections=None)
    timeout = httpx.Timeout(WATCH_TIMEOUT_S + 30, connect=30)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        agents = Agents(client, interval, asyncio.Semaphore(SNAPSHOTS_AT_ONCE))
        ports: dict[str, set[str]] = {h: set() for h in hosts}
        revisions = await asyncio.gather(*(agents.snapshot(h, ports[h]) for h in hosts))
        tasks = [
            asyncio.create_task(agents.watch(h, ports[h], r))
            for h, r in zip(hosts, revisions, strict=True)
        ]
        tasks += [asyncio.create_task(agents.heartbeat(h, ports[h])) for h in hosts]
        print("ready", flush=True)
        # Runs until the benchmark closes our stdin.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return {"errors": agents.errors, "first_error": agents.first_error}


if __name__ == "__main__":
    raise_fd_limit()
    result = asyncio.run(_main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
    print("done", json.dumps(result), flush=True)
