"""Between passes: the fabric sessions gate what goes upstream; a dead BIRD ends reply steering.

A thread polls the gateway's BIRD (``show protocols``, every ``POLL_S``) for two things
a pass every 10 s would see too late:

- **Fabric ready** (``fabric_ready``): the gateway announces its public
  aggregates and the SNAT pool upstream only while it has the fabric's routes
  (docs/gateway.md, "Failure modes"). Measured in the lab after a gateway's
  links came back: its upstream session, and with it the pool, was up 0.96 s
  later, its first route to a VM 1.14 s and its last 1.92 s later; the
  replies the internet sent it in between had nowhere to go. So the upstream
  export waits for the fabric sessions (BGP Established: the peer's routes
  follow within milliseconds): ready once all of them are up, or
  ``SETTLE_S`` after the first one came up (a host that is down must not
  keep the gateway silent forever), until none is up. A gateway with no
  fabric session at all has nothing to wait for. When the gate flips, the loop is woken: its pass
  renders the upstream export from it (``gateway/bird.py``), a reconfigure
  that re-exports without restarting the session.
- **BIRD dead** (killed, crashed): its kernel routes stay, among them the
  pool via the pair's peer in the steering table, which BFD no longer
  checks: replies would go on being steered to a peer that may die. So the
  steering route is removed at once (replies fall back to this gateway's
  conntrack, which has the synced state) and the loop is woken (it restarts
  BIRD, whose BFD session puts the route back once the peer answers).

The poll reads BIRD's own state (session states and since-times), so an
agent that restarts next to a running BIRD gets the same answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from l3fabric.poller import Poller
from l3fabric.routing.bird_control import BirdError, ProtocolStatus, parse_protocols
from l3fabric.routing.bird_process import BirdProcess

log = logging.getLogger(__name__)

POLL_S = 0.1
# Seconds after the first fabric session came up before the gateway announces
# upstream even though others are still down (their hosts may be down for good).
SETTLE_S = 5.0
UPSTREAM_ROLE = "up"  # protocol names "up:NAME" (routing/bird_config.protocol_name)
_WORDS = {True: ("up", "on"), False: ("down", "off")}


def fabric_ready(protocols: Sequence[ProtocolStatus], now: datetime, was: bool = False) -> bool:
    """Whether the fabric sessions among ``protocols`` are up enough to announce upstream.

    ``was``: the gate's last answer. An open gate shuts only when no fabric
    session is left: one host's session going down (a host restarting)
    must not withdraw the gateway's aggregates while the others deliver.
    """
    fabric = [p for p in protocols if p.proto == "BGP" and p.name.split(":", 1)[0] != UPSTREAM_ROLE]
    up = [p for p in fabric if p.established]
    if len(up) == len(fabric):
        return True  # all (also: none to wait for)
    if not up:
        return False
    if was:
        return True
    first = min(_since(p) for p in up)
    return (now - first).total_seconds() >= SETTLE_S


def _since(p: ProtocolStatus) -> datetime:
    # BIRD writes local time ("timeformat protocol iso long ms"), as datetime.now() reads it.
    try:
        return datetime.fromisoformat(p.since)
    except ValueError:
        return datetime.min  # unknown: as if up long ago (never holds the gate shut)


class BirdWatch:
    """Polls ``bird``: ``ready`` (the fabric gate) and whether the process died.

    ``on_change`` (the agent's wake) runs when the gate flips or BIRD dies;
    ``on_dead`` (the steering route's removal) when BIRD is found dead.
    """

    def __init__(
        self,
        bird: BirdProcess,
        on_change: Callable[[], None],
        on_dead: Callable[[], None],
        interval_s: float = POLL_S,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.bird = bird
        self._on_change = on_change
        self._on_dead = on_dead
        self._clock = clock
        self.ready = False  # nothing known yet: a BIRD about to start has no session up
        self._dead = False
        self._lock = threading.Lock()
        self._poller = Poller("birdwatch", self.step, interval_s)

    def poll(self) -> bool:
        """Read BIRD once; True if the gate flipped or BIRD was found dead just now."""
        with self._lock:
            if not self.bird.alive():
                if self._dead:
                    return False
                log.warning("BIRD is not running: reply steering off until it is back")
                self._on_dead()  # if it fails, the next poll tries again
                self._dead, self.ready = True, False
                return True
            self._dead = False
            try:
                protocols = parse_protocols(self.bird.control.request("show protocols"))
            except (OSError, BirdError, ValueError) as exc:
                log.debug("birdwatch: reading BIRD failed: %s", exc)
                return False  # unknown: the gate stays as it was
            ready = fabric_ready(protocols, self._clock(), self.ready)
            if ready == self.ready:
                return False
            log.info("fabric sessions %s: upstream announcements %s", *_WORDS[ready])
            self.ready = ready
            return True

    def step(self) -> None:
        """One poll; the agent is woken if it changed anything."""
        if self.poll():
            self._on_change()

    def start(self) -> BirdWatch:
        self._poller.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._poller.stop(timeout)
