"""``l3fabric gateway``: the agent of one edge gateway (BIRD, NAT, status), or drain one."""

from __future__ import annotations

import argparse

from l3fabric.commands import gateway_drain
from l3fabric.commands.agent_runner import add_agent_arguments, run_agent
from l3fabric.gateway.agent import RESYNC_INTERVAL_S, GatewayAgent


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gateway",
        help="run the edge gateway agent (BGP up and down, source NAT) in this network namespace,"
        " or drain / undrain a gateway",
    )
    parser.add_argument(
        "action", nargs="?", choices=gateway_drain.ACTIONS, help="drain or undrain gateway NAME"
    )
    parser.add_argument("target", nargs="?", metavar="NAME", help="the gateway to drain")
    add_agent_arguments(parser, "--name", "gateway", RESYNC_INTERVAL_S, required=False)
    parser.set_defaults(func=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    if args.action:
        return gateway_drain.run(args)
    if not args.name or not args.api:
        args.parser.error("the agent needs --name and --api (or: drain NAME, undrain NAME)")
    return run_agent(
        args,
        "gateway",
        lambda name, api, run_dir, every: GatewayAgent(name, api, run_dir, resync_interval=every),
    )
