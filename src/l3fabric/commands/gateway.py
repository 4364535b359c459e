"""``l3fabric gateway``: the agent of one edge gateway (BIRD, NAT, status)."""

from __future__ import annotations

import argparse

from l3fabric.commands.agent_runner import add_agent_arguments, run_agent
from l3fabric.gateway.agent import RESYNC_INTERVAL_S, GatewayAgent


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gateway",
        help="run the edge gateway agent (BGP up and down, source NAT) in this network namespace",
    )
    add_agent_arguments(parser, "--name", "gateway", RESYNC_INTERVAL_S)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_agent(
        args,
        "gateway",
        lambda name, api, run_dir, every: GatewayAgent(name, api, run_dir, resync_interval=every),
    )
