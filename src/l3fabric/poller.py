"""A daemon thread that runs a step every so often until it is stopped.

The background polls of the agents and the controller: the gateway's
``AnycastSync`` and ``BirdWatch`` (BIRD every 0.1 s), the host agent's
anycast health probes (agent/health.py, one per member), every agent's
heartbeat (agent/loop.py, at once on ``wake``) and the controller's lease
renewer (service/liveness.py, at once when an agent is new).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# After a slow step the pause is at least as long as the step took, up to
# this: a slow poll (1,000 anycast prefixes: ~40 ms of parsing) never takes
# over a core, and one that waited minutes (for the kernel: rtnl held by a
# mass interface change elsewhere) does not put the next one minutes away.
SLOW_PAUSE_S = 0.5


def pause(interval_s: float, took: float, slow_pause_s: float = SLOW_PAUSE_S) -> float:
    """How long to wait after a step that took ``took`` s: the rest of the interval,
    but at least ``took`` up to ``slow_pause_s`` (0: a plain periodic step)."""
    return max(interval_s - took, min(took, slow_pause_s))


class Poller:
    """Runs ``step`` every ``interval_s`` in a daemon thread named ``name``, from
    ``start()`` to ``stop()``; ``wake()`` runs the next step at once. A step that
    raises is logged, and the next one runs as usual.

    ``interval_s``: seconds, or a function read before each pause (a setting
    that may change; if it raises, the last value it gave is used, 1 s before
    the first). ``slow_pause_s``: see ``pause``.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        interval_s: float | Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
        slow_pause_s: float = SLOW_PAUSE_S,
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval_s if callable(interval_s) else lambda: interval_s
        self._last_interval = 1.0 if callable(interval_s) else interval_s
        self._clock = clock
        self.slow_pause_s = slow_pause_s
        self._wake = threading.Event()  # set: run the next step now (or end, if stopping)
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """True once ``stop()`` was called: a step may leave its work unfinished."""
        return self._stopping

    def start(self) -> None:
        """Start the thread (nothing if it runs already)."""
        if self._thread is not None and self._thread.is_alive():
            if not self._stopping:
                return
            self._thread.join()  # stopped, not ended yet: one thread at a time
        self._stopping = False
        self._wake.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the next step now, or right after the one running."""
        self._wake.set()

    def stop(self, timeout: float = 2.0) -> None:
        """End the thread after the step running; wait up to ``timeout`` s for it (0: don't)."""
        self._stopping = True
        self._wake.set()
        if timeout > 0:
            self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (after ``stop()``)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping:
            started = self._clock()
            try:
                self._step()
            except Exception:
                log.exception("%s: poll failed", self.name)  # never ends the thread
            if self._stopping:
                return
            took = self._clock() - started
            self._wake.wait(pause(self._next_interval(), took, self.slow_pause_s))
            self._wake.clear()

    def _next_interval(self) -> float:
        try:
            interval = self._interval()
        except Exception as exc:  # e.g. a setting read from a store that is down
            log.warning(
                "%s: interval unknown (%s); %.3g s as before", self.name, exc, self._last_interval
            )
            return self._last_interval
        self._last_interval = interval
        return interval
