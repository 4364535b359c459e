"""``l3fabric gateway``: the agent of one edge gateway (BIRD, NAT, status)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from l3fabric.gateway.agent import RESYNC_INTERVAL_S, GatewayAgent

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gateway",
        help="run the edge gateway agent (BGP up and down, source NAT) in this network namespace",
    )
    parser.add_argument("--name", required=True, help="this gateway's name, as registered")
    parser.add_argument(
        "--api", required=True, metavar="URL", help="the controller, e.g. http://ctl:9696"
    )
    parser.add_argument(
        "--run-dir",
        metavar="DIR",
        help="where BIRD's config, socket and pid file live (default /run/l3fabric/gateway-NAME)",
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
        raise SystemExit("l3fabric gateway: --resync-interval must be positive")
    run_dir = args.run_dir or f"/run/l3fabric/gateway-{args.name}"
    agent = GatewayAgent(args.name, args.api, run_dir, resync_interval=args.resync_interval)

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping (BIRD, routes and NAT rules stay in place)", signum)
        agent.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    log.info("gateway agent for %s, controller %s", args.name, args.api)
    agent.run()
    return 0
