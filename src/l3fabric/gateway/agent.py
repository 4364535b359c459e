"""The gateway agent: one level-triggered loop converging an edge gateway to the controller's view.

Like the host agent: the watch (``HostStateWatcher`` under the gateway's
name: fabric config, gateways, hosts, networks and subnets) and a timer only
wake the loop; each pass computes the desired policy from the whole cache and
converges forwarding sysctls, the NAT table and BIRD, touching nothing that
is already right (the NAT table and BIRD config are compared by content, so
a restarted agent changes nothing). Anycast routes follow BGP in their own
thread (``gateway.anycast.AnycastSync``, a poll of BIRD every 0.1 s), not in
the pass: a host's failure must reach the kernel in well under a second,
with no controller involved. A heartbeat thread reports BGP sessions,
conntrack NAT counts and the programmed anycast groups. On exit BIRD, routes and rules stay: forwarding
never depends on the agent running.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l3fabric.addresses import parse_address, parse_network
from l3fabric.agent.loop import RESYNC_INTERVAL_S, ReconcileAgent
from l3fabric.dataplane import sysctl
from l3fabric.dataplane.links import egress_interfaces
from l3fabric.gateway.anycast import AnycastSync
from l3fabric.gateway.bird import gateway_config, routing_from_state
from l3fabric.gateway.desired import NotRegistered
from l3fabric.gateway.nat import GatewayNat, nat_counts, policy
from l3fabric.routing.bird_config import render

log = logging.getLogger(__name__)

# Forwarding, and L4 hashing over equal paths: with the kernel's default
# (policy 0) every flow of one client to an anycast address takes one member.
FORWARDING = sysctl.HOST_SYSCTLS


@dataclass
class GatewayPass:
    """What one reconcile pass did."""

    nat_changed: bool = False
    bird_changed: bool = False
    public: tuple[str, ...] = ()
    private: tuple[str, ...] = ()
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


class GatewayAgent(ReconcileAgent):
    """Runs the reconcile loop for gateway ``name`` in the current network namespace."""

    def __init__(
        self,
        name: str,
        api_url: str,
        run_dir: str | Path,
        resync_interval: float = RESYNC_INTERVAL_S,
    ) -> None:
        super().__init__(name, api_url, run_dir, resync_interval)
        self.bird_log = str(Path(run_dir) / "bird" / "bird.log")
        self.nat = GatewayNat()
        self.last_pass: GatewayPass | None = None
        self.anycast = AnycastSync(self.bird.control)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.anycast.start()
        try:
            yield
        finally:
            self.anycast.stop()

    def pass_once(self, timed: bool) -> list[str]:
        if timed:
            self.nat.forget()
        return self.reconcile().failed

    def send_heartbeat(self) -> None:
        self.client.gateway_heartbeat(
            self.name,
            bgp=self.bgp_sessions(),
            nat=self.nat_status(),
            agent=self.about(),
            anycast=self.anycast.status(),
        )

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
            ifaces = set().union(*(egress_interfaces(str(p.address)) for p in routing.upstream))
            snat = record.get("snat_address")
            nat = policy(
                [parse_network(p) for p in routing.desired.private],
                ifaces,
                parse_address(snat) if snat is not None else None,
            )
            result.nat_changed = self.nat.apply(nat)
        except Exception as exc:
            result.failed.append(f"NAT: {exc}")
        try:
            config = gateway_config(routing)
            self.note_skipped(config)
            result.bird_changed = self.converge_bird(render(config))
        except Exception as exc:
            result.failed.append(f"BIRD: {exc}")
        result.seconds = time.monotonic() - started
        self.last_pass = result
        if result.nat_changed or result.bird_changed or result.failed:
            log.info(
                "pass %d: public %s, private %s, nat %s, bird %s in %.3f s%s",
                self.passes + 1,
                ",".join(result.public) or "-",
                ",".join(result.private) or "-",
                "changed" if result.nat_changed else "unchanged",
                "changed" if result.bird_changed else "unchanged",
                result.seconds,
                f"; failed: {'; '.join(result.failed)}" if result.failed else "",
            )
        return result

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
