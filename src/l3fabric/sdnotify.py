"""systemd's readiness protocol: one datagram to ``$NOTIFY_SOCKET`` (a no-op outside systemd).

A unit with ``Type=notify`` counts as started only when the process sends
``READY=1``: the controller once it listens, an agent after its first pass.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(state: str = "READY=1") -> bool:
    """Send ``state`` to systemd; True if it was sent (False: not under systemd, or failed)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # "@": abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), address)
    except OSError as exc:
        log.warning("sd_notify %s to %s failed: %s", state, path, exc)
        return False
    return True
