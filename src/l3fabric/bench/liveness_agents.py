"""Simulated agents' heartbeats for ``l3fabric bench liveness``: one process, many hosts.

Each host heartbeats every ``interval`` seconds (from a random phase), as a
host agent does, and nothing else. Protocol: ``ready`` on stdout once every
host is beating; when stdin closes it stops and prints one JSON line
``{"beats": [[SENT, SECONDS], ...], "errors": N}`` (``time.monotonic``).

Each host beats on a keep-alive connection of its own
(``fanout_agents.Http``: httpx's shared pool scans every connection of the
process on each request, which delayed hundreds of simulated hosts' beats).

Run: ``python -m l3fabric.bench.liveness_agents URL INTERVAL HOST...`` (internal).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from urllib.parse import urlsplit

from l3fabric.bench.fanout_agents import Http, HttpError
from l3fabric.http_guard import raise_fd_limit

BODY = {"ports": {}, "bgp": [], "agent": {"bench": "liveness"}}


async def _main(url: str, interval: float, hosts: list[str]) -> None:
    beats: list[tuple[float, float]] = []
    errors = 0
    stop = asyncio.Event()

    async def beat(host: str) -> None:
        nonlocal errors
        http = Http(where.hostname or "127.0.0.1", where.port or 80)
        await asyncio.sleep(random.random() * interval)
        try:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status, _ = await http.request("POST", f"/v1/hosts/{host}/heartbeat", BODY)
                    errors += status != 200
                except HttpError:
                    errors += 1
                beats.append((sent, time.monotonic() - sent))
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent)))
        finally:
            http.close()

    where = urlsplit(url)
    tasks = [asyncio.create_task(beat(h)) for h in hosts]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"beats": beats, "errors": errors}), flush=True)


if __name__ == "__main__":
    raise_fd_limit()  # a connection per host
    asyncio.run(_main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
