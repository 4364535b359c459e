"""The host agent's anycast probes and the health reports they send to the controller.

``AnycastProbes`` owns the health probes of the local members of native
anycast groups (what to probe is the plan's ``ProbesSet``; whom to serve is
decided by ``agent/plan.py`` from the verdicts) and queues each health
transition for the controller: ``flush_reports(client)`` sends them from the
agent's report thread (a slow controller never holds up the loop); a failed
report is retried with the next heartbeat. A transition also wakes the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from l3fabric.agent.anycast import ProbeTarget
from l3fabric.agent.health import HealthProbes
from l3fabric.agent.ops import OK, Op, Outcome, ProbesSet
from l3fabric.client import ApiError, FabricClient

log = logging.getLogger(__name__)


class AnycastProbes:
    """The probes (an applier of ``ProbesSet``) and the queue of their reports."""

    def __init__(
        self,
        host: str,
        wake: Callable[[], None],
        report_soon: Callable[[], None],
        probes: HealthProbes | None = None,
    ) -> None:
        self.host = host
        self._wake = wake
        self._report_soon = report_soon
        self.probes = probes or HealthProbes(self._changed)
        self._pending: dict[str, dict[str, str]] = {}  # group -> port -> verdict
        self._lock = threading.Lock()

    def _changed(self, target: ProbeTarget, healthy: bool) -> None:
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

    def apply(self, op: Op) -> Outcome:
        assert isinstance(op, ProbesSet)
        refused = self.probes.update({t.key: t for t in op.targets})
        return Outcome(errors=tuple(refused)) if refused else OK

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
