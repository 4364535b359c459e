"""Noticing at once that the agent's BIRD exited, so the next pass starts it again.

BIRD is not the agent's child (it daemonises, or runs as a systemd unit), so
the agent cannot wait for it; it used to notice a dead BIRD at its next
heartbeat (every 2 s). Meanwhile the gateway has dropped the host's routes
(BFD ends the session hard, without graceful restart), so every moment until
BIRD is back is lost traffic. A pidfd (``pidfd_open``, Linux 5.3) becomes
readable when its process exits, whoever its parent: a thread waits on the
running BIRD's and wakes the agent the moment it exits. Measured in the lab
(``kill -9`` of a host's BIRD, pings through the gateway): BIRD started
again 0.02-0.04 s after the kill, not up to 2 s later; its routes were back
at the gateway after 0.77-1.07 s, not 0.95-2.07 s (docs/agent.md).
"""

from __future__ import annotations

import logging
import os
import select
from collections.abc import Callable

from l3fabric.poller import Poller

log = logging.getLogger(__name__)

# How long one wait on a pidfd lasts before the thread looks again (which
# BIRD runs, whether it stops; an exit the pidfd missed): at most this late.
WAIT_S = 0.25
# Between two waits, and while no BIRD runs (the loop starts one).
IDLE_S = 0.1


class BirdExitWatch:
    """Calls ``on_exit`` when the BIRD whose pid ``pid()`` gives exits."""

    def __init__(
        self, pid: Callable[[], int | None], on_exit: Callable[[], None], wait_s: float = WAIT_S
    ) -> None:
        self._pid = pid
        self._on_exit = on_exit
        self.wait_s = wait_s
        self._watched: int | None = None  # the BIRD the last step waited on
        self._poller = Poller("bird-exit", self.step, IDLE_S, slow_pause_s=IDLE_S)

    def step(self) -> bool:
        """Wait up to ``wait_s`` for the running BIRD to exit; True (and ``on_exit``) if it did."""
        pid = self._pid()
        # The BIRD watched in the step before is gone (or another runs): an exit too.
        gone = self._watched is not None and pid != self._watched
        if not gone and pid is not None:
            self._watched = pid
            gone = self._exits_within(pid, self.wait_s)
        if gone:
            log.warning("BIRD (pid %s) exited: starting it again", self._watched)
            self._watched = None
            self._on_exit()
        return gone

    def _exits_within(self, pid: int, seconds: float) -> bool:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return True  # gone between the pid file and here
        try:
            readable, _, _ = select.select([fd], [], [], seconds)
        finally:
            os.close(fd)
        # The pidfd of a multithreaded process (BIRD with its BFD thread) was
        # seen not to wake on kill -9: whether it still runs is checked too.
        return bool(readable) or self._pid() != pid

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop(timeout=0)  # a daemon thread: never holds the agent's exit
