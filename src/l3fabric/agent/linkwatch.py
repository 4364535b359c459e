"""Wakes the reconcile loop when a tap device appears, goes or changes state.

A VM is plugged in after its port exists (Nova, or ``lab boot``, creates the
port first), so the agent must notice new taps by itself: it listens to the
kernel's link notifications instead of polling, and tells the agent which
taps changed (its incremental pass re-reads only those).

The socket is a plain netlink socket read with ``select``: pyroute2 0.9
reads datagrams into an internal asyncio queue, so after ``get()`` returned
one burst, later datagrams could sit in that queue with the kernel socket
empty and ``select`` silent. A tap plugged in then went unnoticed until the
next periodic pass (10 s). Each wake-up here drains the socket completely.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading
from collections.abc import Callable, Iterator

from l3fabric.dataplane.netlink import IFINFOMSG, IFLA_IFNAME, NLMSGHDR, RTATTR

log = logging.getLogger(__name__)

RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17
_RCVBUF = 1 << 20


def link_names(data: bytes) -> Iterator[str]:
    """The interface names in a datagram of RTM_NEWLINK / RTM_DELLINK messages."""
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size:
            return
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            attr = offset + NLMSGHDR.size + IFINFOMSG.size
            end = offset + length
            while attr + RTATTR.size <= end:
                attr_len, attr_type = RTATTR.unpack_from(data, attr)
                if attr_len < RTATTR.size:
                    break
                if attr_type == IFLA_IFNAME:
                    value = data[attr + RTATTR.size : attr + attr_len]
                    yield value.split(b"\0", 1)[0].decode(errors="replace")
                    break
                attr += (attr_len + 3) & ~3
        offset += (length + 3) & ~3


class LinkWatcher:
    """Calls ``on_change(names)`` (from its own thread) for link events on taps.

    ``names``: the taps that appeared, went or changed; None when the kernel
    dropped notifications (any tap may have changed).
    """

    def __init__(self, on_change: Callable[[set[str] | None], None], prefix: str = "tap") -> None:
        self.on_change = on_change
        self.prefix = prefix
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        self._sock.bind((0, RTMGRP_LINK))
        self._sock.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="linkwatch", daemon=True)

    def start(self) -> LinkWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()

    def _drain(self) -> set[str] | None:
        """Read every queued datagram: the taps they name (None: some were lost)."""
        names: set[str] | None = set()
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return names
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped notifications: any tap may have changed.
                log.warning("link notifications overflowed; reconciling")
                names = None
                continue
            if names is not None:
                names.update(n for n in link_names(data) if n.startswith(self.prefix))

    def _run(self) -> None:
        while not self._stop.is_set():
            # select with a timeout so that stop() is noticed without closing
            # the socket under a blocked reader.
            ready, _, _ = select.select([self._sock], [], [], 0.5)
            if not ready:
                continue
            try:
                names = self._drain()
            except Exception:
                log.exception("reading link events failed")
                continue
            if names is None or names:
                self.on_change(names)
