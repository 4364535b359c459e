"""``l3fabric anycast ...``: manage anycast groups (``/v1/anycast``) from the shell."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from l3fabric.client import ApiError, FabricClient
from l3fabric.commands import controller_cli

_CHECK = re.compile(r"^(?:(?P<icmp>icmp)|(?P<type>tcp|http):(?P<port>\d{1,5})(?P<path>/\S*)?)$")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("anycast", help="manage anycast groups (one address, many ports)")
    controller_cli.add_arguments(parser, formats=False)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    create = verbs.add_parser("create", help="reserve an address on a subnet for a new group")
    create.add_argument("--name", required=True)
    create.add_argument("--subnet", required=True, metavar="SUBNET_ID")
    create.add_argument("--address", help="a specific address of the subnet (default: IPAM picks)")
    create.add_argument(
        "--member", action="append", default=[], metavar="PORT_ID", help="repeat for several"
    )
    create.add_argument(
        "--check", type=parse_check, metavar="CHECK", help="tcp:PORT, http:PORT[/PATH] or icmp"
    )
    create.add_argument("--interval", type=float, metavar="S", help="seconds between probes (1)")
    create.add_argument("--timeout", type=float, metavar="S", help="probe timeout (0.5)")
    create.add_argument("--rise", type=int, metavar="N", help="good probes to come up (2)")
    create.add_argument("--fall", type=int, metavar="N", help="bad probes to go down (2)")
    verbs.add_parser("list", help="list the groups")
    for verb, text in (
        ("show", "show one group"),
        ("delete", "delete a group, freeing its address"),
    ):
        verbs.add_parser(verb, help=text).add_argument("group", metavar="GROUP", help="id or name")
    for verb, text in (("add-member", "add a port"), ("remove-member", "remove a port")):
        member = verbs.add_parser(verb, help=text)
        member.add_argument("group", metavar="GROUP", help="id or name")
        member.add_argument("port", metavar="PORT_ID")
    parser.set_defaults(func=run)


def parse_check(text: str) -> dict[str, Any]:
    """``tcp:80``, ``http:8080/health`` or ``icmp`` as a health_check object."""
    match = _CHECK.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a check: use tcp:PORT, http:PORT[/PATH] or icmp"
        )
    if match["icmp"]:
        return {"type": "icmp"}
    check: dict[str, Any] = {"type": match["type"], "port": int(match["port"])}
    if match["path"]:
        if match["type"] != "http":
            raise argparse.ArgumentTypeError(f"{text!r}: only an http check has a path")
        check["path"] = match["path"]
    return check


def _health_check(args: argparse.Namespace) -> dict[str, Any] | None:
    timing = {
        "interval_s": args.interval,
        "timeout_s": args.timeout,
        "rise": args.rise,
        "fall": args.fall,
    }
    timing = {k: v for k, v in timing.items() if v is not None}
    if args.check is None:
        if timing:
            raise SystemExit("l3fabric anycast: --interval/--timeout/--rise/--fall need --check")
        return None
    return {**args.check, **timing}


def _resolve(api: FabricClient, group: str) -> str:
    """A group id from an id or a unique name."""
    try:
        return api.get_anycast(group)["id"]
    except ApiError as exc:
        if exc.status != 404:
            raise
    named = [g["id"] for g in api.list_anycast() if g["name"] == group]
    if len(named) == 1:
        return named[0]
    if not named:
        raise SystemExit(f"l3fabric anycast: no group has the id or name {group!r}")
    raise SystemExit(f"l3fabric anycast: {len(named)} groups are named {group!r}; use the id")


def _table(groups: list[dict[str, Any]]) -> str:
    rows = [
        (
            g["id"],
            g["name"],
            g["address"],
            len(g["members"]),
            g["status"]["healthy_members"],
            "-" if g["health_check"] is None else g["health_check"]["type"],
        )
        for g in groups
    ]
    return controller_cli.table(("ID", "NAME", "ADDRESS", "MEMBERS", "HEALTHY", "CHECK"), rows)


def run(args: argparse.Namespace) -> int:
    def act(api: FabricClient) -> int:
        result = _dispatch(api, args)
        if isinstance(result, str):
            print(result)
        elif result is not None:
            print(json.dumps(result, indent=2, sort_keys=True))
        return 0

    return controller_cli.run(f"anycast {args.verb}", args, act)


def _dispatch(api: FabricClient, args: argparse.Namespace) -> Any:
    if args.verb == "create":
        return api.create_anycast(
            name=args.name,
            subnet_id=args.subnet,
            address=args.address,
            members=args.member or None,
            health_check=_health_check(args),
        )
    if args.verb == "list":
        return _table(api.list_anycast())
    group = _resolve(api, args.group)
    if args.verb == "show":
        return api.get_anycast(group)
    if args.verb == "delete":
        api.delete_anycast(group)
        return None
    if args.verb == "add-member":
        return api.add_anycast_member(group, args.port)
    return api.remove_anycast_member(group, args.port)
