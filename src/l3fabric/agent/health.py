"""Health probes of local anycast members, run from the host, with rise/fall hysteresis.

``probe(target)`` runs one check against the member's own fixed IP: a TCP
connect, an HTTP GET (2xx or 3xx is good) or one ICMP echo (``ping`` with a
fractional ``-W``), each bounded by the check's ``timeout_s``.

``Hysteresis`` is the per-member state machine: the first result decides at
once (a new member, or an address just moved here, serves within one probe),
after that ``fall`` consecutive failures make it unhealthy and ``rise``
consecutive successes healthy again.

``HealthProbes`` keeps one background thread per target (at most
``MAX_PROBES``), probing every ``interval_s``; ``update(targets)`` starts and
stops them, and every transition calls ``on_change`` (the agent wakes its
loop and queues a status report). Threads are daemons that stop within one
interval or timeout of ``update``/``stop``.
"""

from __future__ import annotations

import http.client
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping

from l3fabric.agent.anycast import ProbeTarget
from l3fabric.poller import Poller

log = logging.getLogger(__name__)

# Threads are cheap but not free: a host with more probed members than this
# probes the first ones and reports the rest as an error.
MAX_PROBES = 512
Key = tuple[str, str]


def _tcp(target: ProbeTarget) -> bool:
    with socket.create_connection(
        (target.address, target.check.port or 0), timeout=target.check.timeout_s
    ):
        return True


def _http(target: ProbeTarget) -> bool:
    # http.client brackets IPv6 literals itself in the Host header.
    conn = http.client.HTTPConnection(
        target.address, target.check.port, timeout=target.check.timeout_s
    )
    try:
        conn.request("GET", target.check.path, headers={"User-Agent": "l3fabric-health"})
        return 200 <= conn.getresponse().status < 400
    finally:
        conn.close()


def _icmp(target: ProbeTarget) -> bool:
    timeout = target.check.timeout_s
    done = subprocess.run(
        ["ping", "-n", "-q", "-c1", f"-W{timeout:.3f}", target.address],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout + 2.0,  # ping's own start-up; -W bounds the wait itself
        check=False,
    )
    return done.returncode == 0


_PROBES: dict[str, Callable[[ProbeTarget], bool]] = {"tcp": _tcp, "http": _http, "icmp": _icmp}


def probe(target: ProbeTarget) -> bool:
    """One check of ``target``: True if the member answered as its check expects."""
    try:
        return _PROBES[target.check.type](target)
    except (OSError, http.client.HTTPException, subprocess.SubprocessError):
        return False


class Hysteresis:
    """A member's health: the first result at once, then ``rise``/``fall`` in a row."""

    def __init__(self, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.rise = rise
        self.fall = fall
        self.healthy: bool | None = None  # None: no result yet
        self._streak = 0  # consecutive results against the current state

    def record(self, ok: bool) -> bool:
        """Add one probe result; True if the state changed."""
        if self.healthy is None or (ok != self.healthy and self._streak + 1 >= self._needed(ok)):
            self.healthy = ok
            self._streak = 0
            return True
        self._streak = self._streak + 1 if ok != self.healthy else 0
        return False

    def _needed(self, ok: bool) -> int:
        return self.rise if ok else self.fall


class _Prober:
    """One target's probe, every ``interval_s`` of its check, in a thread of its own."""

    def __init__(
        self,
        target: ProbeTarget,
        on_change: Callable[[ProbeTarget, bool], None],
        check: Callable[[ProbeTarget], bool],
    ) -> None:
        self.target = target
        self.state = Hysteresis(target.check.rise, target.check.fall)
        self._on_change = on_change
        self._check = check
        # A plain period: the check's own timeout bounds a step.
        self.poller = Poller(
            f"probe-{target.port_id[:8]}", self._probe, target.check.interval_s, slow_pause_s=0
        )

    def _probe(self) -> None:
        ok = self._check(self.target)
        if self.poller.stopping:
            return  # a verdict on a target nobody wants any more
        if self.state.record(ok):
            self._on_change(self.target, bool(self.state.healthy))


class HealthProbes:
    """Background probes of a changing set of targets; ``verdicts()`` is their current health."""

    def __init__(
        self,
        on_change: Callable[[ProbeTarget, bool], None],
        check: Callable[[ProbeTarget], bool] = probe,
        max_probes: int = MAX_PROBES,
    ) -> None:
        self._on_change = on_change
        self._check = check
        self.max_probes = max_probes
        self._probers: dict[Key, _Prober] = {}
        self._lock = threading.Lock()

    def update(self, targets: Mapping[Key, ProbeTarget]) -> list[str]:
        """Probe exactly ``targets``; a changed target starts over. Returns what was refused."""
        refused: list[str] = []
        with self._lock:
            for key, prober in list(self._probers.items()):
                if targets.get(key) != prober.target:
                    prober.poller.stop(timeout=0)
                    del self._probers[key]
            for key, target in sorted(targets.items()):
                if key in self._probers:
                    continue
                if len(self._probers) >= self.max_probes:
                    refused.append(f"anycast: more than {self.max_probes} members to probe")
                    break
                prober = _Prober(target, self._on_change, self._check)
                self._probers[key] = prober
                prober.poller.start()
        return refused

    def targets(self) -> dict[Key, ProbeTarget]:
        """What is probed now."""
        with self._lock:
            return {k: p.target for k, p in self._probers.items()}

    def verdicts(self) -> dict[Key, bool]:
        """The health of every target that has had a result."""
        with self._lock:
            probers = list(self._probers.items())
        return {k: bool(p.state.healthy) for k, p in probers if p.state.healthy is not None}

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every probe; wait up to ``timeout`` s in all for the threads to end."""
        with self._lock:
            probers = list(self._probers.values())
            self._probers.clear()
        for prober in probers:
            prober.poller.stop(timeout=0)
        deadline = time.monotonic() + timeout
        for prober in probers:
            prober.poller.join(max(0.0, deadline - time.monotonic()))
