"""``l3fabric agent``: the host agent of one compute host."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from l3fabric.agent.host import RESYNC_INTERVAL_S, HostAgent

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "agent",
        help="run the host agent (routes, anti-spoofing, BIRD) in this network namespace",
    )
    parser.add_argument("--host", required=True, help="this compute host's name, as registered")
    parser.add_argument(
        "--api", required=True, metavar="URL", help="the controller, e.g. http://ctl:9696"
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where BIRD's config, socket and pid file live (default /run/l3fabric/agent-HOST)",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=RESYNC_INTERVAL_S,
        metavar="S",
        help="full reconcile pass at least this often (default %(default)s s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.resync_interval <= 0:
        raise SystemExit("l3fabric agent: --resync-interval must be positive")
    run_dir = args.run_dir or f"/run/l3fabric/agent-{args.host}"
    agent = HostAgent(args.host, args.api, run_dir, resync_interval=args.resync_interval)

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping (routes, rules and BIRD stay in place)", signum)
        agent.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    log.info("agent for host %s, controller %s", args.host, args.api)
    agent.run()
    return 0
