"""Traffic for anycast: member services, and clients that measure spread and failover.

One module for the e2e tests, ``lab demo`` and ``bench anycast``.

Member side (``MemberServers``): a TCP "who are you" service. On every new
connection it sends the member's name and a newline; it keeps the connection
open and answers every line it receives with the name again, so a
long-lived connection can later ask which member holds it. A second port
serves HTTP: ``GET /health`` answers 200 (anything else 404), so health
checks of type ``tcp`` (either port) and ``http`` both work. One thread
serves any number of members (listeners may sit in different namespaces:
each socket is created inside its namespace). ``MemberProcess`` runs one
member as its own process inside a VM namespace (``python -m
l3fabric.lab.anycast_traffic serve``), so a test can kill it for real.

Client side, all sockets created inside the client's namespace:
``spread`` opens N short connections (distinct source ports, bounded
concurrency and timeouts) and counts the members that answered;
``Sampler`` opens a new connection every ~20 ms in the background and
records (start time, member or None), from which ``settle_time`` tells how
long a change took; ``open_flows``/``ask`` hold long-lived connections and
ask each which member holds it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from l3fabric.dataplane import netns as netns_mod

SERVICE_PORT = 7070
HEALTH_PORT = 8080
HEALTH_PATH = "/health"
QUESTION = b"?\n"
CONNECT_TIMEOUT_S = 2.0
ANSWER_TIMEOUT_S = 2.0
READY = "ready"
_MAX_REQUEST = 4096  # bytes of an HTTP request head we read before giving up on it


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _socket(ns: str | None, address: str) -> socket.socket:
    """A TCP socket that belongs to namespace ``ns`` (the current one for None)."""
    with netns_mod.entered(ns):
        return socket.socket(_family(address), socket.SOCK_STREAM)


@dataclass(frozen=True)
class Listen:
    """One listener of a member: ``kind`` is "service" (who are you) or "health" (HTTP)."""

    member: str
    ns: str | None
    address: str
    port: int
    kind: str = "service"


@dataclass
class _Conn:
    member: str
    kind: str
    buffer: bytes = b""


class MemberServers:
    """Serve the listeners' members from one thread until ``close``; ``stop(member)`` kills one.

    ``stop`` closes the member's listeners and every connection it holds
    (the peers see a FIN, as when a service process dies) and takes effect
    before it returns.
    """

    def __init__(self, listens: Iterable[Listen]) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._owned: dict[socket.socket, _Conn | Listen] = {}
        try:
            for spec in listens:
                sock = _socket(spec.ns, spec.address)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((spec.address, spec.port))
                sock.listen(1024)
                sock.setblocking(False)
                self._add(sock, spec)
        except BaseException:
            self._close_all()
            raise
        self._thread = threading.Thread(target=self._serve, name="anycast-members", daemon=True)
        self._thread.start()

    def _add(self, sock: socket.socket, data: _Conn | Listen) -> None:
        self._owned[sock] = data
        self._selector.register(sock, selectors.EVENT_READ, data)

    def _drop(self, sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self._owned.pop(sock, None)
        sock.close()

    def _serve(self) -> None:
        while not self._closed.is_set():
            events = self._selector.select(timeout=0.5)
            with self._lock:
                for key, _ in events:
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                    elif sock not in self._owned:
                        continue  # closed by stop() after select returned
                    elif isinstance(key.data, Listen):
                        self._accept(sock, key.data)
                    else:
                        self._read(sock, key.data)

    def _accept(self, listener: socket.socket, spec: Listen) -> None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(False)
        self._add(conn, _Conn(spec.member, spec.kind))
        if spec.kind == "service":
            self._send(conn, f"{spec.member}\n".encode())

    def _send(self, conn: socket.socket, data: bytes) -> None:
        # Answers are a few bytes: they fit the socket buffer or the peer is gone.
        try:
            conn.sendall(data)
        except OSError:
            self._drop(conn)

    def _read(self, conn: socket.socket, state: _Conn) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        if state.kind == "service":
            self._send(conn, f"{state.member}\n".encode() * data.count(b"\n"))
            return
        state.buffer += data
        if b"\r\n\r\n" not in state.buffer and len(state.buffer) < _MAX_REQUEST:
            return
        self._send(conn, http_answer(state.buffer, state.member))
        self._drop(conn)

    def stop(self, member: str) -> int:
        """Close ``member``'s listeners and connections; how many sockets were closed."""
        with self._lock:
            doomed = [s for s, d in self._owned.items() if d.member == member]
            for sock in doomed:
                self._drop(sock)
        return len(doomed)

    def _close_all(self) -> None:
        for sock in list(self._owned):
            self._drop(sock)
        self._wake_r.close()
        self._wake_w.close()
        self._selector.close()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(timeout=5)
        with self._lock:
            self._close_all()

    def __enter__(self) -> MemberServers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_answer(request: bytes, member: str) -> bytes:
    """The HTTP/1.0 answer to a request head: 200 with the name for GET /health, else 404."""
    words = request.split(b"\r\n", 1)[0].split()
    ok = len(words) >= 2 and words[0] == b"GET" and words[1].decode(errors="replace") == HEALTH_PATH
    body = f"{member}\n".encode() if ok else b"not found\n"
    status = "200 OK" if ok else "404 Not Found"
    head = f"HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"Connection: close\r\n\r\n" + body


def serve_forever(member: str, port: int, health_port: int, address: str = "0.0.0.0") -> None:
    """Serve one member in this namespace until SIGTERM/SIGINT; prints ``ready`` once listening."""
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    specs = [
        Listen(member, None, address, port),
        Listen(member, None, address, health_port, "health"),
    ]
    with MemberServers(specs):
        print(READY, flush=True)
        done.wait()


class MemberProcess:
    """One member service as a process in namespace ``ns`` (a VM's); ``kill`` is SIGKILL."""

    def __init__(
        self,
        ns: str,
        member: str,
        port: int = SERVICE_PORT,
        health_port: int = HEALTH_PORT,
        timeout: float = 10.0,
    ) -> None:
        argv = [sys.executable, "-m", "l3fabric.lab.anycast_traffic", "serve", member]
        argv += ["--port", str(port), "--health-port", str(health_port)]
        self.member = member
        self.proc = subprocess.Popen(
            netns_mod.command(ns, argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=os.environ.copy(),
        )
        assert self.proc.stdout is not None
        # select() on the pipe bounds the wait for the first line.
        ready = selectors.DefaultSelector()
        ready.register(self.proc.stdout, selectors.EVENT_READ)
        line = self.proc.stdout.readline() if ready.select(timeout) else ""
        ready.close()
        if line.strip() != READY:
            self.kill()
            rest = self.proc.stdout.read() if self.proc.stdout else ""
            raise RuntimeError(f"member {member} in {ns} did not start: {line}{rest}".strip())

    def kill(self) -> None:
        """SIGKILL, as a crash: the kernel closes its sockets (peers see FIN or RST)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def who(ns: str | None, address: str, port: int = SERVICE_PORT, timeout: float = 1.0) -> str | None:
    """One new connection: the member that greeted it; None on refusal, reset or timeout."""
    try:
        sock = _socket(ns, address)
    except OSError:
        return None
    with sock:
        try:
            sock.settimeout(timeout)
            sock.connect((address, port))
            return _read_line(sock)
        except OSError:
            return None


def _read_line(sock: socket.socket) -> str | None:
    reply = b""
    while not reply.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            return None
        reply += chunk
    return reply.decode().strip()


@dataclass
class Spread:
    """How ``connections`` new connections were answered: per member, and failures."""

    counts: Counter[str]
    failed: int

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + self.failed

    def share(self, member: str) -> float:
        """The member's share of all connections, in percent."""
        return 100.0 * self.counts[member] / max(self.total, 1)


def spread(
    ns: str | None,
    address: str,
    port: int = SERVICE_PORT,
    connections: int = 600,
    concurrency: int = 32,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Spread:
    """Open ``connections`` connections from ``ns`` (each its own source port); who answered."""
    if connections < 1 or concurrency < 1:
        raise ValueError("connections and concurrency must be positive")
    with ThreadPoolExecutor(max_workers=min(concurrency, connections)) as pool:
        answers = list(pool.map(lambda _: who(ns, address, port, timeout), range(connections)))
    counts = Counter(a for a in answers if a is not None)
    return Spread(counts, answers.count(None))


@dataclass(frozen=True)
class Sample:
    t: float  # time.monotonic() when the connection was started
    member: str | None  # who greeted it; None: refused, reset or timed out


@dataclass
class Sampler:
    """A new connection from ``ns`` every ``period`` s in the background, recorded as Samples.

    Use as a context manager; ``samples`` holds them in start order once it
    is left. Each try waits at most ``timeout`` (a SYN into a dead host),
    and tries overlap so one slow try does not delay the next. It stops by
    itself after ``limit`` s.
    """

    ns: str | None
    address: str
    port: int = SERVICE_PORT
    period: float = 0.02
    timeout: float = 0.5
    limit: float = 30.0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="anycast-sampler", daemon=True)

    def _one(self) -> None:
        started = time.monotonic()
        member = who(self.ns, self.address, self.port, self.timeout)
        with self._lock:
            self.samples.append(Sample(started, member))

    def _run(self) -> None:
        in_flight = max(2, int(self.timeout / self.period) + 2)
        deadline = time.monotonic() + self.limit
        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            next_at = time.monotonic()
            while not self._stop.is_set() and time.monotonic() < deadline:
                pool.submit(self._one)
                next_at += self.period
                self._stop.wait(max(next_at - time.monotonic(), 0.0))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)
        self.samples.sort(key=lambda s: s.t)

    def since(self, t: float) -> list[Sample]:
        with self._lock:
            return sorted((s for s in self.samples if s.t >= t), key=lambda s: s.t)

    def wait_for(
        self, good: Callable[[str | None], bool], after: float, steady: float, timeout: float
    ) -> float | None:
        """Wait until the samples of the last ``steady`` s are all good; ``settle_time`` then.

        Only finished samples count (started at least ``self.timeout`` ago).
        None if that does not happen within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done_before = time.monotonic() - self.timeout
            window = [s for s in self.since(after) if s.t <= done_before]
            recent = [s for s in window if s.t >= done_before - steady]
            if window and window[-1].t - after >= steady and all(good(s.member) for s in recent):
                return settle_time(window, after, good)
            time.sleep(0.05)
        return None


@dataclass
class Change:
    """What ``measure_change`` saw: samples before and after the event, and the settle time."""

    before: list[Sample]
    after: list[Sample]
    settled: float | None  # seconds from the event; None: not within the timeout

    def wrong(self, good: Callable[[str | None], bool]) -> int:
        """Samples after the event that went to the old place or failed."""
        return sum(1 for s in self.after if not good(s.member))


def measure_change(
    ns: str,
    address: str,
    change: Callable[[], object],
    good: Callable[[str | None], bool],
    timeout: float,
    steady: float = 1.0,
    port: int = SERVICE_PORT,
) -> Change:
    """Sample ``address`` from ``ns`` while ``change()`` happens; when only ``good`` answered.

    Samples for 0.3 s first (the state before), then calls ``change`` and
    waits until every new connection of ``steady`` s was good (at most
    ``timeout`` s). ``settled`` counts from just before ``change`` was called.
    """
    with Sampler(ns, address, port, limit=timeout + steady + 10) as sampler:
        time.sleep(0.3)
        event = time.monotonic()
        before = [s for s in sampler.since(0.0) if s.t < event]
        change()
        settled = sampler.wait_for(good, after=event, steady=steady, timeout=timeout + steady + 1)
    return Change(before, sampler.since(event), settled)


def settle_time(
    samples: list[Sample], event: float, good: Callable[[str | None], bool]
) -> float | None:
    """Seconds from ``event`` until the first good sample after the last bad one.

    Only samples started at or after ``event`` count. 0.0 if none was bad;
    None if the last sample was bad (it had not settled when sampling ended).
    """
    after = sorted((s for s in samples if s.t >= event), key=lambda s: s.t)
    last_bad = max((i for i, s in enumerate(after) if not good(s.member)), default=None)
    if last_bad is None:
        return 0.0
    if last_bad + 1 >= len(after):
        return None
    return after[last_bad + 1].t - event


@dataclass
class Flow:
    """A long-lived connection and the member that greeted it."""

    sock: socket.socket
    member: str


def open_flows(ns: str | None, address: str, count: int, port: int = SERVICE_PORT) -> list[Flow]:
    """``count`` long-lived connections from ``ns`` to ``address`` (distinct source ports)."""
    flows: list[Flow] = []
    try:
        for _ in range(count):
            sock = _socket(ns, address)
            try:
                sock.settimeout(CONNECT_TIMEOUT_S)
                sock.connect((address, port))
                sock.settimeout(ANSWER_TIMEOUT_S)
                member = _read_line(sock)
            except OSError:
                sock.close()
                raise
            if member is None:
                sock.close()
                raise ConnectionError(f"connection to {address}:{port} closed before a greeting")
            flows.append(Flow(sock, member))
    except BaseException:
        close_flows(flows)
        raise
    return flows


def close_flows(flows: Iterable[Flow]) -> None:
    for flow in flows:
        flow.sock.close()


def ask(flow: Flow) -> str | None:
    """The member answering on this connection now; None if it was reset or did not answer."""
    try:
        flow.sock.sendall(QUESTION)
        return _read_line(flow.sock)
    except OSError:  # reset by a member that does not know the flow, or timeout
        return None


def broken(flows: list[Flow], answers: list[str | None], gone: str) -> list[Flow]:
    """Flows held by a member other than ``gone`` that no longer answer from that member."""
    return [f for f, a in zip(flows, answers, strict=True) if f.member != gone and a != f.member]


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m l3fabric.lab.anycast_traffic",
        description="anycast member service: greets each connection with NAME, HTTP GET "
        f"{HEALTH_PATH} -> 200 on the health port (run it in a VM: l3fabric lab exec VM -- ...)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    serve = verbs.add_parser("serve", help="run one member service until SIGTERM")
    serve.add_argument("name", help="the member's name: its answer")
    serve.add_argument("--port", type=int, default=SERVICE_PORT)
    serve.add_argument("--health-port", type=int, default=HEALTH_PORT)
    serve.add_argument("--address", default="0.0.0.0", help="listen address (:: for IPv6)")
    args = parser.parse_args(argv)
    if args.port == args.health_port:
        parser.error("--port and --health-port must differ")
    serve_forever(args.name, args.port, args.health_port, args.address)


if __name__ == "__main__":
    _main()
