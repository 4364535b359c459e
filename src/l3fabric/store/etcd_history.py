"""The recent history of an etcd cluster, kept in memory from one watch per process.

A long poll is then a wait on a condition and a filter over a list, not an
etcd watch of its own: etcd streams every change to each controller once,
however many hosts poll it. Only a poll from before the kept history needs a
watch of its own (``EtcdStore`` falls back to one).

Revisions here are the store's. ``first``: every event after it is kept;
``seen``: every event up to it has arrived (a change's events arrive in one
message, and a revision is only counted once all of them are in).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable

import requests
import urllib3

from l3fabric import event_trace
from l3fabric.store.base import Event, StoreUnavailableError
from l3fabric.store.etcd_codec import BASE, event, from_etcd, stream_socket

# Pause before the feed reconnects, so a dead cluster costs no busy loop.
_RECONNECT_S = 0.2


class History:
    """Events of the whole key space after ``start``, fed by a background etcd watch."""

    def __init__(
        self, open_stream: Callable[[int], requests.Response], start: int, limit: int = 10_000
    ) -> None:
        self._open = open_stream  # a watch from an etcd revision (raises StoreUnavailableError)
        self._limit = limit
        self._cond = threading.Condition()
        self._revisions: list[int] = []
        self._events: list[Event] = []
        self.first = start
        self.seen = start
        self._closed = False
        self._reply: requests.Response | None = None
        self._thread = threading.Thread(target=self._feed, name="etcd-history", daemon=True)
        self._thread.start()

    def read(
        self, prefix: str, since: int, head: int, deadline: float, catch_up_until: float
    ) -> tuple[list[Event], int] | None:
        """Events under ``prefix`` after ``since``, once every revision up to ``head`` is in.

        Waits until there are some or ``deadline``; for history up to ``head``
        (a write the caller may have made) until ``catch_up_until`` at most.
        None if ``since`` is older than what is kept: watch etcd directly.
        """
        with self._cond:
            while True:
                if since < self.first:
                    return None
                found = self._after(prefix, since)
                seen = max(since, self.seen)
                caught_up = self.seen >= head
                now = time.monotonic()
                if caught_up and (found or now >= deadline):
                    return found, seen
                limit = deadline if caught_up else max(deadline, catch_up_until)
                if now >= limit:
                    return found, seen
                self._cond.wait(limit - now)

    def _after(self, prefix: str, since: int) -> list[Event]:
        start = bisect.bisect_right(self._revisions, since)
        return [e for e in self._events[start:] if e.key.startswith(prefix)]

    def trim(self, revision: int) -> None:
        """Forget the events up to and including ``revision`` (after a compaction)."""
        with self._cond:
            if revision <= self.first:
                return
            cut = bisect.bisect_right(self._revisions, revision)
            del self._revisions[:cut], self._events[:cut]
            self.first = revision

    def _append(self, events: list[Event]) -> None:
        with self._cond:
            self._events.extend(events)
            self._revisions.extend(e.revision for e in events)
            self.seen = max(self.seen, events[-1].revision)
            if len(self._events) > 2 * self._limit:
                # Cut between two revisions, so a kept revision is kept whole.
                self.trim(self._revisions[len(self._events) - self._limit - 1])
            self._cond.notify_all()

    def _feed(self) -> None:
        while not self._closed:
            try:
                reply = self._open(self.seen + BASE + 1)
            except StoreUnavailableError:
                time.sleep(_RECONNECT_S)
                continue
            with self._cond:
                self._reply = reply
            try:
                self._read(reply)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError):
                pass  # the member went away or went quiet: reconnect, from where we are
            finally:
                reply.close()
            if not self._closed:
                time.sleep(_RECONNECT_S)

    def _read(self, reply: requests.Response) -> None:
        for line in reply.iter_lines(chunk_size=None):
            if self._closed:
                return
            if not line:
                continue
            result = json.loads(line).get("result", {})
            compacted = int(result.get("compact_revision") or 0)
            if compacted:
                # Offline past a compaction: what was missed is gone; keep what follows.
                with self._cond:
                    self._revisions.clear()
                    self._events.clear()
                    self.first = self.seen = from_etcd(compacted) - 1
                return
            events = [event(raw) for raw in result.get("events") or []]
            if event_trace.enabled:
                for e in events:
                    if e.key.startswith("/neutron/ports/") and e.prev_value is None:
                        event_trace.mark("feed", event_trace.port_id(e.key))
            if events:
                self._append(events)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            sock = stream_socket(self._reply) if self._reply is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)  # wakes the feed out of its blocking read
        self._thread.join(5)
