"""The host agent's anycast work between passes: probes, resilient routes, announcement, reports.

``AnycastServing`` is what ``HostAgent`` calls from its reconcile pass:

- ``sources(state)``: the group addresses each member tap may send from (the
  guard is applied before any route);
- ``lower(state, ready_taps)``: plans the pass and lowers ``announced`` to
  it before any route changes (the pass withdraws in BIRD first);
- ``converge(state, ready_taps)``: restarts/stops probes for the current
  members, programs one resilient nexthop group per served prefix (every
  healthy member tap one equal share; no healthy member: no route) and then
  records what BIRD may announce;
- ``announced``: ``{prefix: healthy members}`` whose route is in the kernel.
  The pass renders BIRD from it, so BIRD never announces a prefix before its
  route exists; decreases take effect before the routes change, increases
  after;
- ``flush_reports(client)``: sends queued health transitions to the
  controller, from the agent's report thread (a slow controller never holds
  up the loop); a failed report is retried with the next heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from l3fabric.agent import anycast
from l3fabric.agent.health import HealthProbes
from l3fabric.client import ApiError, FabricClient, HostState
from l3fabric.dataplane.nexthops import NexthopProgrammingError, ResilientRoutes

log = logging.getLogger(__name__)


class AnycastServing:
    """Anycast on host ``host``: owns the probes and the anycast routes (protocol 97)."""

    def __init__(
        self,
        host: str,
        routes: ResilientRoutes,
        wake: Callable[[], None],
        report_soon: Callable[[], None],
        probes: HealthProbes | None = None,
    ) -> None:
        self.host = host
        self.routes = routes
        self._wake = wake
        self._report_soon = report_soon
        self.probes = probes or HealthProbes(self._changed)
        # What the kernel serves at start: kept (and announced) until the
        # probes say otherwise, so an agent restart changes nothing.
        self._presumed = self._kernel_taps()
        self.announced: dict[str, int] = {p: len(t) for p, t in self._presumed.items() if t}
        self._pending: dict[str, dict[str, str]] = {}  # group -> port -> verdict
        self._planned: tuple[frozenset[str], anycast.AnycastPlan] | None = None  # by ``lower``
        self._lock = threading.Lock()

    def _changed(self, target: anycast.ProbeTarget, healthy: bool) -> None:
        log.info(
            "anycast %s member %s (%s): %s",
            target.group,
            target.port_id,
            target.address,
            "healthy" if healthy else "unhealthy",
        )
        with self._lock:
            self._pending.setdefault(target.group, {})[target.port_id] = (
                "healthy" if healthy else "unhealthy"
            )
        self._wake()
        self._report_soon()

    def _kernel_taps(self) -> dict[str, set[str]]:
        try:
            kernel = self.routes.read()
        except OSError as exc:
            log.warning("reading the anycast routes failed: %s", exc)
            return {}
        found: dict[str, set[str]] = {}
        for net, hops in kernel.items():
            for _, oif, _ in hops:
                with contextlib.suppress(OSError):
                    found.setdefault(str(net), set()).add(socket.if_indextoname(oif))
        return found

    def _plan(self, state: HostState, ready_taps: set[str]) -> anycast.AnycastPlan:
        return anycast.plan(
            self.host,
            state.ports,
            state.anycast.values(),
            ready_taps,
            self.probes.verdicts(),
            self._presumed,
        )

    def sources(self, state: HostState) -> dict[str, list[str]]:
        """Tap -> group addresses it may send from (independent of readiness and health)."""
        if not state.anycast:
            return {}
        return self._plan(state, set()).sources

    def lower(self, state: HostState, ready_taps: set[str]) -> bool:
        """Plan the pass and lower ``announced`` to it (withdrawals, smaller counts) at once.

        The pass gives BIRD the lowered announcement before any route changes
        (its "withdraw" step), so peers stop sending before a route shrinks;
        increases wait for ``converge``. True if anything was lowered.
        """
        self._planned = (frozenset(ready_taps), self._plan(state, ready_taps))
        wanted = self._planned[1].announce
        lowered = {p: min(n, wanted[p]) for p, n in self.announced.items() if p in wanted}
        changed = lowered != self.announced
        self.announced = lowered
        return changed

    def converge(self, state: HostState, ready_taps: set[str]) -> list[str]:
        """Probes, routes and ``announced`` for this pass; returns what failed."""
        planned = self._planned
        self._planned = None
        # The plan from ``lower`` unless the ready taps changed since (a route failed).
        plan = (
            planned[1]
            if planned is not None and planned[0] == ready_taps
            else self._plan(state, ready_taps)
        )
        failed = list(plan.errors) + self.probes.update(plan.probes)
        if self._presumed and set(plan.probes) <= set(self.probes.verdicts()):
            self._presumed = {}  # every member has its own verdict now
        wanted = plan.announce
        try:
            self.routes.converge(plan.routes())
            self.announced = wanted
        except (NexthopProgrammingError, OSError) as exc:
            failed.append(f"anycast routes: {exc}")
            self.announced = self._installed(wanted)
        return failed

    def _installed(self, wanted: dict[str, int]) -> dict[str, int]:
        """``wanted`` limited to what the kernel holds (after a partial failure)."""
        try:
            kernel = {str(net): len(hops) for net, hops in self.routes.read().items()}
        except OSError:
            return {}
        return {p: min(n, kernel[p]) for p, n in wanted.items() if kernel.get(p)}

    def flush_reports(self, client: FabricClient) -> None:
        """Send the queued health transitions; keep those that failed for the next try."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for group, members in pending.items():
            try:
                client.report_anycast_status(group, self.host, members)
                continue
            except ApiError as exc:
                if exc.status < 500:
                    # The group is gone or the port left it: nothing to tell any more.
                    log.info("anycast status report for %s refused: %s", group, exc)
                    continue
                log.warning("anycast status report for %s failed: %s", group, exc)
            except Exception as exc:
                log.warning("anycast status report for %s failed: %s", group, exc)
            with self._lock:
                # Newer verdicts that arrived meanwhile win.
                self._pending[group] = {**members, **self._pending.get(group, {})}

    def close(self) -> None:
        self.probes.stop()
