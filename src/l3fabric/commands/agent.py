"""``l3fabric agent``: the host agent of one compute host."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from l3fabric.agent.host import RESYNC_INTERVAL_S, HostAgent
from l3fabric.commands.agent_runner import add_agent_arguments, run_agent
from l3fabric.nova.metadata import MetadataConfig

# Neutron's metadata_proxy_shared_secret, when not given as a file.
SECRET_ENV = "L3FABRIC_METADATA_SECRET"


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
    meta = parser.add_argument_group(
        "metadata (docs/nova.md): 169.254.169.254 for this host's VMs, as Neutron's metadata agent"
    )
    meta.add_argument(
        "--no-metadata",
        dest="metadata",
        action="store_false",
        help="do not serve 169.254.169.254 (default: serve it)",
    )
    meta.add_argument(
        "--nova-metadata-host",
        default="",
        metavar="HOST",
        help="Nova's metadata API (none: l3fabric answers from the port itself)",
    )
    meta.add_argument("--nova-metadata-port", type=int, default=8775, metavar="PORT")
    meta.add_argument("--nova-metadata-protocol", choices=("http", "https"), default="http")
    meta.add_argument(
        "--metadata-proxy-shared-secret-file",
        metavar="FILE",
        help=f"the secret Nova signs instance ids with (or ${SECRET_ENV})",
    )
    parser.set_defaults(func=run)


def metadata_config(args: argparse.Namespace) -> MetadataConfig | None:
    """The metadata options as a config; None with --no-metadata."""
    if not args.metadata:
        return None
    secret = os.environ.get(SECRET_ENV, "")
    if args.metadata_proxy_shared_secret_file:
        try:
            secret = Path(args.metadata_proxy_shared_secret_file).read_text().strip()
        except OSError as exc:
            raise SystemExit(
                f"l3fabric agent: --metadata-proxy-shared-secret-file: {exc}"
            ) from None
    if args.nova_metadata_host and not secret:
        raise SystemExit(
            f"l3fabric agent: --nova-metadata-host needs the shared secret"
            f" (--metadata-proxy-shared-secret-file or ${SECRET_ENV})"
        )
    if not 0 < args.nova_metadata_port < 65536:
        raise SystemExit("l3fabric agent: --nova-metadata-port must be 1 to 65535")
    return MetadataConfig(
        nova_host=args.nova_metadata_host,
        nova_port=args.nova_metadata_port,
        nova_protocol=args.nova_metadata_protocol,
        shared_secret=secret,
    )


def run(args: argparse.Namespace) -> int:
    metadata = metadata_config(args)
    return run_agent(
        args,
        "agent",
        lambda name, api, run_dir, every: HostAgent(
            name, api, run_dir, resync_interval=every, metadata=metadata, dhcp=args.dhcp
        ),
    )
