"""Measuring the lab with real packets: ping, TCP, route presence, drop counters.

Used by ``lab demo`` (and the tests): every probe runs real tools inside the
lab's namespaces, is bounded in count and time, and returns what it measured.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass

from l3fabric.lab.netns import exec_args

_RECEIVED = re.compile(r"(\d+) received")
_TTL = re.compile(r"ttl=(\d+)")


@dataclass(frozen=True)
class PingResult:
    sent: int
    received: int
    ttl: int | None  # of the first reply

    @property
    def ok(self) -> bool:
        return self.received == self.sent


def run_in(ns: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in namespace ``ns``; the result, whatever the exit code."""
    return subprocess.run(
        exec_args(ns, argv), capture_output=True, text=True, timeout=timeout, check=False
    )


def ping(ns: str, dst: str, count: int = 3, source: str | None = None) -> PingResult:
    """``count`` echo requests from namespace ``ns``, 0.2 s apart, each waiting up to 1 s."""
    argv = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", dst]
    if source:
        argv[1:1] = ["-I", source]
    out = run_in(ns, argv, timeout=count * 1.5 + 5).stdout
    received = _RECEIVED.search(out)
    ttl = _TTL.search(out)
    return PingResult(
        count, int(received.group(1)) if received else 0, int(ttl.group(1)) if ttl else None
    )


def wait_reachable(ns: str, dst: str, timeout: float = 10.0) -> float | None:
    """Seconds until ``dst`` first answers a ping from ``ns``; None if not within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        done = run_in(ns, ["ping", "-n", "-c", "1", "-W", "0.2", dst], timeout=5)
        if done.returncode == 0:
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def has_route(ns: str, prefix: str) -> bool:
    out = run_in(ns, ["ip", "route", "show", "exact", prefix], timeout=5).stdout
    return bool(out.strip())


def wait_withdrawn(namespaces: list[str], prefix: str, timeout: float = 10.0) -> float | None:
    """Seconds until no namespace in ``namespaces`` has a route for ``prefix``."""
    started = time.monotonic()
    pending = list(namespaces)
    while time.monotonic() - started < timeout:
        pending = [ns for ns in pending if has_route(ns, prefix)]
        if not pending:
            return time.monotonic() - started
        time.sleep(0.02)
    return None


# A one-connection TCP server: prints the address the client connected from.
_SERVER = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind((sys.argv[1],int(sys.argv[2])));s.listen(1);s.settimeout(float(sys.argv[3]))\n"
    "print('listening',flush=True)\n"
    "c,a=s.accept();c.sendall(b'hello');c.close();print(a[0],flush=True)\n"
)
_CLIENT = (
    "import socket,sys\n"
    "src=(sys.argv[3],0) if len(sys.argv)>3 else None\n"
    "c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5,source_address=src)\n"
    "print(c.recv(5).decode());c.close()\n"
)


def tcp_peer_address(
    server_ns: str,
    server_ip: str,
    client_ns: str,
    port: int = 8080,
    timeout: float = 8.0,
    source: str | None = None,
) -> str | None:
    """Connect over TCP from ``client_ns`` (from ``source``, if given) to ``server_ip``.

    Returns the source address the server saw, None if no connection was made.
    """
    server = subprocess.Popen(
        exec_args(server_ns, [sys.executable, "-c", _SERVER, server_ip, str(port), str(timeout)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "listening":
            return None
        argv = [sys.executable, "-c", _CLIENT, server_ip, str(port), *([source] if source else [])]
        client = run_in(client_ns, argv, timeout)
        if client.returncode != 0 or client.stdout.strip() != "hello":
            return None
        out, _ = server.communicate(timeout=timeout)
        return out.strip() or None
    except subprocess.TimeoutExpired:
        return None
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)


def antispoof_drops(host_ns: str) -> int:
    """Packets the host's anti-spoofing chain has dropped so far."""
    out = run_in(
        host_ns, ["nft", "-j", "list", "chain", "inet", "l3fabric", "prerouting"], timeout=5
    )
    if out.returncode != 0:
        return 0
    drops = 0
    for item in json.loads(out.stdout).get("nftables", []):
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                drops += int(expr["counter"]["packets"])
    return drops


def traceroute(ns: str, dst: str, max_hops: int = 12) -> list[str]:
    """The address that answered at each hop (ICMP probes, one per hop); "*" for none."""
    argv = ["traceroute", "-n", "-I", "-q", "1", "-w", "1", "-m", str(max_hops), dst]
    out = run_in(ns, argv, timeout=max_hops * 2 + 5).stdout
    hops = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[0].isdigit():
            hops.append(fields[1])
    return hops


def snat_flows(gateway_ns: str, source: str, destination: str) -> int:
    """Conntrack entries on the gateway from ``source`` to ``destination`` that are SNATed.

    An entry is translated when its reply goes to another address than the
    original source (conntrack's --src-nat filter also lists untranslated ones).
    """
    argv = ["conntrack", "-L", "-s", source, "-d", destination]
    out = run_in(gateway_ns, argv, timeout=5).stdout
    count = 0
    for line in out.splitlines():
        dsts = re.findall(r"\bdst=(\S+)", line)
        if len(dsts) >= 2 and dsts[1] != source:
            count += 1
    return count


def bgp_routes(ns: str) -> list[str]:
    """Prefixes BGP put in ``ns``'s kernel (IPv4 then IPv6), without the default route."""
    prefixes = []
    for family in ("-4", "-6"):
        out = run_in(ns, ["ip", family, "route", "show", "proto", "bird"], timeout=5).stdout
        for line in out.splitlines():
            words = line.split()
            if words and words[0] in ("unreachable", "blackhole", "prohibit"):
                words = words[1:]
            if words and words[0] != "default":
                prefixes.append(words[0])
    return prefixes
