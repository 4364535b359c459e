"""Simulated host agents for ``l3fabric bench fanout``: one process, many hosts.

Each host does what a host agent does on the wire: a snapshot
(``GET /v1/watch?host=H``), then long polls from its revision (a new
snapshot on 410), and a heartbeat every ``interval`` seconds carrying every
port it holds as ACTIVE (the agents' worst case: they normally send only the
statuses that changed). It records when each port first reached it.

Each host has two keep-alive HTTP/1.1 connections of its own, one for its
watch and one for its heartbeats, as a real agent has (``Http``, a minimal
client: httpx's shared pool scanned all of a process's ~500 connections on
every request, so 250 simulated hosts took most of a core and their events
were read seconds late, which the benchmark then counted as fan-out latency).

Protocol with the benchmark, one line each on stdout: ``ready`` once every
host has its snapshot and is watching; ``seen PORT_ID TIME`` when a port
first reaches its host (``time.monotonic``, the system-wide CLOCK_MONOTONIC,
so the benchmark compares it with its own); when stdin closes it stops and
prints ``done {"errors": N, "first_error": TEXT, "lags": [[TIME, LAG], ...]}``
(``lags``: how late the process's event loop woke from each 10 ms sleep).

Run: ``python -m l3fabric.bench.fanout_agents URL INTERVAL HOST...`` (internal).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from l3fabric import event_trace
from l3fabric.gc_tuning import tune_for_server
from l3fabric.http_guard import raise_fd_limit

WATCH_TIMEOUT_S = 25
# Longer than a long poll: an answer later than this is an error.
REQUEST_TIMEOUT_S = WATCH_TIMEOUT_S + 30
# Snapshots in flight per process: agents start over minutes in a real
# fabric, not all in the same second.
SNAPSHOTS_AT_ONCE = 8
# The loop-lag probe's sleep.
LAG_TICK_S = 0.01


class HttpError(Exception):
    """A request that got no complete answer."""


@dataclass
class Http:
    """One keep-alive HTTP/1.1 connection to the controller (reopened when it closes)."""

    host: str
    port: int
    _reader: asyncio.StreamReader | None = None
    _writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """The status and the JSON body of the answer (HttpError when there is none)."""
        data = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        try:
            return await asyncio.wait_for(self._exchange(head + data), REQUEST_TIMEOUT_S)
        except (OSError, EOFError, TimeoutError, ValueError) as exc:
            self.close()
            raise HttpError(f"{method} {path.split('?')[0]}: {exc!r}") from None

    async def _exchange(self, request: bytes) -> tuple[int, Any]:
        reused = self._writer is not None
        try:
            return await self._once(request)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            # The server closed the kept-alive connection as we reused it (a
            # race every HTTP client retries once, on a new connection).
            self.close()
            return await self._once(request)

    async def _once(self, request: bytes) -> tuple[int, Any]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        )
        body = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, json.loads(body) if body else None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


@dataclass
class Agents:
    """What this process's hosts saw, and what went wrong."""

    url: str
    interval: float
    starting: asyncio.Semaphore
    errors: int = 0
    first_error: str = ""
    # (when, how late) the event loop woke from each of ``lag``'s sleeps (seconds).
    lags: list[tuple[float, float]] = field(default_factory=list)
    _address: tuple[str, int] = field(init=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)

    def connection(self) -> Http:
        return Http(*self._address)

    def failed(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what

    async def snapshot(self, http: Http, host: str, ports: set[str]) -> int:
        while True:
            async with self.starting:
                try:
                    status, body = await http.request("GET", f"/v1/watch?host={host}")
                except HttpError as exc:
                    status, body = 0, None
                    self.failed(f"snapshot {host}: {exc}")
            if status == 200:
                break
            if status:
                self.failed(f"snapshot {host}: {status} {str(body)[:200]}")
            await asyncio.sleep(1)
        ports.clear()
        ports.update(p["id"] for p in body["ports"])
        return int(body["revision"])

    async def watch(self, http: Http, host: str, ports: set[str], revision: int) -> None:
        while True:
            query = urlencode({"host": host, "timeout": WATCH_TIMEOUT_S, "since": revision})
            try:
                status, body = await http.request("GET", f"/v1/watch?{query}")
            except HttpError as exc:
                self.failed(f"watch {host}: {exc}")
                await asyncio.sleep(1)
                continue
            now = time.monotonic()
            if status == 410:
                revision = await self.snapshot(http, host, ports)
                continue
            if status != 200:
                self.failed(f"watch {host}: {status} {str(body)[:200]}")
                await asyncio.sleep(1)
                continue
            for event in body["events"]:
                if event["kind"] != "port":
                    continue
                if event["type"] == "put":
                    if event["id"] not in ports:
                        print("seen", event["id"], now, flush=True)
                        event_trace.mark("seen", event["id"])
                    ports.add(event["id"])
                else:
                    ports.discard(event["id"])
            revision = body["revision"]

    async def lag(self) -> None:
        """Sleep ``LAG_TICK_S`` again and again and keep how late each wake-up was:
        an event that arrives while the loop is busy waits that long to be read,
        and the benchmark would count it as the server's fan-out latency."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_TICK_S)
            now = time.monotonic()
            self.lags.append((round(now, 4), round(now - started - LAG_TICK_S, 5)))

    async def heartbeat(self, host: str, ports: set[str]) -> None:
        http = self.connection()
        # Spread over the interval, as agents started at different times are.
        await asyncio.sleep(random.uniform(0, self.interval))
        while True:
            started = time.monotonic()
            body = {"ports": dict.fromkeys(ports, "ACTIVE"), "agent": {"bench": True}}
            try:
                status, answer = await http.request("POST", f"/v1/hosts/{host}/heartbeat", body)
                if status != 200:
                    self.failed(f"heartbeat {host}: {status} {str(answer)[:200]}")
            except HttpError as exc:
                self.failed(f"heartbeat {host}: {exc}")
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))


async def _main(url: str, interval: float, hosts: list[str]) -> dict[str, Any]:
    agents = Agents(url, interval, asyncio.Semaphore(SNAPSHOTS_AT_ONCE))
    ports: dict[str, set[str]] = {h: set() for h in hosts}
    watches = {h: agents.connection() for h in hosts}
    revisions = await asyncio.gather(*(agents.snapshot(watches[h], h, ports[h]) for h in hosts))
    tasks = [
        asyncio.create_task(agents.watch(watches[h], h, ports[h], r))
        for h, r in zip(hosts, revisions, strict=True)
    ]
    tasks += [asyncio.create_task(agents.heartbeat(h, ports[h])) for h in hosts]
    print("ready", flush=True)
    # Only the lag from now on: the snapshots' start is not what is measured.
    tasks.append(asyncio.create_task(agents.lag()))
    # Runs until the benchmark closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"errors": agents.errors, "first_error": agents.first_error, "lags": agents.lags}


if __name__ == "__main__":
    raise_fd_limit()
    # A process of hundreds of hosts' connections has the server's garbage
    # collection pauses (0.05-0.2 s measured), which one real agent does not:
    # they would delay reading events and count as fan-out latency.
    tune_for_server()
    result = asyncio.run(_main(sys.argv[1], float(sys.argv[2]), sys.argv[3:]))
    print("done", json.dumps(result), flush=True)
