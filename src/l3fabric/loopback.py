"""A free TCP port on 127.0.0.1, for controllers the demo, benchmarks and tests start."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on right now.

    The tiny race (someone takes the port before our server binds it) ends in
    a clear "cannot listen" from that server, not in a wrong result.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
