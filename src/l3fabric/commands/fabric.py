"""``l3fabric fabric show|set``: the fabric's BGP configuration (``/v1/fabric``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from l3fabric.client import FabricClient
from l3fabric.commands import controller_cli


def parse_setting(text: str) -> tuple[list[str], Any]:
    """``KEY=VALUE`` (KEY dotted for nested fields; VALUE as JSON if it parses, else text)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    return key.split("."), parsed


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("fabric", help="show or change the fabric's BGP configuration")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    show = verbs.add_parser("show", help="the configuration every agent renders BIRD from")
    controller_cli.add_arguments(show)
    change = verbs.add_parser(
        "set",
        help="change settings, e.g. peering=mesh bfd.interval_ms=300",
        description="Change fabric settings, keeping the others. VALUE is read as JSON "
        "when it is (numbers, true, false, null, lists), else as text. Agents apply the "
        "new configuration within seconds.",
    )
    change.add_argument(
        "settings", nargs="+", type=parse_setting, metavar="KEY=VALUE", help="a setting"
    )
    controller_cli.add_arguments(change)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return controller_cli.run(f"fabric {args.verb}", args, lambda api: _dispatch(api, args))


def _as_table(config: dict[str, Any]) -> str:
    rows = []
    for key, value in sorted(config.items()):
        if isinstance(value, dict):
            rows += [(f"{key}.{k}", json.dumps(v)) for k, v in sorted(value.items())]
        else:
            rows.append((key, json.dumps(value)))
    return controller_cli.table(("SETTING", "VALUE"), rows)


def _dispatch(api: FabricClient, args: argparse.Namespace) -> int:
    config = api.get_fabric()
    if args.verb == "set":
        for path, value in args.settings:
            target = config
            for part in path[:-1]:
                target = target.setdefault(part, {})
                if not isinstance(target, dict):
                    raise SystemExit(f"l3fabric fabric set: {'.'.join(path)}: not a group")
            target[path[-1]] = value
        config = api.set_fabric(config)
    controller_cli.emit(args, config, _as_table)
    return 0
