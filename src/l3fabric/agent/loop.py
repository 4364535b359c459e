"""The machinery every agent shares: watch, level-triggered loop, BIRD, heartbeat.

An agent (host or gateway) subclasses ``ReconcileAgent`` and supplies one
pass (``pass_once``), its heartbeat (``send_heartbeat``) and, optionally,
resources that live as long as the loop (``running``). Events (a watch
answer, a kernel event, a timer) only wake the loop; each pass converges
from the whole cache. Nothing runs before the first snapshot: an empty cache
would withdraw everything from a healthy node. On exit the agent leaves the
data plane and BIRD in place: forwarding never depends on the agent running.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from l3fabric import __version__, sdnotify
from l3fabric.agent import execute
from l3fabric.agent.bird_exit import BirdExitWatch
from l3fabric.agent.execute import Applier, PassMetrics
from l3fabric.agent.metrics import AgentMetrics, age
from l3fabric.agent.ops import Blocked, Op
from l3fabric.agent.passlog import PassLog, summary
from l3fabric.client import ApiError, ControllerUnavailable, FabricClient, HostStateWatcher, Urls
from l3fabric.controllers import Controllers
from l3fabric.poller import Poller
from l3fabric.routing import bird_process
from l3fabric.routing.bird_config import BirdConfig, SkippedPeer
from l3fabric.routing.bird_process import ROUTING_NICE, BirdProcess

log = logging.getLogger(__name__)


class Desired(Protocol):
    """What both agents' desired states have in common."""

    @property
    def bird(self) -> BirdConfig | None: ...
    @property
    def errors(self) -> tuple[str, ...]: ...


D = TypeVar("D", bound=Desired)

# A full pass runs at least this often, so that drift (a route deleted by
# hand, a BIRD that died) is repaired even without an event.
RESYNC_INTERVAL_S = 10.0
# After a failed pass, try again this soon.
RETRY_S = 1.0


class ReconcileAgent(abc.ABC):
    """Runs one node's reconcile loop in the current network namespace."""

    role = "host"  # in metrics

    def __init__(
        self,
        name: str,
        api_url: Urls,
        run_dir: str | Path,
        resync_interval: float = RESYNC_INTERVAL_S,
    ) -> None:
        self.name = name
        # One list for the watch, the heartbeat and the status reports: when one
        # of them finds its controller gone, the others move with it.
        self.controllers = Controllers.of(api_url)
        self.resync_interval = resync_interval
        self.bird = BirdProcess("bird", run_dir=str(run_dir), nice=ROUTING_NICE)
        self.watcher = HostStateWatcher(self.controllers, name, on_change=self.wake)
        self.client = FabricClient(self.controllers)
        self.passes = 0
        self.last_seconds: float | None = None
        self.last_failed: list[str] = []
        # The last pass's metrics (the subclass's pass sets it) and the recent ones.
        self.last_pass: PassMetrics | None = None
        self.pass_log = PassLog(run_dir)
        # Sessions the last rendered config left out (no local address BIRD needs).
        self.skipped_sessions: tuple[SkippedPeer, ...] = ()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        # The heartbeat, every heartbeat_interval_s of the fabric config, and
        # at once on report_soon().
        self._reporter = Poller("heartbeat", self._report, self._heartbeat_interval, slow_pause_s=0)
        # Supervises BIRD: one that exits wakes the loop, whose pass starts it again.
        self._bird_exit = BirdExitWatch(lambda: self.bird.pid(), self.wake)
        self._started_at = time.time()
        # For metrics and health (agent/metrics.py): what the last heartbeat
        # carried, when the controller last took one, when the loop last turned.
        self.last_bgp: list[dict[str, Any]] = []
        self.heartbeat_ok_at: float | None = None
        self.loop_at = time.monotonic()
        self.metrics = AgentMetrics(self.role, self.metrics_state)

    # What a subclass supplies -----------------------------------------------------

    @abc.abstractmethod
    def pass_once(self, timed: bool) -> list[str]:
        """One reconcile pass over ``self.watcher.state()``; returns what failed.

        ``timed``: woken by the timer, not an event; re-read anything cached.
        """

    @abc.abstractmethod
    def send_heartbeat(self) -> None:
        """Report liveness and status to the controller (raises on failure)."""

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Resources that live as long as the loop (none by default)."""
        yield

    # The loop ---------------------------------------------------------------------

    def wake(self) -> None:
        self._dirty.set()

    def report_soon(self) -> None:
        """Send the next heartbeat now (a status changed)."""
        self._reporter.wake()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._reporter.stop(timeout=0)

    def run(self) -> None:
        """Run until ``stop()``: the loop here, the watch and heartbeat in threads."""
        with self.running():
            self.watcher.start()
            if not self._stop.is_set():
                self._reporter.start()
                self._bird_exit.start()
            try:
                while not self._stop.is_set():
                    self.loop_at = time.monotonic()
                    timed = not self._dirty.wait(self.resync_interval)
                    self._dirty.clear()
                    if self._stop.is_set():
                        break
                    if not self.watcher.synced.is_set():
                        continue
                    if self._timed_pass(timed):
                        self._stop.wait(RETRY_S)
                        self._dirty.set()
            finally:
                self.watcher.stop()
                self._bird_exit.stop()
                self._reporter.stop(2.0)
                self.client.close()

    def _timed_pass(self, timed: bool) -> list[str]:
        started = time.monotonic()
        failed = self.pass_once(timed)
        self.passes += 1
        if self.passes == 1:
            sdnotify.notify()  # systemd (Type=notify): started once the first pass ran
        self.last_seconds = time.monotonic() - started
        self.last_failed = failed
        return failed

    # BIRD ----------------------------------------------------------------------------

    def converge_bird(self, text: str) -> bool:
        """Run BIRD with config ``text``: started if needed, else reconfigured; True if changed."""
        if self.bird.alive():
            return self.bird.apply(text)
        started = self.bird.start(text)
        log.info("started BIRD (%s)", self.bird.socket_path)
        return started

    def note_skipped(self, config: BirdConfig) -> None:
        """Remember the sessions ``config`` left out; log and report when they change."""
        if config.skipped_peers == self.skipped_sessions:
            return
        self.skipped_sessions = config.skipped_peers
        for s in config.skipped_peers:
            log.warning("BGP session %s (%s) skipped: %s", s.protocol, s.address, s.reason)
        self.report_soon()

    def bgp_sessions(self) -> list[dict[str, Any]]:
        """BIRD's BGP sessions, then the skipped ones (state ``skipped``, the reason as info)."""
        skipped = [
            {"name": s.protocol, "peer": str(s.address), "state": "skipped", "info": s.reason}
            for s in self.skipped_sessions
        ]
        self.last_bgp = self._bgp_sessions(skipped)
        return self.last_bgp

    def _bgp_sessions(self, skipped: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.bird.alive():
            return skipped
        try:
            protocols = self.bird.control.protocols()
        except Exception as exc:
            log.debug("reading BIRD status failed: %s", exc)
            return skipped
        # rejected: the peer's routes the import filter refuses now (sessions
        # with "import keep filtered", a gateway's fabric sessions; else 0).
        running = [
            {
                "name": p.name,
                "peer": p.neighbor,
                "state": p.state,
                "info": p.info,
                "since": p.since,
                "routes_in": sum(r.get("imported", 0) for r in p.routes.values()),
                "routes_out": sum(r.get("exported", 0) for r in p.routes.values()),
                "rejected": p.filtered,
            }
            for p in protocols
            if p.proto == "BGP"
        ]
        return running + skipped

    def use_bird_unit(self, unit: str) -> None:
        """Start BIRD as systemd unit ``unit`` (routing/bird_process.systemd_unit_argv)."""
        self.bird.unit = bird_process.unit_name(unit)

    # Pass steps and metrics ------------------------------------------------------------

    def plan_and_run(
        self,
        metrics: PassMetrics,
        desire: Callable[[], D],
        planner: Callable[[D], Sequence[Op]],
        appliers: Mapping[str, Applier],
    ) -> tuple[D, Blocked, bool]:
        """The pure steps and the execution of a pass: (desired, what was blocked, any failure).

        ``desire`` and ``planner`` are the agent's pure functions (its
        ``plan.desired_state`` and ``plan.plan`` over what it observed); each
        step is timed into ``metrics``.
        """
        begun = time.monotonic()
        desired = desire()
        if desired.bird is not None:
            self.note_skipped(desired.bird)  # sessions BIRD cannot run: logged and reported
        metrics.step("desired").errors += desired.errors
        metrics.timed("desired", begun)
        begun = time.monotonic()
        ops = planner(desired)
        metrics.timed("plan", begun)
        blocked = execute.run(ops, appliers, metrics)
        failed = any(s.errors for name, s in metrics.steps.items() if name != "desired")
        return desired, blocked, failed

    def publish(self, metrics: PassMetrics, headline: str) -> PassMetrics:
        """Finish ``metrics`` (the pass is over): keep, log if it did something."""
        metrics.finish()
        self.last_pass = metrics
        if metrics.operations or metrics.errors:
            log.info(
                "pass %d (%s): %s, %d operations in %.3f s (%s)%s",
                metrics.number,
                metrics.kind,
                headline,
                metrics.operations,
                metrics.seconds,
                ", ".join(f"{k} {v.seconds:.3f}" for k, v in metrics.steps.items()),
                f"; failed: {'; '.join(metrics.errors)}" if metrics.errors else "",
            )
        self.pass_log.record(metrics)
        self.metrics.observe_pass(metrics)
        return metrics

    # Status to the controller ---------------------------------------------------------

    def about(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "started_at": self._started_at,
            "passes": self.passes,
            "last_pass_s": self.last_seconds,
            "errors": self.last_failed,
            "controller_connected": self.watcher.connected,
            "controller": self.controllers.current,
            "last_pass": summary(self.last_pass) if self.last_pass else None,
            "endpoints": self.endpoint_counts(),
        }

    def endpoint_counts(self) -> dict[str, int] | None:
        """Endpoints this node should program and those it did (None: it has none to)."""
        return None

    def metrics_state(self) -> dict[str, Any]:
        """What the scrape-time metrics read (agent/metrics.py)."""
        return {
            "bgp": self.last_bgp,
            "endpoints": self.endpoint_counts(),
            "heartbeat_age_s": age(self.heartbeat_ok_at),
        }

    def healthy(self) -> tuple[bool, dict[str, Any]]:
        """/healthz: the loop turned within three resync intervals (30 s at least)."""
        stalled = time.monotonic() - self.loop_at
        ok = stalled < max(30.0, 3 * self.resync_interval)
        return ok, {"status": "ok" if ok else "stuck", "loop_idle_s": round(stalled, 3)}

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """/readyz: the controller's snapshot arrived and a pass ran."""
        ok = self.watcher.synced.is_set() and self.passes > 0
        body = {"status": "ready" if ok else "starting", "passes": self.passes}
        return ok, {**body, "errors": self.last_failed}

    def _heartbeat_interval(self) -> float:
        return float(self.watcher.state().fabric.get("heartbeat_interval_s", 2.0))

    def _report(self) -> None:
        try:
            self.send_heartbeat()
            self.heartbeat_ok_at = time.monotonic()
        except (ApiError, ControllerUnavailable) as exc:
            log.warning("heartbeat failed: %s", exc)
        except Exception:
            log.exception("heartbeat failed")
