"""Wakes the reconcile loop when a tap device appears, goes or changes state.

A VM is plugged in after its port exists (Nova, or ``lab boot``, creates the
port first), so the agent must notice new taps by itself: it listens to the
kernel's link notifications instead of polling.
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable

from pyroute2 import IPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK

log = logging.getLogger(__name__)


class LinkWatcher:
    """Calls ``on_change`` (from its own thread) for every link event on a tap."""

    def __init__(self, on_change: Callable[[], None], prefix: str = "tap") -> None:
        self.on_change = on_change
        self.prefix = prefix
        self._stop = threading.Event()
        self._ipr = IPRoute()
        self._ipr.bind(groups=RTMGRP_LINK)
        self._thread = threading.Thread(target=self._run, name="linkwatch", daemon=True)

    def start(self) -> LinkWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._ipr.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            # select with a timeout so that stop() is noticed without closing
            # the socket under a blocked reader.
            ready, _, _ = select.select([self._ipr.fileno()], [], [], 0.5)
            if not ready:
                continue
            try:
                messages = self._ipr.get()
            except Exception:
                log.exception("reading link events failed")
                continue
            if any((msg.get_attr("IFLA_IFNAME") or "").startswith(self.prefix) for msg in messages):
                self.on_change()
