"""The gateway agent: one level-triggered loop converging an edge gateway to the controller's view.

Like the host agent: the watch (``HostStateWatcher`` under the gateway's
name: fabric config, gateways, hosts, networks and subnets) and a timer only
wake the loop; each pass computes the desired policy from the whole cache and
converges forwarding sysctls, the NAT table and BIRD, touching nothing that
is already right (the NAT table and BIRD config are compared by content, so
a restarted agent changes nothing). A heartbeat thread reports BGP sessions
and conntrack NAT counts. On exit BIRD, routes and rules stay: forwarding
never depends on the agent running.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from l3fabric import __version__
from l3fabric.client import ApiError, ControllerUnavailable, FabricClient, HostStateWatcher
from l3fabric.dataplane import sysctl
from l3fabric.gateway.bird import gateway_config, routing_from_state
from l3fabric.gateway.desired import NotRegistered
from l3fabric.gateway.nat import GatewayNat, nat_counts, policy
from l3fabric.routing.bird_config import render
from l3fabric.routing.bird_process import BirdProcess

log = logging.getLogger(__name__)

RESYNC_INTERVAL_S = 10.0
RETRY_S = 1.0
FORWARDING = {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}


def upstream_interfaces(addresses: list[str]) -> set[str]:
    """The interfaces through which this namespace reaches ``addresses`` (its upstream peers)."""
    names: set[str] = set()
    with IPRoute() as ipr:
        for address in addresses:
            try:
                (route,) = ipr.route("get", dst=address)
                (link,) = ipr.get_links(route.get_attr("RTA_OIF"))
            except Exception as exc:  # unreachable for now: NAT waits for the next pass
                log.warning("no route to upstream peer %s: %s", address, exc)
                continue
            names.add(link.get_attr("IFLA_IFNAME"))
    return names


@dataclass
class GatewayPass:
    """What one reconcile pass did."""

    nat_changed: bool = False
    bird_changed: bool = False
    public: tuple[str, ...] = ()
    private: tuple[str, ...] = ()
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


class GatewayAgent:
    """Runs the reconcile loop for gateway ``name`` in the current network namespace."""

    def __init__(
        self,
        name: str,
        api_url: str,
        run_dir: str | Path,
        resync_interval: float = RESYNC_INTERVAL_S,
    ) -> None:
        self.name = name
        self.resync_interval = resync_interval
        self.bird = BirdProcess("bird", run_dir=str(run_dir))
        self.bird_log = str(Path(run_dir) / "bird" / "bird.log")
        self.watcher = HostStateWatcher(api_url, name, on_change=self.wake)
        self.client = FabricClient(api_url)
        self.nat = GatewayNat()
        self.last_pass: GatewayPass | None = None
        self.passes = 0
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._started_at = time.time()

    def wake(self) -> None:
        self._dirty.set()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()

    def run(self) -> None:
        """Run until ``stop()``: the reconcile loop here, the watch and heartbeat in threads."""
        self.watcher.start()
        reporter = threading.Thread(target=self._report_loop, name="heartbeat", daemon=True)
        reporter.start()
        try:
            while not self._stop.is_set():
                self._dirty.wait(self.resync_interval)
                self._dirty.clear()
                if self._stop.is_set():
                    break
                # Never converge an empty cache: it would withdraw every aggregate.
                if not self.watcher.synced.is_set():
                    continue
                if self.reconcile().failed:
                    self._stop.wait(RETRY_S)
                    self._dirty.set()
        finally:
            self.watcher.stop()
            reporter.join(2.0)
            self.client.close()

    def reconcile(self) -> GatewayPass:
        """One pass: forwarding, NAT table and BIRD converged to the cached state."""
        started = time.monotonic()
        result = GatewayPass()
        state = self.watcher.state()
        try:
            routing = routing_from_state(state, self.name, log_file=self.bird_log)
        except NotRegistered:
            return result
        result.public, result.private = routing.desired.public, routing.desired.private
        record = state.gateways[self.name]
        try:
            sysctl.ensure(FORWARDING)
            ifaces = upstream_interfaces([p.address for p in routing.upstream])
            nat = policy(routing.desired.private, ifaces, record.get("snat_address"))
            result.nat_changed = self.nat.apply(nat)
        except Exception as exc:
            result.failed.append(f"NAT: {exc}")
        try:
            text = render(gateway_config(routing))
            if self.bird.alive():
                result.bird_changed = self.bird.apply(text)
            else:
                result.bird_changed = self.bird.start(text)
                log.info("started BIRD (%s)", self.bird.socket_path)
        except Exception as exc:
            result.failed.append(f"BIRD: {exc}")
        result.seconds = time.monotonic() - started
        self.passes += 1
        self.last_pass = result
        if result.nat_changed or result.bird_changed or result.failed:
            log.info(
                "pass %d: public %s, private %s, nat %s, bird %s in %.3f s%s",
                self.passes,
                ",".join(result.public) or "-",
                ",".join(result.private) or "-",
                "changed" if result.nat_changed else "unchanged",
                "changed" if result.bird_changed else "unchanged",
                result.seconds,
                f"; failed: {'; '.join(result.failed)}" if result.failed else "",
            )
        return result

    # Status to the controller ---------------------------------------------------------

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            interval = float(self.watcher.state().fabric.get("heartbeat_interval_s", 2.0))
            try:
                self.client.gateway_heartbeat(
                    self.name, bgp=self.bgp_sessions(), nat=self.nat_status(), agent=self._about()
                )
            except (ApiError, ControllerUnavailable) as exc:
                log.warning("heartbeat failed: %s", exc)
            except Exception:
                log.exception("heartbeat failed")
            if not self.bird.alive() and self.watcher.synced.is_set():
                self.wake()  # supervise BIRD: the next pass starts it again
            self._stop.wait(interval)

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

    def nat_status(self) -> dict[str, Any]:
        last = self.last_pass
        status: dict[str, Any] = {
            "private_prefixes": list(last.private) if last else [],
            "public_prefixes": list(last.public) if last else [],
        }
        try:
            status.update(nat_counts())
        except Exception as exc:
            status["error"] = str(exc)
        return status

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
