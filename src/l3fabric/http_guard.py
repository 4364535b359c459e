"""Connection limits for the controller's HTTP server: slow clients and too many connections.

uvicorn closes a keep-alive connection that stays idle after a response, but
it has no deadline for a request to arrive: a client that opens a connection
and sends half a request head (slowloris), or a body one byte at a time,
holds a descriptor for ever. ``GuardedProtocol`` adds those deadlines and
a connection cap to uvicorn's httptools protocol (llhttp, in C: the h11
protocol, pure Python, cost ~0.2 ms of CPU per request, and a controller
serving 1,000 hosts answers 500 heartbeats a second):

- a request head must be complete within ``header_timeout`` of the
  connection opening or of its first byte (keep-alive), its body within
  ``body_timeout`` of the head; a trickle does not extend either deadline;
- past ``max_connections``, the connection that has waited longest for its
  request to arrive (idle, or sending slowly) is closed to make room; when
  every connection is busy with a request (long polls), the new one gets a
  503 and is closed at once.

Once a request is in, nothing here limits how long the answer takes, so a
long poll on /v1/watch is never cut.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# Descriptors the server needs besides its connections: the store (SQLite
# file, WAL, shared memory), listening sockets, the event loop, logs.
FD_RESERVE = 64
# Neutron's max_request_body_size.
DEFAULT_MAX_BODY_BYTES = 114_688
# Connections accepted in one go at most (asyncio's backlog argument).
_ACCEPT_BATCH = 256
# Batches accepted before the first one's connections are seen (measured: 2-3).
_BATCHES_IN_FLIGHT = 4


@dataclass(frozen=True)
class ServerLimits:
    """The server's defaults (see docs/api.md, "Limits"); the body limit is api/body_limit.py's."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: float = 5.0
    # 1,000 hosts hold ~2,000 (one long poll and one heartbeat connection each).
    max_connections: int = 4096


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    return soft


def fd_budget(wanted: int, fd_limit: int) -> tuple[int, int]:
    """The connection cap and the accept batch (asyncio's backlog) that fit ``fd_limit``.

    asyncio accepts up to ``backlog`` connections each time the listening
    socket is readable, and a few such batches (and the connections closed
    to make room for them) hold descriptors before the cap can act on them.
    The cap leaves room for that, or accept fails with EMFILE and the server
    stops accepting for a second.
    """
    spare = fd_limit - FD_RESERVE
    backlog = max(4, min(_ACCEPT_BATCH, spare // 16))
    cap = max(1, min(wanted, spare - _BATCHES_IN_FLIGHT * backlog))
    if cap < wanted:
        log.warning(
            "at most %d connections (descriptor limit %d); raise LimitNOFILE for %d",
            cap,
            fd_limit,
            wanted,
        )
    return cap, backlog


_BUSY_BODY = json.dumps(
    {
        "NeutronError": {
            "type": "ServiceUnavailable",
            "message": "Too many connections; try again later.",
            "detail": "",
        }
    }
).encode()
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _Guard:
    """Shared by the connections of one server: the limits and who waits for a request."""

    def __init__(self, limits: ServerLimits, cap: int) -> None:
        self.limits = limits
        self.cap = cap
        # Insertion order is the order they started waiting: the first is the oldest.
        self.waiting: dict[GuardedProtocol, None] = {}

    def evict_oldest(self) -> bool:
        """Close the connection that has waited longest for its request; False if none waits."""
        while self.waiting:
            if next(iter(self.waiting)).give_up():
                return True
        return False


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request deadlines and a connection cap (module docstring)."""

    guard: ClassVar[_Guard]
    # "head", "body" (with a deadline) or "idle" while waiting for the client, else None.
    _phase: str | None = None
    _deadline: asyncio.TimerHandle | None = None
    # What the parser waits for from the client: "head", "body", or None (a whole request).
    _reading: str | None = "head"

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.guard.cap and not self.guard.evict_oldest():
            log.warning("connection refused: %d connections, all busy", len(self.connections))
            transport.write(_BUSY)
            transport.close()
            return
        self._track()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    # The parser's callbacks, which say where the client's side of a request is.
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading = "head"

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._reading = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading = None

    def on_response_complete(self) -> None:
        if self._reading is None and not self.pipeline:
            self._reading = "head"  # the next request's, which may not come
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self._phase is None and self._reading == "head":
            # Idle between requests: uvicorn's keep-alive timeout closes it, and
            # it may be closed to make room; its first byte starts the head deadline.
            self._phase = "idle"
            self.guard.waiting[self] = None
        else:
            self._track()  # a pipelined request, or the rest of an unread body

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def _track(self) -> None:
        """Start, switch or stop the deadline after the client's side of the request moved."""
        if self.transport.is_closing():
            return
        phase = self._reading
        if phase == self._phase:
            return  # a trickle of bytes does not extend the deadline
        self._stop_waiting()
        self._phase = phase
        if phase is not None:
            limits = self.guard.limits
            timeout = limits.header_timeout if phase == "head" else limits.body_timeout
            self._deadline = self.loop.call_later(timeout, self.give_up)
            self.guard.waiting[self] = None

    def _stop_waiting(self) -> None:
        self._phase = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.guard.waiting.pop(self, None)

    def give_up(self) -> bool:
        """Close a connection whose client is too slow (or to make room); False if it was."""
        self._stop_waiting()
        if self.transport.is_closing():
            return False
        self.transport.close()
        return True


def guarded_protocol(limits: ServerLimits, cap: int) -> type[GuardedProtocol]:
    """A protocol class for one server (``uvicorn.Config(http=...)``)."""
    attrs: dict[str, Any] = {"guard": _Guard(limits, cap)}
    return type("ServerHttpProtocol", (GuardedProtocol,), attrs)
