"""Liveness: what agents report on every heartbeat, kept out of the store.

A thousand hosts beating every 2 s would be 500 store writes a second that
change nothing. ``Liveness`` keeps each agent's last report (stamped with its
arrival) for a time to live; only a change of *state* is written to the
store (``durable_state``: the BGP sessions and whether each is up), so that
other controllers and restarts still know it. ``MemoryLiveness`` is the one
implementation: per controller process, so a host's ``heartbeat_at`` shows
on the controller it beats to (an etcd lease could hold it for all of them;
the interface is small for that reason).
"""

from __future__ import annotations

import abc
import threading
import time
from typing import Any

JSON = dict[str, Any]

# Reports older than this are forgotten: a host is shown "down" long before
# (3 heartbeat intervals), so this only bounds the memory of hosts that left.
DEFAULT_TTL_S = 600.0
# A port status the controller applied is not read again for this long when
# the same host reports it again (the agents resend every status now and then).
PORT_STATUS_TTL_S = 30.0


class Liveness(abc.ABC):
    """The last report of each agent (``kind``: "host" or "gateway"), for a time."""

    @abc.abstractmethod
    def beat(self, kind: str, name: str, report: JSON) -> JSON:
        """Record ``report`` as ``name``'s latest; returns it stamped with ``heartbeat_at``."""

    @abc.abstractmethod
    def last(self, kind: str, name: str) -> JSON | None:
        """``name``'s latest report, or None if there was none within the TTL."""

    @abc.abstractmethod
    def forget(self, kind: str, name: str) -> None:
        """Drop what is known of ``name`` (it was deleted)."""


class MemoryLiveness(Liveness):
    """Reports in a dict of this process, expired after ``ttl`` seconds."""

    def __init__(self, ttl: float = DEFAULT_TTL_S) -> None:
        self.ttl = ttl
        self._reports: dict[tuple[str, str], JSON] = {}
        self._lock = threading.Lock()

    def beat(self, kind: str, name: str, report: JSON) -> JSON:
        stamped = {"heartbeat_at": time.time(), **report}
        with self._lock:
            self._reports[kind, name] = stamped
        return stamped

    def last(self, kind: str, name: str) -> JSON | None:
        with self._lock:
            report = self._reports.get((kind, name))
            if report is not None and time.time() - report["heartbeat_at"] > self.ttl:
                del self._reports[kind, name]
                return None
        return report

    def forget(self, kind: str, name: str) -> None:
        with self._lock:
            self._reports.pop((kind, name), None)


def durable_state(report: JSON) -> JSON:
    """What of a report is worth a store write when it changes: each BGP
    session and its state, and which controller the agent reports to (so every
    controller can tell; it changes only on a failover). Counters, NAT
    statistics and timers are not."""
    state: JSON = {
        "bgp": [
            {"name": s.get("name"), "peer": s.get("peer", ""), "state": s.get("state")}
            for s in report.get("bgp", ())
        ]
    }
    controller = (report.get("agent") or {}).get("controller")
    if controller:
        state["agent"] = {"controller": controller}
    return state


class AppliedStatuses:
    """The port statuses this controller applied lately, so that a host
    repeating one costs no store read."""

    def __init__(self, ttl: float = PORT_STATUS_TTL_S) -> None:
        self.ttl = ttl
        self._applied: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def fresh(self, host: str, port_id: str, status: str) -> bool:
        """Whether ``host`` reported ``status`` for the port within the TTL (nothing to do)."""
        with self._lock:
            seen = self._applied.get((host, port_id))
        return seen is not None and seen[0] == status and time.monotonic() - seen[1] < self.ttl

    def applied(self, host: str, port_id: str, status: str) -> None:
        with self._lock:
            self._applied[host, port_id] = (status, time.monotonic())
