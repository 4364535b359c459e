"""Liveness: what agents report on every heartbeat, kept out of the store.

A thousand hosts beating every 2 s would be 500 store writes a second that
change nothing. ``Liveness`` keeps each agent's last report (stamped with its
arrival) in this controller's memory for a time to live, and says which
agents are up; only a change of *state* is written to the store
(``durable_state``: the BGP sessions and whether each is up), so that other
controllers and restarts still know it. Two implementations, chosen by the
store (``for_store``):

- ``MemoryLiveness`` (SQLite, one controller): an agent is up while its last
  report to this controller is younger than the grace.
- ``LeaseLiveness`` (etcd, any number of controllers): an agent is up while
  its key under ``/live/`` exists. The key is bound to an etcd lease whose
  TTL is the grace, kept alive by the agent's heartbeats to whichever
  controller it reports to, so every controller reads the same answer; the
  key is written only when its lease is new (first heartbeat, or after it
  expired), and a keepalive is no store write.
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping

from l3fabric.keys import live_key, live_prefix
from l3fabric.store import Store, StoreError
from l3fabric.store.base import JSON, Leases

log = logging.getLogger(__name__)

# Reports older than this are forgotten: a host is shown "down" long before
# (3 heartbeat intervals), so this only bounds the memory of hosts that left.
DEFAULT_TTL_S = 600.0
# A port status the controller applied is not read again for this long when
# the same host reports it again (the agents resend every status now and then).
PORT_STATUS_TTL_S = 30.0
# A heartbeat is answered once its lease is kept alive, or after this long
# (etcd slow or away: the report is kept anyway, the lease may lapse). Short:
# a waiting heartbeat holds one of the server's 40 threads for sync routes,
# so this bounds how far a slow etcd can slow them (40 / 0.25 s = 160/s).
RENEW_WAIT_S = 0.25
# The renewer waits this long after a heartbeat for more to join its round
# (one connection to etcd for all of them).
GATHER_S = 0.02


class Liveness(abc.ABC):
    """The last report of each agent (``kind``: "host" or "gateway"), and which are up."""

    @abc.abstractmethod
    def beat(self, kind: str, name: str, report: JSON) -> JSON:
        """Record ``report`` as ``name``'s latest; returns it stamped with ``heartbeat_at``."""

    @abc.abstractmethod
    def last(self, kind: str, name: str) -> JSON | None:
        """``name``'s latest report to this controller, or None if none within the TTL."""

    @abc.abstractmethod
    def up(self, kind: str, shown: Mapping[str, JSON | None], grace: float) -> set[str]:
        """Which agents of ``shown`` (name -> the status a view shows, with its
        ``heartbeat_at``) are up now, ``grace`` seconds being the allowed silence."""

    @abc.abstractmethod
    def forget(self, kind: str, name: str) -> None:
        """Drop what is known of ``name`` (it was deleted)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop any background work."""


def for_store(store: Store, grace: Callable[[], float]) -> Liveness:
    """``LeaseLiveness`` on a store with leases (etcd), else ``MemoryLiveness``."""
    leases = store.leases()
    return MemoryLiveness() if leases is None else LeaseLiveness(leases, grace)


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

    def up(self, kind: str, shown: Mapping[str, JSON | None], grace: float) -> set[str]:
        now = time.time()
        return {
            name
            for name, status in shown.items()
            if status
            and status.get("heartbeat_at") is not None
            and now - float(status["heartbeat_at"]) < grace
        }

    def forget(self, kind: str, name: str) -> None:
        with self._lock:
            self._reports.pop((kind, name), None)

    def close(self) -> None:
        pass  # nothing runs in the background


def lease_ttl(grace: float) -> int:
    """A lease's TTL for a grace: whole seconds (etcd raises it to its minimum, 2 s by default)."""
    return max(1, math.ceil(grace))


class LeaseLiveness(Liveness):
    """Up means "has a live lease", the same on every controller.

    Each heartbeat keeps its agent's lease alive before it is answered (group
    commit: the heartbeats of ~``GATHER_S`` share one pipelined round trip to
    etcd), so an acknowledged heartbeat always extends the lease: when its
    controller dies the agent's next heartbeat, to another controller, finds
    the lease alive and keeps it (``Leases.hold`` adopts the key's lease). The
    reports themselves stay in this controller's memory (``MemoryLiveness``).
    """

    def __init__(
        self,
        leases: Leases,
        grace: Callable[[], float],
        *,
        wait_s: float = RENEW_WAIT_S,
        gather_s: float = GATHER_S,
    ) -> None:
        self._leases = leases
        self._grace = grace
        self.wait_s = wait_s
        self.gather_s = gather_s
        self._reports = MemoryLiveness()
        self._held: dict[tuple[str, str], int] = {}  # the leases this controller keeps alive
        self._pending: set[tuple[str, str]] = set()  # beaten since the last round began
        self._begun = 0  # renewal rounds begun, and finished
        self._finished = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._failing = False  # the last round's keepalive failed

    def beat(self, kind: str, name: str, report: JSON) -> JSON:
        stamped = self._reports.beat(kind, name, report)
        with self._cond:
            held = (kind, name) in self._held
        if not held and not self._take(kind, name):
            return stamped  # etcd did not answer: the report is kept all the same
        with self._cond:
            self._pending.add((kind, name))
            ours = self._begun + 1
            self._start()
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: self._finished >= ours or self._stopped, timeout=self.wait_s
            )
        return stamped

    def last(self, kind: str, name: str) -> JSON | None:
        return self._reports.last(kind, name)

    def up(self, kind: str, shown: Mapping[str, JSON | None], grace: float) -> set[str]:
        # One name (a show): read its key alone (the prefix also matches longer names).
        prefix = live_key(kind, next(iter(shown))) if len(shown) == 1 else live_prefix(kind)
        held = self._leases.held(prefix)
        return {name for name in shown if live_key(kind, name) in held}

    def forget(self, kind: str, name: str) -> None:
        self._reports.forget(kind, name)
        with self._cond:
            self._held.pop((kind, name), None)
            self._pending.discard((kind, name))
        self._leases.release(live_key(kind, name))

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _take(self, kind: str, name: str) -> bool:
        """Hold ``name``'s key: adopt its lease, or write it under a new one (True if held)."""
        try:
            lease = self._leases.hold(
                live_key(kind, name), {"heartbeat_at": time.time()}, lease_ttl(self._grace())
            )
        except StoreError as exc:
            # Shown down (on every controller) until a heartbeat takes it.
            if not self._failing:
                log.warning("liveness of %s %s not kept in etcd: %s", kind, name, exc)
            self._failing = True
            return False
        with self._cond:
            self._held[kind, name] = lease
        return True

    def _start(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopped)
                if self._stopped:
                    return
            time.sleep(self.gather_s)
            with self._cond:
                due = {key: self._held[key] for key in self._pending if key in self._held}
                self._pending = set()
                self._begun += 1
            try:
                self._round(due)
            except Exception:  # a bug must not end the renewals of every agent
                log.exception("liveness: a round of keepalives failed")
                self._finish()

    def _round(self, due: dict[tuple[str, str], int]) -> None:
        expired = self._renew(due)
        self._finish()
        # Leases that expired while their agents beat (etcd or this process too
        # slow): new ones, after the round's heartbeats are answered; the next
        # heartbeat's round keeps them alive (an adopted one may be dead too).
        for kind, name in expired:
            self._take(kind, name)

    def _finish(self) -> None:
        """The round begun last is done: its heartbeats are answered."""
        with self._cond:
            self._finished = self._begun
            self._cond.notify_all()

    def _renew(self, due: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
        """Keep the leases of ``due`` alive; returns those that had expired."""
        try:
            ttls = self._leases.keepalive(sorted(set(due.values())))
        except StoreError as exc:
            if not self._failing:  # once per outage, not once per round
                log.warning("liveness: keeping leases alive in etcd failed: %s", exc)
            self._failing = True
            return []
        if self._failing:
            log.info("liveness: leases kept alive in etcd again")
            self._failing = False
        expired = [key for key, lease in due.items() if ttls.get(lease, -1) <= 0]
        with self._cond:
            for key in expired:
                if self._held.get(key) == due[key]:
                    del self._held[key]
        return expired


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
