"""``l3fabric bench NAME``: run one benchmark and print its JSON result."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from l3fabric.bench import BENCHMARKS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help="run a benchmark and print JSON")
    parser.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a benchmark parameter (e.g. --set count=1000)",
    )
    parser.set_defaults(func=run)


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"l3fabric bench: --set wants KEY=VALUE, got {pair!r}")
        options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"l3fabric.bench.{args.name}")
    if not args.json:
        print(f"running benchmark {args.name}: {BENCHMARKS[args.name]}", file=sys.stderr)
    result = module.run(_options(args.set))
    print(json.dumps(result, indent=None if args.json else 2, sort_keys=True))
    return 0
