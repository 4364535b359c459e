"""``l3fabric agent``: the host agent of one compute host."""

from __future__ import annotations

import argparse

from l3fabric.agent.host import RESYNC_INTERVAL_S, HostAgent
from l3fabric.commands.agent_runner import add_agent_arguments, run_agent


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "agent",
        help="run the host agent (routes, anti-spoofing, BIRD) in this network namespace",
    )
    add_agent_arguments(parser, "--host", "compute host", RESYNC_INTERVAL_S)
    parser.add_argument(
        "--no-dhcp",
        dest="dhcp",
        action="store_false",
        help="do not run the host's DHCP server (dnsmasq) for its ports",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_agent(
        args,
        "agent",
        lambda name, api, run_dir, every: HostAgent(
            name, api, run_dir, resync_interval=every, dhcp=args.dhcp
        ),
    )
