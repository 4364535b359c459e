"""Long-lived TCP flows through the gateways: a line each way every 100 ms, gaps measured.

A server in an internet client's namespace and a client in a private VM's
namespace (``python3 -c``, no tool to install): the client opens ``count``
connections; on each, both ends write a line every ``interval`` seconds and
time the lines they receive. When the client's run ends it prints one line
per connection, ``flow I lines N gap G ok`` (or ``dead: WHY``: a reset,
nothing for ``DEAD_S``, or nothing in its last second), so a lost connection and the longest silence of a
surviving one are both seen. The server prints ``peer ADDR:PORT lines N gap
G`` per connection when it closes: the other direction's gap.

Used by the gateway-pair tests, ``bench gateway`` and the demo.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from dataclasses import dataclass

DEAD_S = 5.0  # a connection silent this long counts as lost

SERVER = """
import socket, sys, threading, time
interval = float(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(1024)
print("ready", flush=True)
out = threading.Lock()
def serve(conn, peer):
    conn.settimeout(@DEAD@)
    done = threading.Event()
    def tx():
        n = 0
        while not done.is_set():
            try:
                conn.sendall(b"s%d\\n" % n)
            except OSError:
                return
            n += 1
            time.sleep(interval)
    threading.Thread(target=tx, daemon=True).start()
    last, gap, lines, at = None, 0.0, 0, 0.0
    try:
        for line in conn.makefile("rb"):
            now = time.monotonic()
            if last and now - last > gap:
                gap, at = now - last, now
            last, lines = now, lines + 1
    except OSError:
        pass
    done.set()
    conn.close()
    with out:
        print(f"peer {peer[0]}:{peer[1]} lines {lines} gap {gap:.3f} at {at:.3f}", flush=True)
while True:
    c, p = s.accept()
    threading.Thread(target=serve, args=(c, p), daemon=True).start()
""".replace("@DEAD@", str(DEAD_S))

CLIENT = """
import socket, sys, threading, time
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
interval, duration = float(sys.argv[4]), float(sys.argv[5])
def tx(f):
    n = 0
    while time.monotonic() < f["end"] and not f["why"]:
        try:
            f["sock"].sendall(b"c%d\\n" % n)
        except OSError as e:
            f["why"] = f["why"] or f"send: {e}"
            return
        n += 1
        time.sleep(interval)
def rx(f):
    last = None
    try:
        for line in f["sock"].makefile("rb"):
            now = time.monotonic()
            if last and now - last > f["gap"]:
                f["gap"], f["at"] = now - last, now
            last, f["lines"], f["last"] = now, f["lines"] + 1, now
            if now >= f["end"]:
                return
        f["why"] = f["why"] or "closed by the server"
    except OSError as e:
        f["why"] = f["why"] or f"receive: {e}"
flows, threads = [], []
for i in range(count):
    f = {"lines": 0, "gap": 0.0, "at": 0.0, "why": "", "port": 0, "last": 0.0}
    f["end"] = time.monotonic() + duration
    flows.append(f)
    sock = socket.socket()
    sock.settimeout(@DEAD@)
    try:
        sock.connect((host, port))
    except OSError as e:
        # The source port of a connection that never opened: to find its packets.
        f["why"], f["sock"], f["port"] = f"connect: {e}", None, sock.getsockname()[1]
        sock.close()
        continue
    f["sock"] = sock
    f["port"] = sock.getsockname()[1]
    for target in (tx, rx):
        t = threading.Thread(target=target, args=(f,), daemon=True)
        t.start()
        threads.append(t)
print("connected", sum(1 for f in flows if f["sock"]), flush=True)
for t in threads:
    t.join(duration + @DEAD@ + 1)
for i, f in enumerate(flows):
    if f["sock"]:
        f["sock"].close()
    if not f["why"] and f["last"] < f["end"] - 1.0:
        f["why"] = "stalled: nothing in the last second"
    state = f"dead: {f['why']}" if f["why"] else "ok"
    gap = f"gap {f['gap']:.3f} at {f['at']:.3f}"
    print(f"flow {i} port {f['port']} lines {f['lines']} {gap} {state}", flush=True)
print("done", flush=True)
""".replace("@DEAD@", str(DEAD_S))

# New connections for ``duration`` seconds, one after another (each: connect,
# read the server's first line, close); prints "rate CONNECTIONS FAILED SECONDS".
RATE = """
import socket, sys, time
host, port, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
print("connected 0", flush=True)
done = failed = 0
start = time.monotonic()
while time.monotonic() - start < duration:
    try:
        c = socket.create_connection((host, port), timeout=2)
        c.settimeout(2)
        if not c.recv(16):
            raise OSError("closed")
        c.close()
        done += 1
    except OSError:
        failed += 1
print(f"rate {done} {failed} {time.monotonic() - start:.3f}", flush=True)
"""

_FLOW = re.compile(r"^flow (\d+) port (\d+) lines (\d+) gap ([\d.]+) at ([\d.]+) (.*)$")
_PEER = re.compile(r"^peer (\S+):(\d+) lines (\d+) gap ([\d.]+) at ([\d.]+)$")


@dataclass(frozen=True)
class Flow:
    """One connection as one end saw it."""

    port: int  # the client's source port (before NAT), or the peer's port at the server
    lines: int
    gap_s: float  # the longest time between two received lines
    gap_end: float = 0.0  # when it ended (time.monotonic(): the same clock in every process)
    ok: bool = True
    why: str = ""


def parse_client(output: str) -> list[Flow]:
    """The client's per-connection lines."""
    flows = []
    for line in output.splitlines():
        if m := _FLOW.match(line.strip()):
            state = m.group(6)
            flows.append(
                Flow(
                    int(m.group(2)),
                    int(m.group(3)),
                    float(m.group(4)),
                    float(m.group(5)),
                    state == "ok",
                    state.removeprefix("dead: ") if state != "ok" else "",
                )
            )
    return flows


def parse_server(output: str) -> list[Flow]:
    """The server's per-connection lines (the client-to-server direction)."""
    return [
        Flow(int(m.group(2)), int(m.group(3)), float(m.group(4)), float(m.group(5)))
        for line in output.splitlines()
        if (m := _PEER.match(line.strip()))
    ]


def server_argv(namespace: str, port: int, interval: float = 0.1) -> list[str]:
    return ["ip", "netns", "exec", namespace, "python3", "-c", SERVER, str(port), str(interval)]


def client_argv(
    namespace: str, server: str, port: int, count: int, duration: float, interval: float = 0.1
) -> list[str]:
    return [
        *("ip", "netns", "exec", namespace, "python3", "-c", CLIENT),
        *(server, str(port), str(count), str(interval), str(duration)),
    ]


def rate_argv(namespace: str, server: str, port: int, duration: float) -> list[str]:
    return [
        "ip",
        "netns",
        "exec",
        namespace,
        "python3",
        "-c",
        RATE,
        server,
        str(port),
        str(duration),
    ]


def parse_rate(output: str) -> tuple[int, int, float]:
    """(connections, failures, seconds) of a ``RATE`` run."""
    m = re.search(r"^rate (\d+) (\d+) ([\d.]+)$", output, re.MULTILINE)
    if m is None:
        raise ValueError(f"no rate line in {output!r}")
    return int(m.group(1)), int(m.group(2)), float(m.group(3))


def start(argv: list[str]) -> subprocess.Popen[bytes]:
    """Start a server or client; ``wait_line`` and ``finish`` / ``stop`` read its output."""
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


# Output read past the line ``wait_line`` waited for, per process: ``finish`` and ``stop`` add it.
_early: dict[int, str] = {}


def wait_line(proc: subprocess.Popen[bytes], word: str, timeout: float) -> str:
    """Read ``proc``'s output until a line starting with ``word``; RuntimeError otherwise."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    text = _early.pop(proc.pid, "")
    deadline = time.monotonic() + timeout
    while True:
        lines = text.split("\n")
        for n, line in enumerate(lines[:-1]):
            if line.startswith(word):
                _early[proc.pid] = "\n".join(lines[n + 1 :])
                return line
        left = deadline - time.monotonic()
        ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
        chunk = os.read(fd, 65536) if ready else b""
        if not chunk:
            _early[proc.pid] = text
            raise RuntimeError(f"no {word!r} line from {proc.args!r}; output: {text!r}")
        text += chunk.decode(errors="replace")


def finish(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The whole output of a client that ends by itself."""
    out, _ = proc.communicate(timeout=timeout)
    return _early.pop(proc.pid, "") + out.decode(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> str:
    """Terminate a server (or a client); its output so far."""
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=5)
    return _early.pop(proc.pid, "") + out.decode(errors="replace")
