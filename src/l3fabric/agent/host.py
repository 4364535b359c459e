"""The host agent: one level-triggered loop converging a compute host to the controller's view.

Events (a watch answer, a tap appearing, a probe verdict, a timer) only wake
the loop. Each pass is the same four steps:

1. observe (agent/observe.py): a *full* pass (start-up, the slow timer,
   after any failure) re-reads the kernel, nftables and BIRD, so drift is
   repaired; an *incremental* pass (any other wake-up) starts from what the
   last pass left and re-reads only the taps whose link changed;
2. ``plan.desired_state``: the desired state, pure; an incremental pass
   recomputes only the ports that changed or whose tap did;
3. ``plan.plan``: the ordered operations, pure; none on a host that is right,
   so a restarted agent changes nothing;
4. ``execute.run``: the appliers (agent/appliers.py) carry them out; the
   pass's metrics (per step: seconds, operations, changes, errors) go to the
   log, ``last_pass`` and ``<run dir>/passes.json``.

An incremental pass costs what the change costs: one new port on a host with
10,000 is a few netlink requests and one nftables element, no BIRD configure
(its announcement is a blackhole route BIRD learns, dataplane/announce.py). On exit the agent leaves
routes, rules and BIRD in place: forwarding never depends on the agent running.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from l3fabric.agent import execute
from l3fabric.agent.anycast_serving import AnycastProbes
from l3fabric.agent.appliers import (
    AnnounceApplier,
    BirdApplier,
    GuardApplier,
    HostApplier,
    NexthopsApplier,
    RoutesApplier,
    SecurityGroupsApplier,
    TapsApplier,
)
from l3fabric.agent.bird_early import EarlyBird
from l3fabric.agent.dhcp import DhcpServer
from l3fabric.agent.execute import PassMetrics
from l3fabric.agent.linkwatch import LinkWatcher
from l3fabric.agent.loop import RESYNC_INTERVAL_S, ReconcileAgent
from l3fabric.agent.observe import HostReader
from l3fabric.agent.observed import Observed
from l3fabric.agent.plan import (
    DesiredHost,
    EndpointCounts,
    after,
    changed_ports,
    desired_state,
    endpoint_counts,
    plan,
    status_keys,
    statuses,
)
from l3fabric.client import HostState, Urls
from l3fabric.dataplane.announce import Announcements
from l3fabric.dataplane.links import Links, tap_name
from l3fabric.dataplane.nexthops import HOST_BUCKETS, ResilientParams, ResilientRoutes
from l3fabric.dataplane.nft import AntiSpoofing
from l3fabric.dataplane.routes import EndpointRoutes, install_protocol_name
from l3fabric.dataplane.secgroups import SecurityGroupsTable
from l3fabric.nova.metadata import MetadataConfig, MetadataServer, ensure_address

log = logging.getLogger(__name__)

HOST_PARAMS = ResilientParams(buckets=HOST_BUCKETS)
# A host whose events never leave the timer a quiet interval still gets a
# full pass this many resync intervals after the last one.
FULL_PASS_BACKSTOP = 3
# A heartbeat carries the port statuses that changed since the last one the
# controller took, and every status at least this often (and at start).
FULL_REPORT_S = 30.0

__all__ = ["RESYNC_INTERVAL_S", "HostAgent", "PassMetrics"]


class HostAgent(ReconcileAgent):
    """Runs the reconcile loop for host ``host`` in the current network namespace."""

    def __init__(
        self,
        host: str,
        api_url: Urls,
        run_dir: str | Path,
        resync_interval: float = RESYNC_INTERVAL_S,
        metadata: MetadataConfig | None = None,
        dhcp: bool = True,
    ) -> None:
        """``metadata``: serve 169.254.169.254 to this host's VMs (nova/metadata.py);
        ``dhcp``: run the host's DHCP server (agent/dhcp.py)."""
        super().__init__(host, api_url, run_dir, resync_interval)
        self.metadata = metadata
        self.host = host
        self.run_dir = Path(run_dir)
        # The host's DHCP server, the applier of the plan's DHCP ops (None: --no-dhcp).
        self.dhcp = DhcpServer(self.run_dir) if dhcp else None
        self._statuses: dict[str, str] = {}
        # The ports whose status may have changed since the last heartbeat the
        # controller took (None: any, compare them all). Status dicts are
        # replaced, never edited, so the last one sent is kept without a copy.
        self._unreported: set[str] | None = None
        self._reported: dict[str, str] = {}  # what the controller last took
        self._full_report_at = -FULL_REPORT_S
        # What the last pass left (None: the next pass re-reads everything).
        self._model: Observed | None = None
        self._desired: DesiredHost | None = None
        self._changed_taps: set[str] = set()
        self._all_taps_changed = False
        # Whether the last pass's view reached the desired state:
        # only then do the watch's changed ports say what differs from it.
        self._hint_ok = False
        # endpoint_counts(): counted by each pass (by the ports it touched).
        self._counts: EndpointCounts | None = None
        self._changes_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._early_bird: EarlyBird | None = None
        self._last_full = 0.0  # time.monotonic() of the last full pass

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        # No cyclic collection until the first pass is over (it freezes what
        # it leaves): while the snapshot and the first pass build ~300,000
        # containers at 10,000 ports, each growth by a quarter set off an
        # oldest-generation walk of all of them (9 walks, 0.9-1.5 s of the
        # first pass's CPU, measured); reference counting frees as usual.
        gc.disable()
        try:
            with self._running():
                yield
        finally:
            gc.enable()

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        install_protocol_name()
        watcher = LinkWatcher(self._taps_changed).start()
        # BIRD's start and the BGP session overlap with the snapshot's fetch.
        self._early_bird = EarlyBird(
            self.controllers, self.host, self.bird.alive, self.converge_bird
        ).start()
        early = self._early_bird
        try:
            with (
                Links() as links,
                EndpointRoutes() as routes,
                Announcements() as announcements,
                ResilientRoutes(params=HOST_PARAMS) as rr,
            ):
                nft = AntiSpoofing()
                sg = SecurityGroupsTable()
                self._probes = AnycastProbes(self.host, self.wake, self.report_soon)
                self._reader = HostReader(
                    links, routes, announcements, rr, nft, sg, self._probes, self.bird, early.done,
                    controllers=self.controllers.hostnames(), dhcp=self.dhcp,
                )  # fmt: skip
                self._appliers: dict[str, execute.Applier] = {
                    "host": HostApplier(),
                    "nft": GuardApplier(nft),
                    "secgroups": SecurityGroupsApplier(sg),
                    "taps": TapsApplier(links),
                    "routes": RoutesApplier(routes),
                    "announce": AnnounceApplier(announcements),
                    "nexthops": NexthopsApplier(rr),
                    "probes": self._probes,
                    "bird": BirdApplier(self.converge_bird, early.wait),
                }
                if self.dhcp is not None:
                    self._appliers["dhcp"] = self.dhcp
                metadata = self._start_metadata()
                try:
                    yield
                finally:
                    self._probes.close()
                    if metadata is not None:
                        metadata.close()
                    # dnsmasq stays, as BIRD does: a restarted agent finds it serving.
        finally:
            watcher.stop()

    def _start_metadata(self) -> MetadataServer | None:
        """The metadata service, if asked for; a failure leaves the agent running without it."""
        if self.metadata is None:
            return None

        def ports() -> list[dict[str, Any]]:
            return list(self.watcher.state().ports.values())

        def public(port: dict[str, Any]) -> bool:
            network = self.watcher.state().networks.get(port.get("network_id", ""), {})
            return bool(network.get("router:external"))

        try:
            ensure_address(self.metadata.address)
            return MetadataServer(self.metadata, ports, public).start()
        except Exception as exc:  # OSError, pyroute2's NetlinkError: say it and go on
            log.error("metadata service not started: %s", exc)
            return None

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
        # The ports the watch changed since the last pass: what an incremental
        # pass looks at, instead of comparing every port of the view.
        metrics = self._metrics(full)
        view, hint = self.watcher.state_and_changes()
        hint, self._hint_ok = (hint if self._hint_ok else None), False
        return self.reconcile(view, full, changed, hint, metrics).errors

    def _metrics(self, full: bool) -> PassMetrics:
        kind = "full" if full else "incremental"
        return PassMetrics(number=self.passes + 1, kind=kind, started_at=time.time())

    @property
    def statuses(self) -> dict[str, str]:
        """Port id -> ACTIVE or DOWN, as the last pass left them (a new dict on each change)."""
        return self._statuses

    @statuses.setter
    def statuses(self, value: dict[str, str]) -> None:
        self._set_statuses(value, None)

    def _set_statuses(self, value: dict[str, str], keys: Collection[str] | None) -> None:
        """``value`` differs from the last statuses in ``keys`` only (None: anywhere)."""
        with self._status_lock:
            self._statuses = value
            self._unreported_too(keys)

    def _unreported_too(self, keys: Collection[str] | None) -> None:
        """``keys`` (None: every port) are to be compared at the next heartbeat (locked)."""
        if keys is None or self._unreported is None:
            self._unreported = None
        else:
            self._unreported.update(keys)

    def send_heartbeat(self) -> None:
        """Liveness, BGP sessions and the port statuses that changed (all, now and then).

        Every status in every heartbeat made the controller read 10,000 ports
        for one that changed: CPU taken from the next pass and from BIRD. The
        changes are those of the ports the passes touched since the last
        heartbeat, not a comparison of every status (~0.5 ms at 10,000).
        """
        self._probes.flush_reports(self.client)
        now = time.monotonic()
        with self._status_lock:
            current, keys, self._unreported = self._statuses, self._unreported, set()
        full = now - self._full_report_at >= FULL_REPORT_S
        reported = self._reported
        if full:
            ports = dict(current)
        else:
            candidates = current if keys is None else (k for k in keys if k in current)
            ports = {p: current[p] for p in candidates if reported.get(p) != current[p]}
        try:
            self.client.heartbeat(
                self.host, ports=ports, bgp=self.bgp_sessions(), agent=self.about()
            )
        except BaseException:
            with self._status_lock:  # not taken: compared again next time
                self._unreported_too(keys)
            raise
        self._reported = current
        if full:
            self._full_report_at = now

    def endpoint_counts(self) -> dict[str, int] | None:
        """Ports up with their tap present (expected routed) and those ACTIVE (programmed).

        A port whose VM has no tap yet is not expected: nothing can be routed to it.
        Counted by each pass from the ports it touched (each heartbeat and
        scrape asks; at 10,000 ports a count is milliseconds of the interpreter
        a pass may be waiting for).
        """
        counts = self._counts
        if counts is None:
            return None
        return {"expected": counts.expected, "programmed": counts.programmed}

    def reconcile(
        self,
        view: HostState,
        full: bool = True,
        changed: Collection[str] = (),
        hint: Collection[str] | None = None,
        metrics: PassMetrics | None = None,
    ) -> PassMetrics:
        """One pass: observe, desired state, plan, apply. ``changed``: taps to re-read (incremental).

        ``hint``: the only ports that changed since the last pass's view (None: compare all);
        ``metrics``: the pass's, begun by the caller.
        """
        metrics = metrics or self._metrics(full)
        begun = time.monotonic()
        reread: set[str] | None = None  # the taps an incremental pass re-reads
        ports: list[str] | None = None  # the ports it found changed
        try:
            if full or self._model is None:
                self._last_full = time.monotonic()
                observed = self._reader.full(self._model)
            else:
                # Once per pass: after the controller echoed 10,000 statuses
                # every object is new and each is compared (~1-2 us apiece).
                ports = changed_ports(view, self._desired, hint)
                reread = {*changed, *_taps_of(ports)}
                observed = self._reader.refresh(self._model, reread)
        except Exception as exc:
            metrics.step("observe").errors.append(f"observe: {exc}")
            self._model = None
            _freeze()  # the first pass is over: the collector runs again
            return self._publish(metrics)
        metrics.timed("observe", begun)
        desired, blocked, failed = self.plan_and_run(
            metrics,
            lambda: desired_state(self.host, view, observed, self._desired, reread, ports, hint),
            lambda desired: plan(desired, observed),
            self._appliers,
        )
        # After a failure the kernel may hold anything in between: re-read it.
        self._model = None if failed else after(desired, observed)
        previous, self._desired = self._desired, desired
        self._hint_ok = True
        if full or not gc.isenabled():
            _freeze()
        keys = status_keys(desired, blocked.taps)
        old_statuses = self._statuses
        new_statuses = statuses(desired, blocked.taps, old_statuses)
        last = self._counts
        before = None if previous is None or last is None else (previous, old_statuses, last)
        self._counts = endpoint_counts(desired, new_statuses, keys, before)
        # An incremental ``statuses`` returns the old dict itself unless one differs.
        if new_statuses is not old_statuses and (keys is not None or new_statuses != old_statuses):
            self._set_statuses(new_statuses, keys)
            self.report_soon()
        return self._publish(metrics)

    def _publish(self, metrics: PassMetrics) -> PassMetrics:
        return self.publish(metrics, f"{metrics.routes_changed} route changes")


def _freeze() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (and enable it).

    What a full pass leaves (the view's port objects, the desired state, the
    security-group model: ~300,000 containers at 10,000 ports) lives until a
    later pass replaces it, and every oldest-generation collection walked all
    of it: 0.1-0.2 s, in whichever pass it fell, often the one a new port
    waited for. Frozen objects are still freed by reference counting when a
    pass replaces them; only cyclic garbage that was alive at a freeze is
    never collected, and the agent's state is plain dicts, tuples and frozen
    dataclasses (tests/unit/test_agent_gc.py). O(1): a list merge.
    The collector is off from the agent's start until the first pass is
    over (``running``): cyclic garbage of that time is frozen too, once.
    """
    gc.freeze()
    gc.enable()


def _taps_of(ports: list[str]) -> set[str]:
    """The taps of ``ports`` (a port can come after its tap: its tap is re-read)."""
    found: set[str] = set()
    for port_id in ports:
        with contextlib.suppress(ValueError):
            found.add(tap_name(port_id))
    return found
