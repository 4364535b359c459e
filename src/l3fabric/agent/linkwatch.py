"""Wakes the reconcile loop when a tap device appears, goes or changes state.

A VM is plugged in after its port exists (Nova, or ``lab boot``, creates the
port first), so the agent must notice new taps by itself: it listens to the
kernel's link notifications instead of polling.

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
import struct
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_IFNAME = 3
_NLMSGHDR = struct.Struct("=LHHLL")  # length, type, flags, seq, pid
_IFINFOMSG_LEN = 16
_RTATTR = struct.Struct("=HH")  # length, type
_RCVBUF = 1 << 20


def link_names(data: bytes) -> Iterator[str]:
    """The interface names in a datagram of RTM_NEWLINK / RTM_DELLINK messages."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            return
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            attr = offset + _NLMSGHDR.size + _IFINFOMSG_LEN
            end = offset + length
            while attr + _RTATTR.size <= end:
                attr_len, attr_type = _RTATTR.unpack_from(data, attr)
                if attr_len < _RTATTR.size:
                    break
                if attr_type == IFLA_IFNAME:
                    value = data[attr + _RTATTR.size : attr + attr_len]
                    yield value.split(b"\0", 1)[0].decode(errors="replace")
                    break
                attr += (attr_len + 3) & ~3
        offset += (length + 3) & ~3


class LinkWatcher:
    """Calls ``on_change`` (from its own thread) for every link event on a tap."""

    def __init__(self, on_change: Callable[[], None], prefix: str = "tap") -> None:
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

    def _drain(self) -> bool:
        """Read every queued datagram; True if one concerned a tap (or some were lost)."""
        relevant = False
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return relevant
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                # The kernel dropped notifications: assume a tap was among them.
                log.warning("link notifications overflowed; reconciling")
                relevant = True
                continue
            if any(name.startswith(self.prefix) for name in link_names(data)):
                relevant = True

    def _run(self) -> None:
        while not self._stop.is_set():
            # select with a timeout so that stop() is noticed without closing
            # the socket under a blocked reader.
            ready, _, _ = select.select([self._sock], [], [], 0.5)
            if not ready:
                continue
            try:
                relevant = self._drain()
            except Exception:
                log.exception("reading link events failed")
                continue
            if relevant:
                self.on_change()
