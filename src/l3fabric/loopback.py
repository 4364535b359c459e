"""A free TCP port on 127.0.0.1, for controllers the demo, benchmarks and tests start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Ports are picked below the kernel's ephemeral range: a port from bind(0) is
# an ephemeral one, which any outgoing connection may take as its local port
# before our server binds it (CI saw etcd fail with "address already in use").
LOWEST = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
TRIES = 50


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(count: int = 1) -> int:
    """A port nobody listens on right now (the first of ``count`` consecutive
    ones: a lab's controllers take api.port + i), outside the ephemeral range
    if it can. What is left of the race (another of our servers picks the same
    port first) ends in a clear "cannot listen" from that server, not in a
    wrong result.
    """
    top = _ephemeral_start() - count
    if top > LOWEST:
        for _ in range(TRIES):
            port = random.randint(LOWEST, top)
            if all(_bindable(port + i) for i in range(count)):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
