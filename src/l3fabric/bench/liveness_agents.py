"""Simulated agents' heartbeats for ``l3fabric bench liveness``: one process, many hosts.

Each host heartbeats every ``interval`` seconds (from a random phase), as a
host agent does, and nothing else. Protocol: ``ready`` on stdout once every
host is beating; when stdin closes it stops and prints one JSON line
``{"beats": [[SENT, SECONDS], ...], "errors": N}`` (``time.monotonic``).

Run: ``python -m l3fabric.bench.liveness_agents URL INTERVAL HOST...`` (internal).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import httpx

BODY = {"ports": {}, "bgp": [], "agent": {"bench": "liveness"}}


async def _main(url: str, interval: float, hosts: list[str]) -> None:
    beats: list[tuple[float, float]] = []
    errors = 0
    stop = asyncio.Event()

    async def beat(client: httpx.AsyncClient, host: str) -> None:
        nonlocal errors
        await asyncio.sleep(random.random() * interval)
        while not stop.is_set():
            sent = time.monotonic()
            try:
                answer = await client.post(f"/v1/hosts/{host}/heartbeat", json=BODY)
                errors += answer.status_code != 200
            except httpx.HTTPError:
                errors += 1
            beats.append((sent, time.monotonic() - sent))
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent)))

    limits = httpx.Limits(max_connections=len(hosts), max_keepalive_connections=len(hosts))
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        tasks = [asyncio.create_task(beat(client, h)) for h in hosts]
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"beats": beats, "errors": errors}), flush=True)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
