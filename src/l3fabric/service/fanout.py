"""Watch fan-out: one reader per controller decodes each change once for every watcher.

Without it every long poll re-read and re-decoded the change log itself, so
one change cost as many store reads and decodes as there were hosts
connected. ``WatchHub`` follows ``store.watch("/")`` on one thread, turns
each batch into the events every host sees alike (``shared_events``) and the
events of the hosts it concerns (``concerned_hosts``, every gateway), keeps
the last ``history`` batches, and wakes only the watchers of the hosts that
have something new: a change costs the hosts that need it, not the others.

Semantics are those of ``watch_blocking`` (the relevance rules stay in
``service.watch``): a watch resumes from any revision; one older than what
the hub holds is served once from the store directly (the catch-up), and
one the store no longer has is a ``Gone`` (ResyncRequired).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from l3fabric import keys
from l3fabric.service.errors import Gone
from l3fabric.service.watch import (
    concerned_hosts,
    host_events,
    shared_events,
    watch_blocking,
)
from l3fabric.store import Event, Store, StoreError

_PORTS = keys.neutron_prefix("ports")

log = logging.getLogger(__name__)

JSON = dict[str, Any]

# Batches with shared events kept (one batch: one store.watch answer, often
# one transaction), and batches with events of one host kept for that host:
# a host waits through any number of changes that are not its own.
DEFAULT_HISTORY = 20_000
HOST_HISTORY = 1_000
# How long one store.watch call of the reader lasts, so it notices stop().
_READ_SLICE_S = 0.25
# After a store error the reader waits this long before it reads again.
_RETRY_S = 0.5
# How long a watch waits for the reader to reach the store's revision.
_CATCH_UP_S = 2.0


class History:
    """Decoded events by revision, the last ``size`` entries; older ones are
    below ``floor`` and must come from the store."""

    def __init__(self, size: int, floor: int) -> None:
        self._entries: deque[tuple[int, list[JSON]]] = deque(maxlen=size)
        self.floor = floor

    def add(self, revision: int, events: list[JSON]) -> None:
        if len(self._entries) == self._entries.maxlen:
            self.floor = self._entries[0][0]
        self._entries.append((revision, events))

    def after(self, since: int) -> list[tuple[int, list[JSON]]]:
        """The entries newer than ``since``, oldest first (a watcher that keeps
        up looks only at what it has not seen, however long the history)."""
        newer = []
        for entry in reversed(self._entries):
            if entry[0] <= since:
                break
            newer.append(entry)
        newer.reverse()
        return newer


@dataclass
class _Waiters:
    """Who waits for what: a wake-up per waiting watch, by host."""

    by_host: dict[str, set[threading.Event]] = field(default_factory=dict)

    def add(self, host: str, wake: threading.Event) -> None:
        self.by_host.setdefault(host, set()).add(wake)

    def remove(self, host: str, wake: threading.Event) -> None:
        waiting = self.by_host.get(host)
        if waiting is not None:
            waiting.discard(wake)
            if not waiting:
                del self.by_host[host]

    def wake(self, hosts: list[str] | None) -> None:
        """Wake the watchers of ``hosts`` (None: everyone)."""
        groups = (
            self.by_host.values() if hosts is None else (self.by_host.get(h, ()) for h in hosts)
        )
        for waiting in groups:
            for wake in waiting:
                wake.set()


class WatchHub:
    """The controller's one reader of the change log, and the long polls it serves."""

    def __init__(
        self, store: Store, history: int = DEFAULT_HISTORY, host_history: int = HOST_HISTORY
    ) -> None:
        self.store = store
        self._sizes = (history, host_history)
        self._shared = History(history, 0)
        self._own: dict[str, History] = {}
        self._lock = threading.Lock()
        # Notified whenever the reader has read further (for watches that
        # must first see what the store already holds).
        self._advanced = threading.Condition(self._lock)
        self._waiters = _Waiters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Everything after ``_start`` is in the histories (above their floors);
        # before it, the store serves.
        self._start = 0
        self._revision = 0
        self._gateways: set[str] = set()
        # Anycast group key -> its member ports (kept from the change log).
        self._members: dict[str, set[str]] = {}
        # Changes decoded, watchers woken: what the fan-out costs, for tests and benches.
        self.decoded = 0
        self.wakeups = 0

    # The reader -----------------------------------------------------------------

    def start(self) -> None:
        """Start the reader (idempotent): it follows the store from its current revision."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            gateways, revision = self.store.range(keys.GATEWAYS)
            self._gateways = {kv.key[len(keys.GATEWAYS) :] for kv in gateways}
            groups, _ = self.store.range(keys.ANYCAST)
            self._members = {kv.key: set(kv.value.get("members", ())) for kv in groups}
            self._reset(revision)
            self._thread = threading.Thread(target=self._follow, name="watch-hub", daemon=True)
            self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Stop the reader and end every waiting watch (``wait``: for the reader to end)."""
        self._stop.set()
        with self._lock:
            self._waiters.wake(None)
        if wait and self._thread is not None:
            self._thread.join(timeout=_READ_SLICE_S * 3)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                events, seen = self.store.watch("/", self._revision, _READ_SLICE_S)
                if seen > self._revision:
                    self._publish(events, seen)
            except StoreError as exc:
                # Fell behind the kept history (or the store failed): start over
                # from now; the watches that were behind catch up from the store.
                log.warning("watch fan-out: %s; following from the current revision", exc)
                self._restart()
            except Exception:  # a closed store, a bug: the next watch starts a new reader
                if not self._stop.is_set():
                    log.exception("watch fan-out: reading the change log failed")
                    self._restart()
                return

    def _restart(self) -> None:
        try:
            revision = self.store.revision()
        except Exception:
            self._stop.wait(_RETRY_S)
            return
        with self._lock:
            self._reset(revision)
            self._waiters.wake(None)

    def _reset(self, revision: int) -> None:
        self._shared = History(self._sizes[0], revision)
        self._own.clear()
        self._start = self._revision = revision

    def _publish(self, events: list[Event], seen: int) -> None:
        """Decode one batch once, for every host it concerns, and wake those hosts."""
        shared, by_host = self._decode(events) if events else ([], {})
        with self._lock:
            if shared:
                self._shared.add(seen, shared)
            for host, found in by_host.items():
                if host not in self._own:
                    self._own[host] = History(self._sizes[1], self._start)
                self._own[host].add(seen, found)
            self._revision = seen
            self._advanced.notify_all()
            if shared or by_host:
                hosts = None if shared else list(by_host)
                self._waiters.wake(hosts)
                self.wakeups += sum(
                    len(self._waiters.by_host.get(h, ())) for h in hosts or self._waiters.by_host
                )

    def _decode(self, events: list[Event]) -> tuple[list[JSON], dict[str, list[JSON]]]:
        anycast = self._index(events)
        self.decoded += len(events)
        by_host = {}
        for host in concerned_hosts(self.store, events) | self._gateways:
            found = host_events(self.store, events, host, host in self._gateways, anycast)
            if found:
                by_host[host] = found
        return shared_events(events), by_host

    def _index(self, events: list[Event]) -> bool:
        """Follow the gateways and the anycast groups' members; whether the
        batch may change which groups a host sees (a group or a member changed:
        only then are the groups read from the store)."""
        anycast = False
        for e in events:
            if e.key.startswith(keys.GATEWAYS):
                name = e.key[len(keys.GATEWAYS) :]
                (self._gateways.add if e.type == "put" else self._gateways.discard)(name)
            elif e.key.startswith(keys.ANYCAST):
                anycast = True
                if e.value is None:
                    self._members.pop(e.key, None)
                else:
                    self._members[e.key] = set(e.value.get("members", ()))
        if anycast or not self._members:
            return anycast
        ports = {e.key.rsplit("/", 1)[-1] for e in events if e.key.startswith(_PORTS)}
        return any(ports & members for members in self._members.values())

    # The watchers ---------------------------------------------------------------

    def watch(
        self, host: str, since: int, timeout: float, stopping: threading.Event | None = None
    ) -> JSON:
        """Long-poll like ``watch_blocking``: ``host``'s events after ``since``, once there are any."""
        self.start()
        if timeout < _CATCH_UP_S:
            # A short poll must hold what was committed before it arrived, as
            # if it had read the store itself; a long one gets it as it comes.
            committed = self.store.revision()
            with self._lock:
                self._advanced.wait_for(lambda: self._revision >= committed, _CATCH_UP_S)
        with self._lock:
            behind = since < self._floor(host)
        if behind:
            # Older than the hub: the store serves what it still has (or Gone).
            answer = watch_blocking(self.store, host, since, 0)
            if answer["events"]:
                return answer
            since = answer["revision"]
        deadline = time.monotonic() + timeout
        wake = threading.Event()
        with self._lock:
            self._waiters.add(host, wake)
        try:
            while True:
                with self._lock:
                    found, revision, floor = self._collect(host, since)
                if since < floor:
                    return self.watch(host, since, max(0.0, deadline - time.monotonic()), stopping)
                if since > revision and since > self.store.revision():
                    raise Gone(
                        "ResyncRequired",
                        f"revision {since} is newer than the store ({revision}); take a new"
                        f" snapshot (GET /v1/watch?host={host})",
                    )
                remaining = deadline - time.monotonic()
                stop = self._stop.is_set() or (stopping is not None and stopping.is_set())
                if found or remaining <= 0 or stop:
                    return {"revision": max(revision, since), "events": found}
                # Woken by a batch for this host, or by stop(): no polling, so a
                # thousand idle watches cost nothing between their changes.
                wake.wait(remaining)
                wake.clear()
        finally:
            with self._lock:
                self._waiters.remove(host, wake)

    def watch_store(
        self,
        store: Store,
        host: str,
        since: int,
        timeout: float,
        stopping: threading.Event | None = None,
    ) -> JSON:
        """``watch`` in ``watch_blocking``'s shape (the store first), for wrappers of either."""
        assert store is self.store
        return self.watch(host, since, timeout, stopping)

    def _floor(self, host: str) -> int:
        own = self._own.get(host)
        return max(self._start, self._shared.floor, own.floor if own else 0)

    def _collect(self, host: str, since: int) -> tuple[list[JSON], int, int]:
        """``host``'s events after ``since`` in the histories, the hub's revision and
        ``host``'s floor."""
        own = self._own.get(host)
        entries = self._shared.after(since) + (own.after(since) if own else [])
        found = [e for _, events in entries for e in events if e["revision"] > since]
        # In store order; stable, so at one revision what everyone sees comes first.
        found.sort(key=lambda e: e["revision"])
        return found, self._revision, self._floor(host)
