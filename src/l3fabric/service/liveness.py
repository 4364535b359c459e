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
  its key under ``/live/`` exists, so every controller reads the same
  answer. The key is bound to the etcd lease of the controller the agent
  reports to (one lease per controller, whose TTL is the grace, kept alive
  off the heartbeat's path); it is written when the agent comes to that
  controller and deleted when the agent falls silent, and a keepalive is no
  store write.
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping

from l3fabric.keys import live_key, live_prefix
from l3fabric.poller import Poller
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
    """Up means "has a key under /live/", the same on every controller.

    A heartbeat never waits on etcd: it records "seen now" in memory (O(1)).
    Each controller holds one lease (TTL = the grace), and a renewer thread,
    in rounds every ``TTL / TICKS`` seconds: attaches to it the keys of the
    agents seen but not attached (in a few transactions for many), keeps it
    alive every ``TTL / 3`` (one keepalive for all of its agents: with a lease
    per agent, 1,000 agents were 750 keepalives a second), and deletes the key
    of an agent silent for a TTL, if it is still under this lease (the agent
    may report to another controller now). So an agent that stops is down
    on every controller a TTL (the grace) and a round after its last
    heartbeat. A controller killed with ``kill -9`` leaves its lease at least
    ``2 TTL / 3`` of life; with TTL = grace = 2 heartbeat intervals, the
    agent's next heartbeat (an interval later, to another controller) has a
    third of the TTL for that controller to attach its key (1.3 s for a 4 s
    TTL) before the key goes. An agent seen for the first time is up
    everywhere once its key is written: ``gather_s`` and a transaction after
    its heartbeat. The reports themselves stay in this controller's memory
    (``MemoryLiveness``).
    """

    # Rounds per TTL: the lease is renewed about TTL/3 after the last time
    # (half a tick early, so that it is not a tick late).
    TICKS = 12
    # An agent silent here for longer than this share of the TTL (1.5 heartbeat
    # intervals: a heartbeat missed) may have reported to another controller
    # meanwhile, which took its key to its own lease: its next heartbeat here
    # attaches it again.
    MOVED = 0.75

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
        self._held: set[tuple[str, str]] = set()  # agents whose key is under our lease
        self._leaving: set[tuple[str, str]] = set()  # silent agents whose key to delete
        self._lease: tuple[int, int] | None = None  # (id, TTL) of this controller's lease
        self._renewed = -math.inf  # the lease's last keepalive (clock)
        self._ttl = math.inf  # the TTL of the last round (a heartbeat reads no store)
        self._untaken = False  # an agent was seen whose key is not attached
        self._lock = threading.Lock()
        # The renewer: a round every TTL / TICKS, at once when an agent is new
        # (not under the lock: the grace may be read from the store).
        self._renewer = Poller(
            "liveness", self._round, lambda: lease_ttl(self._grace()) / self.TICKS, slow_pause_s=0
        )
        self._stopped = False
        self._failing = False  # the last request to etcd failed

    def beat(self, kind: str, name: str, report: JSON) -> JSON:
        stamped = self._reports.beat(kind, name, report)
        now = self._clock()
        key = (kind, name)
        with self._lock:
            last = self._seen.get(key)
            self._seen[key] = now
            self._leaving.discard(key)
            if last is None or now - last > self.MOVED * self._ttl:
                self._held.discard(key)
            if key not in self._held:
                self._untaken = True
                self._start()
                self._renewer.wake()
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
        with self._lock:
            self._seen.pop((kind, name), None)
            self._held.discard((kind, name))
            self._leaving.discard((kind, name))
        self._leases.release(live_key(kind, name))

    def close(self) -> None:
        with self._lock:
            self._stopped = True
        self._renewer.stop(timeout=5)

    def renew(self) -> None:
        """One round: delete the keys of agents silent for a TTL, take a lease if
        there is none, keep it alive when due, attach the keys of agents seen."""
        ttl = lease_ttl(self._grace())
        now = self._clock()
        with self._lock:
            self._ttl = ttl
            self._untaken = False
            # Silent for a TTL (not less, so that heartbeats queued in an
            # overloaded server do not lose their keys): down everywhere.
            for key in [k for k, seen in self._seen.items() if now - seen >= ttl]:
                del self._seen[key]
                if key in self._held:
                    self._held.discard(key)
                    self._leaving.add(key)
            lease, leaving = self._lease, sorted(self._leaving)
        if leaving and lease is not None:
            self._detach(leaving, lease[0])
        if lease is None or lease[1] != ttl:  # none yet, expired, or the grace changed
            lease = self._grant(ttl, now)
            if lease is None:
                return
        if now - self._renewed >= ttl / 3 - ttl / self.TICKS / 2 and not self._keepalive(
            lease[0], now
        ):
            return
        with self._lock:
            untaken = [key for key in self._seen if key not in self._held]
        if untaken:
            self._attach(untaken, lease[0])

    def _grant(self, ttl: int, now: float) -> tuple[int, int] | None:
        """A new lease for this controller (the keys under the old one are attached again)."""
        try:
            lease = (self._leases.grant(ttl), ttl)
        except StoreError as exc:
            self._failed(f"liveness: no lease from etcd: {exc}")
            return None
        with self._lock:
            self._lease = lease
            self._held.clear()
            self._leaving.clear()  # under the old lease, which goes with them
            self._renewed = now
        return lease

    def _keepalive(self, lease: int, now: float) -> bool:
        """Keep the lease alive; False if that failed or it had expired (a new one next round)."""
        try:
            left = self._leases.keepalive([lease]).get(lease, -1)
        except StoreError as exc:
            self._failed(f"liveness: keeping the lease alive in etcd failed: {exc}")
            return False
        if self._failing:
            log.info("liveness: the lease is kept alive in etcd again")
            self._failing = False
        with self._lock:
            if left > 0:
                self._renewed = now
                return True
            # etcd or this process was too slow: every key went with it.
            log.warning("liveness: the lease of this controller expired; taking a new one")
            self._lease = None
            self._untaken = True  # the next round right away
            return False

    def _attach(self, keys: list[tuple[str, str]], lease: int) -> None:
        stamp = {"heartbeat_at": time.time()}
        try:
            self._leases.attach({live_key(*key): stamp for key in keys}, lease)
        except StoreError as exc:
            # Shown down (on every controller) until a round attaches it; the
            # next round's keepalive says whether the lease is still there.
            self._failed(f"liveness: agents' keys not written to etcd: {exc}")
            self._renewed = -math.inf
            return
        with self._lock:
            self._held.update(key for key in keys if key in self._seen)
            # Forgotten (deleted) while being attached: not kept.
            self._leaving.update(key for key in keys if key not in self._seen)

    def _detach(self, keys: list[tuple[str, str]], lease: int) -> None:
        try:
            self._leases.detach([live_key(*key) for key in keys], lease)
        except StoreError as exc:
            self._failed(f"liveness: silent agents' keys not deleted from etcd: {exc}")
            return  # the next round again
        with self._lock:
            self._leaving.difference_update(keys)

    def _failed(self, message: str) -> None:
        if not self._failing:  # once per outage, not once per request
            log.warning("%s", message)
        self._failing = True

    def _start(self) -> None:
        if self._background and not self._stopped:
            self._renewer.start()  # nothing if it runs

    def _round(self) -> None:
        with self._lock:
            untaken = self._untaken
        if untaken:  # more new agents may come: take them in one round
            time.sleep(self.gather_s)
        self.renew()


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
