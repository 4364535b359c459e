"""The gateway's anycast routes: what BGP learned, weighted per member, as resilient nexthop groups.

Hosts announce an anycast /32 (/128) while they have healthy local members
and tag each announcement with the number of them (``routing.anycast_marker``).
The gateway's BIRD keeps one path per announcing peer; ``AnycastSync`` reads
all of them (``routing.anycast_routes``) and keeps one kernel resilient
nexthop group per prefix (``dataplane.nexthops.ResilientRoutes``) in step:

- one member per distinct (next hop, interface), weighted by the sum of the
  healthy counts of the paths through it, so each member VM, not each host,
  is one equal share (behind a ToR several hosts' paths share a next hop);
- a path without a count is ignored; a prefix with no counted path has no group;
- a change is an in-place edit of the group, so the flows of the members
  that stay keep their member.

Why a poll and not BIRD's kernel route: a changed count (a member of a host
going unhealthy) changes no next hop of the route BIRD installs, so nothing
shows in the kernel. BIRD is asked every ``POLL_INTERVAL_S`` (one socket
round trip, a few ms); only a difference from the last programmed state
touches the kernel, and every change is logged with its time.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any, Protocol

from l3fabric.agent.ops import Op, Outcome
from l3fabric.dataplane.ifnames import interface_names
from l3fabric.dataplane.netlink_batch import Network
from l3fabric.dataplane.nexthops import (
    MAX_WEIGHT,
    Member,
    NexthopPlan,
    NexthopProgrammingError,
    ResilientRoutes,
)
from l3fabric.gateway.ops import AnycastGroupsSet
from l3fabric.poller import Poller
from l3fabric.routing.anycast_routes import LearnedPath, learned_anycast
from l3fabric.routing.bird_control import BirdControl, BirdError

log = logging.getLogger(__name__)

# BFD notices a dead host in ~0.3 s (100 ms x 3); a poll every 0.1 s adds at
# most that much before the group follows.
POLL_INTERVAL_S = 0.1
# Even without a difference, converge against the kernel this often, and this
# soon after a failed change. The kernel itself removes a nexthop whose link
# loses carrier; if the link is back before BGP noticed anything, the poll
# sees no difference and only this puts the member back.
RESYNC_S = 2.0
RETRY_S = 1.0

Desired = dict[str, list[Member]]


class Routes(Protocol):
    """What AnycastSync needs of ``ResilientRoutes``."""

    def converge(self, desired: Mapping[str, Sequence[Member]]) -> NexthopPlan: ...
    def read(self) -> Mapping[Network, Sequence[tuple[str | None, int, int]]]: ...
    def close(self) -> None: ...


def integer_weights(shares: Mapping[Any, Fraction]) -> dict[Any, int]:
    """Integer weights in the ratio of ``shares`` (all > 0), none above MAX_WEIGHT.

    Exact while the common denominator allows (a 2/3 and a 1/3 share: 2 and
    1); beyond MAX_WEIGHT the ratio is rounded and no member drops below 1.
    """
    if not shares:
        return {}
    scale = math.lcm(*(s.denominator for s in shares.values()))
    weights = {k: int(s * scale) for k, s in shares.items()}
    top = max(weights.values())
    if top > MAX_WEIGHT:
        weights = {k: max(1, round(w * MAX_WEIGHT / top)) for k, w in weights.items()}
    return weights


def anycast_members(learned: Mapping[str, Sequence[LearnedPath]]) -> Desired:
    """The resilient group members per prefix: ``{prefix: [(next hop, ifname, weight)]}``.

    Each path's healthy count is spread over its next hops in the ratio of
    their BIRD weights (a multipath route to one host), then summed per
    (next hop, interface).
    """
    desired: Desired = {}
    for prefix, paths in learned.items():
        shares: dict[tuple[str | None, str], Fraction] = {}
        for path in paths:
            if path.healthy is None or path.healthy < 1 or not path.hops:
                continue
            total = sum(h.weight for h in path.hops)
            for hop in path.hops:
                key = (hop.address, hop.ifname)
                shares[key] = shares.get(key, Fraction(0)) + Fraction(path.healthy * hop.weight, total)  # fmt: skip
        weights = integer_weights(shares)
        if weights:
            desired[prefix] = sorted(
                ((address, ifname, w) for (address, ifname), w in weights.items()),
                key=lambda m: (m[1], m[0] or ""),
            )
    return desired


def describe(members: Sequence[Member] | None) -> str:
    """``172.16.0.1@l3f-f0 x2, 172.16.0.3@l3f-f1 x1`` (or ``-``) for logs."""
    if not members:
        return "-"
    return ", ".join(f"{gw or 'dev'}@{dev} x{w}" for gw, dev, w in members)


class AnycastSync:
    """Keeps this namespace's anycast groups equal to what ``control``'s BIRD learned.

    ``step()`` is one poll; ``start()`` runs it every ``interval_s`` in a
    daemon thread until ``stop()``. ``routes`` makes the kernel side (default:
    ``ResilientRoutes()`` in the current namespace), in the thread.
    """

    def __init__(
        self,
        control: BirdControl,
        routes: Callable[[], Routes] | None = None,
        interval_s: float = POLL_INTERVAL_S,
        resync_s: float = RESYNC_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0 or resync_s <= 0:
            raise ValueError("anycast poll and resync intervals must be positive")
        self.control = control
        self.interval_s = interval_s
        self.resync_s = resync_s
        self._make_routes: Callable[[], Routes] = routes or ResilientRoutes
        self._routes: Routes | None = None
        self._clock = clock
        self._programmed: Desired = {}
        self._next_full = 0.0  # the first step converges against the kernel
        self._lock = threading.Lock()  # the status fields
        self._write_lock = threading.Lock()  # the kernel side
        self._poller = Poller("anycast", self.step, interval_s, clock)
        self.changed_at: float | None = None  # wall clock of the last kernel change
        self.errors: list[str] = []

    # One poll ------------------------------------------------------------------------

    def step(self) -> bool:
        """Read BIRD, converge the kernel if anything differs; True if the kernel changed.

        While BIRD does not answer, nothing is touched: its routes (and ours)
        stay, as forwarding never depends on a control process running.
        """
        try:
            learned = learned_anycast(self.control)
        except (OSError, BirdError) as exc:
            log.debug("anycast: reading BIRD failed: %s", exc)
            return False
        desired = anycast_members(learned)
        if desired == self._programmed and self._clock() < self._next_full:
            return False
        return self.converge(desired)

    def converge(self, desired: Desired) -> bool:
        """Make the kernel's groups ``desired`` (in place); True if the kernel changed.

        The poll and the agent's pass (``apply``) both come here: one writer,
        one lock, so their nexthop ids never collide.
        """
        with self._write_lock:
            if self._routes is None:
                self._routes = self._make_routes()
            errors: list[str] = []
            try:
                plan = self._routes.converge(desired)
            except NexthopProgrammingError as exc:
                plan = exc.plan
                errors = [str(f) for f in exc.failures]
                log.warning("anycast: %s", exc)
            self._next_full = self._clock() + (RETRY_S if errors else self.resync_s)
            changed = not plan.empty
            if desired != self._programmed or changed:
                self._log_changes(desired)
            with self._lock:
                self._programmed = desired
                self.errors = errors
                if changed:
                    self.changed_at = time.time()
        return changed

    def apply(self, op: Op) -> Outcome:
        """The ``anycast`` applier of the gateway's plan (gateway/ops.py AnycastGroupsSet)."""
        assert isinstance(op, AnycastGroupsSet)
        self.converge({prefix: list(members) for prefix, members in op.groups})
        with self._lock:
            return Outcome(errors=tuple(f"anycast: {e}" for e in self.errors))

    def kernel(self) -> dict[str, frozenset[Member]]:
        """The groups the kernel holds now, by prefix: (gateway, interface, weight) each."""
        with self._write_lock:
            if self._routes is None:
                self._routes = self._make_routes()
            found = self._routes.read()
        names = interface_names({oif for hops in found.values() for _, oif, _ in hops})
        return {
            str(net): frozenset((gw, names[oif], w) for gw, oif, w in hops if oif in names)
            for net, hops in found.items()
        }

    def _log_changes(self, desired: Desired) -> None:
        for prefix in sorted(set(desired) | set(self._programmed)):
            old, new = self._programmed.get(prefix), desired.get(prefix)
            if old != new:
                log.info("anycast %s: %s -> %s", prefix, describe(old), describe(new))

    # The thread ----------------------------------------------------------------------

    def start(self) -> AnycastSync:
        self._poller.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._poller.stop(timeout)
        with self._write_lock:
            if self._routes is not None:
                self._routes.close()
                self._routes = None

    # Status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """For the heartbeat: every programmed prefix with its next hops and weights."""
        with self._lock:
            programmed, errors, changed_at = (
                dict(self._programmed),
                list(self.errors),
                self.changed_at,
            )
        return {
            "prefixes": [
                {
                    "prefix": prefix,
                    "next_hops": [{"via": gw, "dev": dev, "weight": w} for gw, dev, w in members],
                }
                for prefix, members in sorted(programmed.items())
            ],
            "changed_at": changed_at,
            "errors": errors,
        }
