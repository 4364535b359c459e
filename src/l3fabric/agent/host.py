"""The host agent: one level-triggered loop converging a compute host to the controller's view.

Events (a watch answer, a tap appearing, a probe verdict, a timer) only wake
the loop. Each pass is the same four steps:

1. observe (agent/observe.py): a *full* pass (start-up, the slow timer,
   after any failure) re-reads the kernel, nftables and BIRD, so drift is
   repaired; an *incremental* pass (any other wake-up) starts from what the
   last pass left and re-reads only the taps whose link changed;
2. ``plan.desired_state``: the whole desired state, pure (ports whose object
   did not change are not converted again);
3. ``plan.plan``: the ordered operations, pure; none on a host that is right,
   so a restarted agent changes nothing;
4. ``execute.run``: the appliers (agent/appliers.py) carry them out; the
   pass's metrics (per step: seconds, operations, changes, errors) go to the
   log, ``last_pass`` and ``<run dir>/passes.json``.

An incremental pass costs what the change costs: one new port on a host with
10,000 is a few requests and one BIRD configure. On exit the agent leaves
routes, rules and BIRD in place: forwarding never depends on the agent running.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from l3fabric.agent import execute
from l3fabric.agent.anycast_serving import AnycastProbes
from l3fabric.agent.appliers import (
    BirdApplier,
    GuardApplier,
    HostApplier,
    NexthopsApplier,
    RoutesApplier,
    SecurityGroupsApplier,
    TapsApplier,
)
from l3fabric.agent.bird_early import EarlyBird
from l3fabric.agent.execute import PassMetrics
from l3fabric.agent.linkwatch import LinkWatcher
from l3fabric.agent.loop import RESYNC_INTERVAL_S, ReconcileAgent
from l3fabric.agent.observe import HostReader
from l3fabric.agent.observed import Observed
from l3fabric.agent.plan import (
    DesiredHost,
    after,
    changed_ports,
    desired_state,
    plan,
    statuses,
)
from l3fabric.client import HostState
from l3fabric.dataplane.links import Links, tap_name
from l3fabric.dataplane.nexthops import HOST_BUCKETS, ResilientParams, ResilientRoutes
from l3fabric.dataplane.nft import AntiSpoofing
from l3fabric.dataplane.routes import EndpointRoutes, install_protocol_name
from l3fabric.dataplane.secgroups import SecurityGroupsTable

log = logging.getLogger(__name__)

HOST_PARAMS = ResilientParams(buckets=HOST_BUCKETS)
# A host whose events never leave the timer a quiet interval still gets a
# full pass this many resync intervals after the last one.
FULL_PASS_BACKSTOP = 3

__all__ = ["RESYNC_INTERVAL_S", "HostAgent", "PassMetrics"]


class HostAgent(ReconcileAgent):
    """Runs the reconcile loop for host ``host`` in the current network namespace."""

    def __init__(
        self,
        host: str,
        api_url: str,
        run_dir: str | Path,
        resync_interval: float = RESYNC_INTERVAL_S,
    ) -> None:
        super().__init__(host, api_url, run_dir, resync_interval)
        self.host = host
        self.run_dir = Path(run_dir)
        self.statuses: dict[str, str] = {}
        # What the last pass left (None: the next pass re-reads everything).
        self._model: Observed | None = None
        self._desired: DesiredHost | None = None
        self._changed_taps: set[str] = set()
        self._all_taps_changed = False
        self._changes_lock = threading.Lock()
        self._early_bird: EarlyBird | None = None
        self._last_full = 0.0  # time.monotonic() of the last full pass

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        install_protocol_name()
        watcher = LinkWatcher(self._taps_changed).start()
        # BIRD's start and the BGP session overlap with the snapshot's fetch.
        self._early_bird = EarlyBird(
            self.api_url, self.host, self.bird.alive, self.converge_bird
        ).start()
        early = self._early_bird
        try:
            with (
                Links() as links,
                EndpointRoutes() as routes,
                ResilientRoutes(params=HOST_PARAMS) as rr,
            ):
                nft = AntiSpoofing()
                sg = SecurityGroupsTable()
                self._probes = AnycastProbes(self.host, self.wake, self.report_soon)
                self._reader = HostReader(
                    links, routes, rr, nft, sg, self._probes, self.bird, early.done,
                    controller=urlsplit(self.api_url).hostname or "",
                )  # fmt: skip
                self._appliers: dict[str, execute.Applier] = {
                    "host": HostApplier(),
                    "nft": GuardApplier(nft),
                    "secgroups": SecurityGroupsApplier(sg),
                    "taps": TapsApplier(links),
                    "routes": RoutesApplier(routes),
                    "nexthops": NexthopsApplier(rr),
                    "probes": self._probes,
                    "bird": BirdApplier(self.converge_bird, early.wait),
                }
                try:
                    yield
                finally:
                    self._probes.close()
        finally:
            watcher.stop()

    def _taps_changed(self, names: set[str] | None) -> None:
        with self._changes_lock:
            if names is None:
                self._all_taps_changed = True
            else:
                self._changed_taps |= names
        self.wake()

    def pass_once(self, timed: bool) -> list[str]:
        with self._changes_lock:
            changed, self._changed_taps = self._changed_taps, set()
            # The timer's pass re-reads everything: drift (a route or rule
            # deleted by hand) is repaired, also on a host whose events never
            # leave the timer a quiet interval.
            due = time.monotonic() - self._last_full >= FULL_PASS_BACKSTOP * self.resync_interval
            full = timed or due or self._all_taps_changed or self._model is None
            self._all_taps_changed = False
        return self.reconcile(self.watcher.state(), full, changed).errors

    def send_heartbeat(self) -> None:
        self._probes.flush_reports(self.client)
        self.client.heartbeat(
            self.host, ports=dict(self.statuses), bgp=self.bgp_sessions(), agent=self.about()
        )

    def reconcile(
        self, view: HostState, full: bool = True, changed: Collection[str] = ()
    ) -> PassMetrics:
        """One pass: observe, desired state, plan, apply. ``changed``: taps to re-read (incremental)."""
        metrics = PassMetrics(
            number=self.passes + 1, kind="full" if full else "incremental", started_at=time.time()
        )
        started = begun = time.monotonic()
        try:
            if full or self._model is None:
                self._last_full = time.monotonic()
                observed = self._reader.full(self._model)
            else:
                observed = self._reader.refresh(self._model, {*changed, *self._port_taps(view)})
        except Exception as exc:
            metrics.step("observe").errors.append(f"observe: {exc}")
            self._model = None
            return self._publish(metrics, started)
        metrics.timed("observe", begun)
        desired, blocked, failed = self.plan_and_run(
            metrics,
            lambda: desired_state(self.host, view, observed, self._desired),
            lambda desired: plan(desired, observed),
            self._appliers,
        )
        # After a failure the kernel may hold anything in between: re-read it.
        self._model = None if failed else after(desired, observed)
        self._desired = desired
        new_statuses = statuses(desired, blocked.taps)
        if new_statuses != self.statuses:
            self.statuses = new_statuses
            self.report_soon()
        return self._publish(metrics, started)

    def _port_taps(self, view: HostState) -> set[str]:
        """The taps of ports that changed since the last pass (a port can come after its tap)."""
        found: set[str] = set()
        for port_id in changed_ports(view, self._desired):
            with contextlib.suppress(ValueError):
                found.add(tap_name(port_id))
        return found

    def _publish(self, metrics: PassMetrics, started: float) -> PassMetrics:
        return self.publish(metrics, started, f"{metrics.routes_changed} route changes")
