"""A daemon thread that runs a poll every so often: the gateway's between-pass watchers.

``AnycastSync`` (BIRD's anycast paths into the kernel) and ``BirdWatch``
(the fabric gate, a dead BIRD) each poll BIRD every 0.1 s; this is their
thread, started with the agent's loop and stopped with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# One poll that waited minutes (for the kernel: rtnl held by a mass interface
# change elsewhere) must not put the next one minutes away.
MAX_PAUSE_S = 0.5


class Poller:
    """Runs ``step`` every ``interval_s`` in a daemon thread named ``name`` from ``start()``
    to ``stop()``; a step that raises is logged, and the next one runs as usual."""

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._step = step
        self.interval_s = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self._clock()
            try:
                self._step()
            except Exception:
                log.exception("%s: poll failed", self.name)  # never ends the thread
            took = self._clock() - started
            # At least as long as the poll took: a slow poll (1,000 anycast
            # prefixes: ~40 ms of parsing) never takes over a core.
            self._stop.wait(min(max(self.interval_s - took, took), MAX_PAUSE_S))
