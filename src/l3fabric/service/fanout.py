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

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from l3fabric import event_trace, keys
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


# ``_step``'s answer when the host's history has moved past the watch's revision.
_BEHIND: JSON = {}


class _LoopWake:
    """A waiting ``watch_async``: ``set`` from any thread wakes it on its event loop.

    A bare future and a timer, not ``asyncio.wait_for`` on an ``asyncio.Event``
    (a task, an event and their futures per wait): a thousand waiting polls are
    that many fewer objects for each garbage collection to walk, and a wake-up
    resumes the poll two turns of the loop sooner (no task to finish first)."""

    __slots__ = ("_future", "_loop", "_set")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._set = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self, timeout: float) -> None:
        """Until ``set`` (or already set since the last wait) or ``timeout``; then clear."""
        if not self._set:
            self._future = self._loop.create_future()
            timer = self._loop.call_later(timeout, self._wake)
            try:
                await self._future
            finally:
                timer.cancel()
                self._future = None
        self._set = False


# What wakes a waiting watch: a thread's event, or a ``_LoopWake``.
_Wake = threading.Event | _LoopWake


@dataclass
class _Waiters:
    """Who waits for what: a wake-up per waiting watch, by host."""

    by_host: dict[str, set[_Wake]] = field(default_factory=dict)

    def add(self, host: str, wake: _Wake) -> None:
        self.by_host.setdefault(host, set()).add(wake)

    def remove(self, host: str, wake: _Wake) -> None:
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
                if event_trace.enabled:
                    _trace_new_ports("read", events)
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
                if event_trace.enabled:
                    _trace_new_ports("publish", events)
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

    @property
    def revision(self) -> int:
        """The revision the reader has read up to."""
        return self._revision

    def watch(
        self, host: str, since: int, timeout: float, stopping: threading.Event | None = None
    ) -> JSON:
        """Long-poll like ``watch_blocking``: ``host``'s events after ``since``, once there are any."""
        deadline = time.monotonic() + timeout
        answer, since = self._from_store(host, since, timeout)
        if answer is not None:
            return answer
        wake = threading.Event()
        with self._lock:
            self._waiters.add(host, wake)
        try:
            while True:
                answer, remaining = self._step(host, since, deadline, stopping)
                if answer is _BEHIND:
                    return self.watch(host, since, remaining, stopping)
                if answer is not None:
                    return answer
                # Woken by a batch for this host, or by stop(): no polling, so a
                # thousand idle watches cost nothing between their changes.
                wake.wait(remaining)
                wake.clear()
        finally:
            with self._lock:
                self._waiters.remove(host, wake)

    async def watch_async(
        self, host: str, since: int, timeout: float, stopping: threading.Event | None = None
    ) -> JSON:
        """``watch`` on the event loop: a waiting watch holds no thread (a thousand
        long polls held a thousand threads, and a thread pool of that size queued
        any watch beyond it for up to a whole poll). The store is read in a thread,
        only when the hub cannot answer (not started, a short poll, behind it)."""
        deadline = time.monotonic() + timeout
        if self._needs_store(host, since, timeout):
            answer, since = await asyncio.to_thread(self._from_store, host, since, timeout)
            if answer is not None:
                return answer
        wake = _LoopWake(asyncio.get_running_loop())
        with self._lock:
            self._waiters.add(host, wake)
        try:
            while True:
                if since > self._revision:  # ahead of the hub: the step reads the store
                    step = await asyncio.to_thread(self._step, host, since, deadline, stopping)
                else:
                    step = self._step(host, since, deadline, stopping)
                answer, remaining = step
                if answer is _BEHIND:
                    return await self.watch_async(host, since, remaining, stopping)
                if answer is not None:
                    if event_trace.enabled:
                        for e in answer["events"]:
                            event_trace.mark("answer", e["id"])
                    return answer
                await wake.wait(remaining)
        finally:
            with self._lock:
                self._waiters.remove(host, wake)

    def _needs_store(self, host: str, since: int, timeout: float) -> bool:
        """Whether ``_from_store`` has anything to do (else it is a no-op)."""
        if self._thread is None or not self._thread.is_alive() or timeout < _CATCH_UP_S:
            return True
        with self._lock:
            return since < self._floor(host)

    def _from_store(self, host: str, since: int, timeout: float) -> tuple[JSON | None, int]:
        """What the hub cannot serve: start it, wait for it to reach what a short poll
        must hold, and the events of a watch older than the hub, from the store.
        Returns an answer, or the revision to wait in the hub from."""
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
                return answer, since
            since = answer["revision"]
        return None, since

    def _step(
        self, host: str, since: int, deadline: float, stopping: threading.Event | None
    ) -> tuple[JSON | None, float]:
        """One look at the histories: an answer, ``_BEHIND`` (the host's history moved
        past ``since``: start over), or None (wait); and the time left. Reads the
        store only when ``since`` is ahead of the hub."""
        with self._lock:
            found, revision, floor = self._collect(host, since)
        remaining = max(0.0, deadline - time.monotonic())
        if since < floor:
            return _BEHIND, remaining
        if since > revision and since > self.store.revision():
            raise Gone(
                "ResyncRequired",
                f"revision {since} is newer than the store ({revision}); take a new"
                f" snapshot (GET /v1/watch?host={host})",
            )
        stop = self._stop.is_set() or (stopping is not None and stopping.is_set())
        if found or remaining <= 0 or stop:
            return {"revision": max(revision, since), "events": found}, remaining
        return None, remaining

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


def _trace_new_ports(stage: str, events: list[Event]) -> None:
    for e in events:
        if e.key.startswith(_PORTS) and e.prev_value is None:
            event_trace.mark(stage, event_trace.port_id(e.key))
