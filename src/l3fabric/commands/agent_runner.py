"""What ``l3fabric agent`` and ``l3fabric gateway`` share: arguments, signals, the run."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

from l3fabric import credentials
from l3fabric.agent import status_http
from l3fabric.agent.metrics import AgentMetrics

log = logging.getLogger(__name__)


class Agent(Protocol):
    metrics: AgentMetrics

    def run(self) -> None: ...
    def stop(self) -> None: ...
    def healthy(self) -> tuple[bool, dict[str, Any]]: ...
    def ready(self) -> tuple[bool, dict[str, Any]]: ...


def add_agent_arguments(
    parser: argparse.ArgumentParser,
    name_flag: str,
    what: str,
    resync_default: float,
    required: bool = True,
) -> None:
    """``name_flag`` (e.g. ``--host``), ``--api``, ``--token-file``, ``--ca``, ``--run-dir``,
    ``--resync-interval``. ``required``: False when the command has other verbs
    (``run_agent`` then checks the name and controller are given)."""
    parser.add_argument(
        name_flag, required=required, dest="name", help=f"this {what}'s name, as registered"
    )
    parser.add_argument(
        "--api", required=required, metavar="URL", help="the controller, e.g. http://ctl:9696"
    )
    credentials.add_arguments(parser)
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where BIRD's config, socket and pid file live (default /run/l3fabric/ROLE-NAME)",
    )
    port = status_http.DEFAULT_PORTS["gateway" if what == "gateway" else "agent"]
    parser.add_argument(
        "--metrics-listen",
        default=f"127.0.0.1:{port}",
        metavar="HOST:PORT",
        help="serve /metrics, /healthz and /readyz here, in the agent's network namespace "
        "(default %(default)s; off: not at all)",
    )
    parser.add_argument(
        "--bird-unit",
        metavar="UNIT",
        help="run BIRD as this systemd unit of its own (started with systemd-run, logging to "
        "the journal), so the agent's unit can stop its whole control group without "
        "touching BGP; default: BIRD runs in the background beside the agent",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=resync_default,
        metavar="S",
        help="full reconcile pass at least this often (default %(default)s s)",
    )


def run_agent(
    args: argparse.Namespace, role: str, make: Callable[[str, str, str, float], Agent]
) -> int:
    """Build the agent from ``args`` and run it until SIGTERM or SIGINT.

    On a signal the agent stops; what it programmed (routes, rules, BIRD)
    stays in place, so forwarding never depends on the agent running.
    """
    if not (args.name and args.api):
        raise SystemExit(f"l3fabric {role}: the agent needs its name and --api")
    if args.resync_interval <= 0:
        raise SystemExit(f"l3fabric {role}: --resync-interval must be positive")
    try:
        credentials.apply_arguments(args)
    except credentials.CredentialsError as exc:
        raise SystemExit(f"l3fabric {role}: {exc}") from None
    try:
        listen = status_http.parse_listen(args.metrics_listen)
    except ValueError as exc:
        raise SystemExit(f"l3fabric {role}: --metrics-listen: {exc}") from None
    run_dir = args.run_dir or f"/run/l3fabric/{role}-{args.name}"
    agent = make(args.name, args.api, run_dir, args.resync_interval)
    if args.bird_unit:
        try:
            agent.use_bird_unit(args.bird_unit)
        except ValueError as exc:
            raise SystemExit(f"l3fabric {role}: --bird-unit: {exc}") from None

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping (the data plane and BIRD stay in place)", signum)
        agent.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    log.info("%s %s, controller %s", role, args.name, args.api)
    with status_http.serving(listen, agent.metrics.registry, agent.healthy, agent.ready):
        agent.run()
    return 0
