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
  TTL is the grace, kept alive (off the heartbeat's path) by the controller
  the agent reports to, so every controller reads the same answer; the key
  is written only when its lease is new (first heartbeat, or after it
  expired), and a keepalive is no store write.
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

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
# The renewer waits this long after the heartbeat of an agent it does not hold
# yet, for more to join its round (the agents of a controller that died come
# all at once).
GATHER_S = 0.02
# Leases taken at once (each take writes to etcd twice: concurrent writes
# share etcd's disk syncs, one after the other they wait for one each).
TAKERS = 8


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

    A heartbeat never waits on etcd: it records "seen now" in memory (O(1)).
    One renewer thread per controller takes the lease of each agent seen but
    not held (adopts the key's live lease, or writes the key under a new one)
    and keeps alive, in pipelined rounds every ``TTL / TICKS`` seconds, the
    lease of every agent seen within the TTL, each one at least every
    ``TTL / 3`` (plus a round's duration). So a lease always has ``2 TTL / 3``
    of life left while its agent beats: with TTL = grace = 2 heartbeat
    intervals, a controller killed with ``kill -9`` leaves the agent's next
    heartbeat (an interval later, to another controller) a third of the TTL
    to adopt the lease (1.3 s for a 4 s TTL). An agent seen for the first time
    is up everywhere once its key is written: ``gather_s`` plus one take after
    its heartbeat. An agent that stops is down ``2 TTL`` after its last
    heartbeat at most, ``5 TTL / 3`` (- a tick) at least.
    The reports themselves stay in this controller's memory (``MemoryLiveness``).
    """

    # Rounds per TTL: each renews the leases about TTL/3 old (half a tick early,
    # so that they are not a tick late).
    TICKS = 12

    def __init__(
        self,
        leases: Leases,
        grace: Callable[[], float],
        *,
        gather_s: float = GATHER_S,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self._leases = leases
        self._grace = grace
        self.gather_s = gather_s
        self._clock = clock
        self._background = background  # False: the caller runs ``renew`` (tests)
        self._reports = MemoryLiveness()
        self._seen: dict[tuple[str, str], float] = {}  # agent -> last heartbeat (clock)
        self._held: dict[tuple[str, str], int] = {}  # the leases this controller keeps alive
        self._renewed: dict[tuple[str, str], float] = {}  # agent -> its last keepalive
        self._untaken = False  # an agent was seen whose lease is not held
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._takers = ThreadPoolExecutor(TAKERS, thread_name_prefix="liveness-take")
        self._stopped = False
        self._failing = False  # the last request to etcd failed

    def beat(self, kind: str, name: str, report: JSON) -> JSON:
        stamped = self._reports.beat(kind, name, report)
        with self._cond:
            self._seen[kind, name] = self._clock()
            if (kind, name) not in self._held:
                self._untaken = True
                self._start()
                self._cond.notify_all()
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
            for table in (self._seen, self._held, self._renewed):
                table.pop((kind, name), None)
        self._leases.release(live_key(kind, name))

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        self._takers.shutdown(wait=False)

    def renew(self) -> None:
        """One round: take the leases of agents seen but not held, keep alive
        those due, and stop keeping those of agents silent for too long."""
        ttl = lease_ttl(self._grace())
        period = ttl / 3
        now = self._clock()
        with self._cond:
            self._untaken = False
            # Silent for a TTL: no longer kept alive (a TTL, not less, so that
            # heartbeats queued in an overloaded server do not lose their leases).
            for key in [k for k, seen in self._seen.items() if now - seen >= ttl]:
                for table in (self._seen, self._held, self._renewed):
                    table.pop(key, None)  # its lease lapses a TTL after its last keepalive
            untaken = [key for key in self._seen if key not in self._held]
        # Takes are 2-3 requests each: bounded per round so that the keepalives
        # of the held leases are not late. Every round takes what is left (a
        # failed take is retried a tick later, not at once: etcd may be away).
        budget = time.monotonic() + period / 4
        for start in range(0, len(untaken), TAKERS):
            if time.monotonic() > budget:
                with self._cond:
                    self._untaken = True  # the next round right away
                break
            batch = untaken[start : start + TAKERS]
            if not all(self._takers.map(lambda key: self._take(*key, ttl), batch)):
                break
        with self._cond:
            due = {
                key: lease
                for key, lease in self._held.items()
                if now - self._renewed.get(key, -math.inf) >= period - ttl / self.TICKS / 2
            }
        self._keepalive(due, now)

    def _take(self, kind: str, name: str, ttl: int) -> bool:
        """Hold ``name``'s key: adopt its lease, or write it under a new one (True if held)."""
        try:
            lease = self._leases.hold(live_key(kind, name), {"heartbeat_at": time.time()}, ttl)
        except StoreError as exc:
            # Shown down (on every controller) until a round takes it.
            self._failed(f"liveness of {kind} {name} not kept in etcd: {exc}")
            return False
        with self._cond:
            if (kind, name) in self._seen:  # not forgotten meanwhile
                self._held[kind, name] = lease  # an adopted lease: kept alive this round
        return True

    def _keepalive(self, due: dict[tuple[str, str], int], now: float) -> None:
        """Keep the leases of ``due`` alive; those that had expired are taken again next round."""
        try:
            ttls = self._leases.keepalive(sorted(set(due.values())))
        except StoreError as exc:
            self._failed(f"liveness: keeping leases alive in etcd failed: {exc}")
            return
        if self._failing:
            log.info("liveness: leases kept alive in etcd again")
            self._failing = False
        with self._cond:
            for key, lease in due.items():
                if self._held.get(key) != lease:
                    continue  # forgotten or taken anew meanwhile
                if ttls.get(lease, -1) > 0:
                    self._renewed[key] = now
                else:  # etcd or this process was too slow: a new lease next round
                    del self._held[key]
                    self._renewed.pop(key, None)
                    self._untaken = True

    def _failed(self, message: str) -> None:
        if not self._failing:  # once per outage, not once per request
            log.warning("%s", message)
        self._failing = True

    def _start(self) -> None:
        if self._background and self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name="liveness", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                tick = lease_ttl(self._grace()) / self.TICKS
                self._cond.wait_for(lambda: self._untaken or self._stopped, timeout=tick)
                if self._stopped:
                    return
                untaken = self._untaken
            if untaken:  # more new agents may come: take them in one round
                time.sleep(self.gather_s)
            try:
                self.renew()
            except Exception:  # a bug must not end the renewals of every agent
                log.exception("liveness: a round of keepalives failed")


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
