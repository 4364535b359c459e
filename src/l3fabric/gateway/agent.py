"""The gateway agent: one level-triggered loop converging an edge gateway to the controller's view.

Like the host agent: the watch (``HostStateWatcher`` under the gateway's
name: fabric config, gateways, hosts, networks and subnets) and a timer only
wake the loop, and each pass is the same four steps:

1. observe (gateway/observe.py): sysctls, the NAT table by content, BIRD's
   anycast paths and config, the kernel's anycast groups (every pass reads
   everything: a gateway holds few objects, and drift is always repaired);
2. ``plan.desired_state``: the whole desired state, pure;
3. ``plan.plan``: the ordered operations, pure; none on a gateway that is
   right, so a restarted agent changes nothing;
4. ``execute.run`` (shared with the host agent): the appliers carry them
   out; the pass's metrics go to the log, ``last_pass`` (the heartbeat) and
   ``<run dir>/passes.json``.

Anycast routes also follow BGP between passes, in their own thread
(``gateway.anycast.AnycastSync``, a poll of BIRD every 0.1 s): a host's
failure must reach the kernel in well under a second, with no controller
involved; the thread and the pass's ``anycast`` step go through the same
writer. Another thread (gateway/birdwatch.py) polls BIRD's sessions: the
upstream announcements wait for the fabric's routes, and a BIRD found dead
loses its reply-steering route at once and is restarted. A gateway of a
pair also runs conntrackd (gateway/conntrackd.py: started, restarted on a
config change, left running on exit like BIRD).
A heartbeat thread reports BGP sessions, conntrack counters, the
programmed anycast groups and the last pass. On exit BIRD, routes and rules
stay: forwarding never depends on the agent running.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from l3fabric.agent import execute
from l3fabric.agent.appliers import HostApplier
from l3fabric.agent.execute import PassMetrics
from l3fabric.agent.loop import RESYNC_INTERVAL_S, ReconcileAgent
from l3fabric.client import Urls
from l3fabric.gateway.anycast import AnycastSync
from l3fabric.gateway.appliers import GatewayBirdApplier, NatApplier, SyncApplier
from l3fabric.gateway.birdwatch import BirdWatch
from l3fabric.gateway.conntrackd import Conntrackd
from l3fabric.gateway.desired import GatewayDesired
from l3fabric.gateway.nat import GatewayNat, nat_counters
from l3fabric.gateway.observe import GatewayReader
from l3fabric.gateway.plan import (
    FORWARDING,
    DesiredGateway,
    desired_state,
    plan,
    upstream_addresses,
)
from l3fabric.gateway.steer import Steering

log = logging.getLogger(__name__)

__all__ = ["FORWARDING", "RESYNC_INTERVAL_S", "GatewayAgent"]


class GatewayAgent(ReconcileAgent):
    """Runs the reconcile loop for gateway ``name`` in the current network namespace."""

    role = "gateway"

    def __init__(
        self,
        name: str,
        api_url: Urls,
        run_dir: str | Path,
        resync_interval: float = RESYNC_INTERVAL_S,
    ) -> None:
        super().__init__(name, api_url, run_dir, resync_interval)
        # BIRD's log: a file it rotates itself, or (None) its default, syslog.
        self.bird_log: str | None = str(Path(run_dir) / "bird" / "bird.log")
        self.nat = GatewayNat()
        self.conntrackd = Conntrackd(run_dir)
        self.steering = Steering()
        self.anycast = AnycastSync(self.bird.control)
        # Between passes: the fabric sessions' gate on upstream announcements, a dead BIRD.
        self.birdwatch = BirdWatch(self.bird, self.wake, self.steering.drop_route)
        self.desired: DesiredGateway | None = None
        self.last_nat: dict[str, Any] | None = None  # the last heartbeat's, for metrics
        # The policy BIRD was last given (None: unknown, after a failure or a restart).
        self._bird_policy: GatewayDesired | None = None
        self._reader = GatewayReader(
            self.nat, self.anycast, self.bird, self.conntrackd, self.steering, self.birdwatch
        )
        self._appliers: dict[str, execute.Applier] = {
            "host": HostApplier(),
            "nat": NatApplier(self.nat),
            "sync": SyncApplier(self.conntrackd, self.steering),
            "anycast": self.anycast,
            "bird": GatewayBirdApplier(self.converge_bird, self.bird.control),
        }

    def use_bird_unit(self, unit: str) -> None:
        """BIRD as its own systemd unit logs to syslog (the journal rotates it), not a file."""
        super().use_bird_unit(unit)
        self.bird_log = None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.anycast.start()
        self.birdwatch.start()
        try:
            yield
        finally:
            self.birdwatch.stop()
            self.anycast.stop()

    def pass_once(self, timed: bool) -> list[str]:
        return self.reconcile().errors

    def send_heartbeat(self) -> None:
        self.client.gateway_heartbeat(
            self.name,
            bgp=self.bgp_sessions(),
            nat=self.nat_status(),
            agent=self.about(),
            anycast=self.anycast.status(),
        )

    def reconcile(self) -> PassMetrics:
        """One pass: observe, desired state, plan, apply."""
        metrics = PassMetrics(number=self.passes + 1, kind="full", started_at=time.time())
        begun = time.monotonic()
        view = self.watcher.state()
        try:
            observed = self._reader.read(upstream_addresses(view, self.name), self._bird_policy)
        except Exception as exc:
            metrics.step("observe").errors.append(f"observe: {exc}")
            return self._publish(metrics)
        metrics.timed("observe", begun)
        desired, _, failed = self.plan_and_run(
            metrics,
            lambda: desired_state(
                self.name, view, observed, log_file=self.bird_log, sync_dir=self.conntrackd.dir
            ),
            lambda desired: plan(desired, observed),
            self._appliers,
        )
        self._bird_policy = None if failed or desired.bird is None else desired.policy
        self.desired = desired
        return self._publish(metrics)

    def _publish(self, metrics: PassMetrics) -> PassMetrics:
        policy = self.desired.policy if self.desired else None
        public = ",".join(policy.public) if policy and policy.public else "-"
        private = ",".join(policy.private) if policy and policy.private else "-"
        return self.publish(metrics, f"public {public}, private {private}")

    def nat_status(self) -> dict[str, Any]:
        policy = self.desired.policy if self.desired else None
        status: dict[str, Any] = {
            "private_prefixes": list(policy.private) if policy else [],
            "public_prefixes": list(policy.public) if policy else [],
        }
        try:
            status.update(nat_counters())
        except Exception as exc:
            status["error"] = str(exc)
        self.last_nat = status
        return status

    def metrics_state(self) -> dict[str, Any]:
        return {**super().metrics_state(), "nat": self.last_nat}
