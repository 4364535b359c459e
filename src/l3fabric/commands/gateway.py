"""``l3fabric gateway``: the agent of one edge gateway (BIRD, NAT, status), or ``list``/``show``."""

from __future__ import annotations

import argparse

from l3fabric.commands import controller_cli, registry_cli
from l3fabric.commands.agent_runner import add_agent_arguments, run_agent
from l3fabric.gateway.agent import RESYNC_INTERVAL_S, GatewayAgent


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "gateway",
        help="run the edge gateway agent (BGP up and down, source NAT) in this network "
        "namespace, or list and show gateways",
        description="With --name and --api: run the agent of that gateway here. With a "
        "verb: list or show the registered gateways.",
    )
    add_agent_arguments(parser, "--name", "gateway", RESYNC_INTERVAL_S, required=False)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    registry_cli.add_verbs(verbs, "gateway")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.verb:
        return controller_cli.run(
            f"gateway {args.verb}",
            args,
            lambda api: registry_cli.list_or_show(api, args, "gateway"),
        )
    return run_agent(
        args,
        "gateway",
        lambda name, api, run_dir, every: GatewayAgent(name, api, run_dir, resync_interval=every),
    )
