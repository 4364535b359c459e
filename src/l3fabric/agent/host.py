"""The host agent: one level-triggered loop converging a compute host to the controller's view.

Events (a watch answer, a tap appearing, a timer) only wake the loop; each
pass reads the whole cache, computes the desired state and converges the
kernel, nftables and BIRD to it, touching nothing that is already right. The
first pass after a start is the same code, so a restarted agent changes
nothing on a host that is already correct. On exit the agent leaves routes,
rules and BIRD in place: forwarding never depends on the agent running.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from l3fabric.agent.anycast_serving import AnycastServing
from l3fabric.agent.bird import NotRegistered, host_bird_config
from l3fabric.agent.bird_early import EarlyBird
from l3fabric.agent.desired import Desired, compute
from l3fabric.agent.linkwatch import LinkWatcher
from l3fabric.agent.loop import RESYNC_INTERVAL_S, ReconcileAgent
from l3fabric.client import HostState
from l3fabric.dataplane.links import TAP_PREFIX, LinkInfo, Links, egress_interfaces
from l3fabric.dataplane.nexthops import HOST_BUCKETS, ResilientParams, ResilientRoutes
from l3fabric.dataplane.nft import AntiSpoofing
from l3fabric.dataplane.routes import (
    EndpointRoutes,
    RouteProgrammingError,
    ensure_link_local_gateway,
    install_protocol_name,
)
from l3fabric.routing.bird_config import render

log = logging.getLogger(__name__)

HOST_PARAMS = ResilientParams(buckets=HOST_BUCKETS)

__all__ = ["RESYNC_INTERVAL_S", "HostAgent", "PassResult"]


@dataclass
class PassResult:
    """What one reconcile pass found and did."""

    statuses: dict[str, str] = field(default_factory=dict)
    routes_changed: int = 0
    failed: list[str] = field(default_factory=list)  # appended to by the pass's threads
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step, for the log

    @contextlib.contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases[phase] = time.monotonic() - start


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
        self.statuses: dict[str, str] = {}
        self.last_pass: PassResult | None = None
        # What BIRD was last given; None until this agent configured it.
        self._bird_endpoints: frozenset[str] | None = None
        self._bird_lock = threading.Lock()  # one BIRD configuration at a time
        self._early_bird: EarlyBird | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        install_protocol_name()
        links = LinkWatcher(self.wake).start()
        # BIRD's start and the BGP session overlap with the snapshot's fetch.
        self._early_bird = EarlyBird(
            self.api_url, self.host, self.bird.alive, self.converge_bird
        ).start()
        try:
            with (
                Links() as self._links,
                EndpointRoutes() as self._routes,
                ResilientRoutes(params=HOST_PARAMS) as rr,
            ):
                self._nft = AntiSpoofing()
                self._anycast = AnycastServing(self.host, rr, self.wake, self.report_soon)
                try:
                    yield
                finally:
                    self._anycast.close()
        finally:
            links.stop()

    def pass_once(self, timed: bool) -> list[str]:
        if timed:
            # Re-read what is otherwise cached, so drift (a rule deleted by
            # hand) is repaired.
            self._nft.forget()
        state = self.watcher.state()
        return self.reconcile(state, self._links, self._routes, self._nft).failed

    def send_heartbeat(self) -> None:
        self._anycast.flush_reports(self.client)
        self.client.heartbeat(
            self.host, ports=dict(self.statuses), bgp=self.bgp_sessions(), agent=self.about()
        )

    def reconcile(
        self, state: HostState, link_ops: Links, routes: EndpointRoutes, nft: AntiSpoofing
    ) -> PassResult:
        """One pass: converge sysctls, BIRD, taps, nftables and routes to ``state``."""
        started = time.monotonic()
        result = PassResult()
        with result.timed("host"):
            link_ops.ensure_host()
            ensure_link_local_gateway()
        # BIRD (its start: 1-2 s with 10,000 taps; a change of peers) in
        # parallel with the data plane, announcing what it announced before, so
        # the BGP session's set-up overlaps with the programming.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bird") as pool:
            bird = pool.submit(self._converge_bird, state, result)
            programmed = self._converge_dataplane(state, link_ops, routes, nft, result)
            bird.result()  # its errors are in result.failed; anything else is a bug: raise it
        # Then announce exactly the endpoints whose routes are now in the kernel
        # (and the anycast addresses served): one configure, milliseconds.
        with result.timed("announce"):
            self._apply_bird(state, result, lambda _last: programmed)
        result.seconds = time.monotonic() - started
        self._publish(result)
        return result

    def _converge_dataplane(
        self,
        state: HostState,
        link_ops: Links,
        routes: EndpointRoutes,
        nft: AntiSpoofing,
        result: PassResult,
    ) -> frozenset[str]:
        """Converge taps, nftables and routes; returns the endpoint prefixes now routed."""
        with result.timed("desired"):
            # One link dump per pass (0.5 s at 10,000 taps): it serves both steps.
            listing = link_ops.listing()
            existing = link_ops.names(TAP_PREFIX, listing)
            desired = compute(state.ports.values(), existing)
            for tap, extra in self._anycast.sources(state).items():
                desired.allowed[tap] = [*desired.allowed.get(tap, ()), *extra]
        # nftables (its own process) runs beside the tap preparation (sysctl
        # and netlink calls, mostly in the kernel); both end before any route.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nft") as pool:
            guarded = pool.submit(self._apply_guard, desired, nft, result)
            with result.timed("taps"):
                ready = self._prepare_taps(desired, link_ops, result, listing)
            # Guard first, then route: a tap never forwards before its rules exist.
            if not guarded.result():
                ready.clear()
        wanted = {prefix: tap for prefix, tap in desired.routes.items() if tap in ready}
        with result.timed("withdraw"):
            # Withdraw before the route goes: peers never send to a prefix
            # this host no longer routes (endpoints, and anycast addresses
            # whose members went away or fell ill).
            anycast_lowered = self._anycast.lower(state, ready)
            self._apply_bird(
                state, result, lambda last: _kept(last, wanted.keys(), anycast_lowered)
            )
        with result.timed("routes"):
            try:
                plan = routes.converge(wanted)
                result.routes_changed = len(plan.replace) + len(plan.delete)
            except RouteProgrammingError as exc:
                result.failed.append(str(exc))
                ready -= {wanted.get(str(f.request.prefix), "") for f in exc.failures}
        with result.timed("anycast"):
            result.failed += self._anycast.converge(state, ready)
        result.statuses = desired.port_status(ready)
        return frozenset(prefix for prefix, tap in wanted.items() if tap in ready)

    def _apply_guard(self, desired: Desired, nft: AntiSpoofing, result: PassResult) -> bool:
        """The anti-spoofing table; False if it could not be applied."""
        # VMs must not reach the controller's network through their host.
        with result.timed("nft"):
            try:
                management = egress_interfaces(urlsplit(self.api_url).hostname or "")
                nft.apply(desired.allowed, isolated=management)
            except Exception as exc:
                result.failed.append(f"nftables: {exc}")
                return False
        return True

    def _prepare_taps(
        self,
        desired: Desired,
        link_ops: Links,
        result: PassResult,
        listing: dict[str, LinkInfo],
    ) -> set[str]:
        # All taps in one call: per-tap link lookups made a pass over 10,000
        # taps quadratic. A tap missing here was unplugged after the listing;
        # its link event wakes the loop again.
        try:
            report = link_ops.prepare_taps(
                desired.routes.values(), ipv6=desired.ipv6_taps, listing=listing
            )
        except Exception as exc:
            result.failed.append(f"taps: {exc}")
            return set()
        result.failed += [f"{tap}: {why}" for tap, why in sorted(report.failed.items())]
        return report.ready

    def _converge_bird(self, state: HostState, result: PassResult) -> None:
        with result.timed("bird"):
            if self._early_bird is not None:
                self._early_bird.wait()  # one BIRD: never two starts at once
            self._apply_bird(state, result, self._previous_endpoints)

    def _previous_endpoints(self, last: frozenset[str] | None) -> Collection[str] | None:
        if last is None and self.bird.alive():
            # A restarted agent: BIRD announces what the kernel has; the
            # pass's announcement renders the same text and changes nothing.
            return None
        return last or ()

    def _apply_bird(
        self,
        state: HostState,
        result: PassResult,
        choose: Callable[[frozenset[str] | None], Collection[str] | None],
    ) -> None:
        """Render and apply BIRD's config with the endpoints ``choose(last given)``; None: skip."""
        with self._bird_lock:
            endpoints = choose(self._bird_endpoints)
            if endpoints is None:
                return
            try:
                config = host_bird_config(state, self._anycast.announced, endpoints)
            except NotRegistered:
                return
            except ValueError as exc:
                result.failed.append(f"BIRD config: {exc}")
                return
            self.note_skipped(config)
            text = render(config)
            try:
                self.converge_bird(text)
                self._bird_endpoints = frozenset(endpoints)
            except Exception as exc:
                result.failed.append(f"BIRD: {exc}")

    def _publish(self, result: PassResult) -> None:
        self.last_pass = result
        if result.routes_changed or result.failed:
            log.info(
                "pass %d: %d route changes in %.3f s (%s)%s",
                self.passes + 1,
                result.routes_changed,
                result.seconds,
                ", ".join(f"{k} {v:.3f}" for k, v in result.phases.items()),
                f"; failed: {'; '.join(result.failed)}" if result.failed else "",
            )
        if result.statuses != self.statuses:
            self.statuses = result.statuses
            self.report_soon()


def _kept(
    last: frozenset[str] | None, wanted: Collection[str], anycast_lowered: bool
) -> frozenset[str] | None:
    """The announced endpoints that stay, or None if BIRD has nothing to withdraw.

    ``last`` None: this agent has not configured BIRD yet (a restart), so
    what BIRD announces is unknown; the pass's announcement settles it.
    """
    if last is None:
        return None
    kept = last.intersection(wanted)
    return kept if len(kept) < len(last) or anycast_lowered else None
