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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from l3fabric import __version__
from l3fabric.agent.bird import NotRegistered, host_bird_config
from l3fabric.agent.desired import Desired, compute
from l3fabric.agent.linkwatch import LinkWatcher
from l3fabric.client import (
    ApiError,
    ControllerUnavailable,
    FabricClient,
    HostState,
    HostStateWatcher,
)
from l3fabric.dataplane.links import TAP_PREFIX, Links, egress_interfaces
from l3fabric.dataplane.nft import AntiSpoofing
from l3fabric.dataplane.routes import (
    EndpointRoutes,
    RouteProgrammingError,
    ensure_link_local_gateway,
    install_protocol_name,
)
from l3fabric.routing.bird_config import render
from l3fabric.routing.bird_process import BirdProcess

log = logging.getLogger(__name__)

# A full pass runs at least this often, so that drift (a route deleted by
# hand, a BIRD that died) is repaired even without an event.
RESYNC_INTERVAL_S = 10.0
# After a failed pass, try again this soon.
RETRY_S = 1.0


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


class HostAgent:
    """Runs the reconcile loop for host ``host`` in the current network namespace."""

    def __init__(
        self,
        host: str,
        api_url: str,
        run_dir: str | Path,
        resync_interval: float = RESYNC_INTERVAL_S,
    ) -> None:
        self.host = host
        self.api_url = api_url
        self.resync_interval = resync_interval
        self.bird = BirdProcess("bird", run_dir=str(run_dir))
        self.watcher = HostStateWatcher(api_url, host, on_change=self.wake)
        self.client = FabricClient(api_url)
        self.statuses: dict[str, str] = {}
        self.last_pass: PassResult | None = None
        self.passes = 0
        self._dirty = threading.Event()
        self._report_now = threading.Event()
        self._stop = threading.Event()
        self._started_at = time.time()

    def wake(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._report_now.set()

    # The loop -------------------------------------------------------------------

    def run(self) -> None:
        """Run until ``stop()``: the reconcile loop here, watch/links/heartbeat in threads."""
        install_protocol_name()
        links = LinkWatcher(self.wake).start()
        self.watcher.start()
        reporter = threading.Thread(target=self._report_loop, name="heartbeat", daemon=True)
        reporter.start()
        try:
            with Links() as link_ops, EndpointRoutes() as routes:
                nft = AntiSpoofing()
                while not self._stop.is_set():
                    if not self._dirty.wait(self.resync_interval):
                        # A timed pass also re-reads what is otherwise cached,
                        # so drift (a rule deleted by hand) is repaired.
                        nft.forget()
                    self._dirty.clear()
                    if self._stop.is_set():
                        break
                    # Never converge before the first snapshot: an empty cache
                    # would withdraw every endpoint of a host that is fine.
                    if not self.watcher.synced.is_set():
                        continue
                    result = self.reconcile(self.watcher.state(), link_ops, routes, nft)
                    if result.failed:
                        self._stop.wait(RETRY_S)
                        self._dirty.set()
        finally:
            self.watcher.stop()
            links.stop()
            reporter.join(2.0)
            self.client.close()

    def reconcile(
        self, state: HostState, link_ops: Links, routes: EndpointRoutes, nft: AntiSpoofing
    ) -> PassResult:
        """One pass: converge sysctls, BIRD, taps, nftables and routes to ``state``."""
        started = time.monotonic()
        result = PassResult()
        with result.timed("host"):
            link_ops.ensure_host()
            ensure_link_local_gateway()
        # BIRD in parallel with the rest: it learns our routes from the kernel
        # as they are added, so its start (1-2 s with 10,000 taps) and the BGP
        # session's set-up overlap with the programming instead of following it.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bird") as pool:
            bird = pool.submit(self._converge_bird, state, result)
            self._converge_dataplane(state, link_ops, routes, nft, result)
            bird.result()  # its errors are in result.failed; anything else is a bug: raise it
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
    ) -> None:
        with result.timed("desired"):
            existing = link_ops.names(TAP_PREFIX)
            desired = compute(state.ports.values(), existing)
        # nftables (its own process) runs beside the tap preparation (sysctl
        # and netlink calls, mostly in the kernel); both end before any route.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nft") as pool:
            guarded = pool.submit(self._apply_guard, desired, nft, result)
            with result.timed("taps"):
                ready = self._prepare_taps(desired, link_ops, result)
            # Guard first, then route: a tap never forwards before its rules exist.
            if not guarded.result():
                ready.clear()
        wanted = {prefix: tap for prefix, tap in desired.routes.items() if tap in ready}
        with result.timed("routes"):
            try:
                plan = routes.converge(wanted)
                result.routes_changed = len(plan.replace) + len(plan.delete)
            except RouteProgrammingError as exc:
                result.failed.append(str(exc))
                ready -= {wanted.get(str(f.request.prefix), "") for f in exc.failures}
        result.statuses = desired.port_status(ready)

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

    def _prepare_taps(self, desired: Desired, link_ops: Links, result: PassResult) -> set[str]:
        # All taps in one call: per-tap link lookups made a pass over 10,000
        # taps quadratic. A tap missing here was unplugged after the listing;
        # its link event wakes the loop again.
        try:
            report = link_ops.prepare_taps(desired.routes.values(), ipv6=desired.ipv6_taps)
        except Exception as exc:
            result.failed.append(f"taps: {exc}")
            return set()
        result.failed += [f"{tap}: {why}" for tap, why in sorted(report.failed.items())]
        return report.ready

    def _converge_bird(self, state: HostState, result: PassResult) -> None:
        with result.timed("bird"):
            self._apply_bird(state, result)

    def _apply_bird(self, state: HostState, result: PassResult) -> None:
        try:
            text = render(host_bird_config(state))
        except NotRegistered:
            return
        except ValueError as exc:
            result.failed.append(f"BIRD config: {exc}")
            return
        try:
            if self.bird.alive():
                self.bird.apply(text)
            else:
                self.bird.start(text)
                log.info("started BIRD (%s)", self.bird.socket_path)
        except Exception as exc:
            result.failed.append(f"BIRD: {exc}")

    def _publish(self, result: PassResult) -> None:
        self.passes += 1
        self.last_pass = result
        if result.routes_changed or result.failed:
            log.info(
                "pass %d: %d route changes in %.3f s (%s)%s",
                self.passes,
                result.routes_changed,
                result.seconds,
                ", ".join(f"{k} {v:.3f}" for k, v in result.phases.items()),
                f"; failed: {'; '.join(result.failed)}" if result.failed else "",
            )
        if result.statuses != self.statuses:
            self.statuses = result.statuses
            self._report_now.set()

    # Status to the controller -------------------------------------------------------

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            interval = float(self.watcher.state().fabric.get("heartbeat_interval_s", 2.0))
            try:
                self.client.heartbeat(
                    self.host,
                    ports=dict(self.statuses),
                    bgp=self.bgp_sessions(),
                    agent=self._about(),
                )
            except (ApiError, ControllerUnavailable) as exc:
                log.warning("heartbeat failed: %s", exc)
            except Exception:
                log.exception("heartbeat failed")
            if not self.bird.alive():
                self.wake()  # supervise BIRD: the next pass starts it again
            self._report_now.wait(interval)
            self._report_now.clear()

    def bgp_sessions(self) -> list[dict[str, Any]]:
        if not self.bird.alive():
            return []
        try:
            protocols = self.bird.control.protocols()
        except Exception as exc:
            log.debug("reading BIRD status failed: %s", exc)
            return []
        return [
            {"name": p.name, "peer": "", "state": p.state, "info": p.info}
            for p in protocols
            if p.proto == "BGP"
        ]

    def _about(self) -> dict[str, Any]:
        last = self.last_pass
        return {
            "version": __version__,
            "started_at": self._started_at,
            "passes": self.passes,
            "last_pass_s": last.seconds if last else None,
            "errors": last.failed if last else [],
            "controller_connected": self.watcher.connected,
        }
