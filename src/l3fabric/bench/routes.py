"""``l3fabric bench routes``: endpoint route programming against ``ip -batch``.

Part (a), ``program``: in a fresh namespace ``l3f-bench-<random>`` (always
deleted), ``count`` /32 routes spread over ``taps`` veth taps are programmed by
``EndpointRoutes.converge`` (the agent's code path: kernel dump, diff, batched
writes, every ack checked), removed again, then added by ``ip -n NS -batch``.
Each is run ``rounds`` times; the medians are reported.

Parts are functions ``(context) -> dict`` in ``PARTS``; ``run`` merges their
results, so later parts (convergence from the controller, BGP propagation)
slot in beside this one. ``--set parts=program`` selects parts.

Why 100 taps and not one per endpoint: the routes, not the links, are being
measured; creating 10,000 veth pairs takes longer than the whole benchmark and
a host never has that many VMs. 100 distinct output devices still exercise the
per-device lookups.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.routes import RTPROT_L3FABRIC, EndpointRoutes

FIRST_ADDRESS = ipaddress.IPv4Address("10.128.0.0")


@dataclass
class Context:
    """What every part gets: its options and a namespace with taps."""

    count: int
    taps: int
    rounds: int
    netns: str
    tap_names: list[str] = field(default_factory=list)

    def desired(self) -> dict[str, str]:
        return {
            f"{FIRST_ADDRESS + i}/32": self.tap_names[i % len(self.tap_names)]
            for i in range(self.count)
        }


def _ip_batch(netns: str, lines: list[str]) -> float:
    """Run ``ip -n NS -batch`` on ``lines``; the wall time in seconds."""
    with tempfile.NamedTemporaryFile("w", prefix="l3f-bench-", suffix=".batch") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        start = time.perf_counter()
        done = subprocess.run(
            ["ip", "-n", netns, "-batch", f.name], capture_output=True, text=True, timeout=120
        )
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"ip -batch failed: {done.stderr.strip()[:500]}")
    return elapsed


def _make_taps(ctx: Context) -> None:
    ctx.tap_names = [f"tapbench{i:06d}" for i in range(ctx.taps)]
    lines = []
    for i, tap in enumerate(ctx.tap_names):
        lines.append(f"link add {tap} type veth peer name l3fbp{i:06d}")
        lines += [f"link set {tap} up", f"link set l3fbp{i:06d} up"]
    _ip_batch(ctx.netns, lines)


def program(ctx: Context) -> dict[str, float | int]:
    """Part (a): ``program_s`` against ``ip_batch_s`` for the same routes."""
    desired = ctx.desired()
    batch = [f"route add {p} dev {tap} proto {RTPROT_L3FABRIC} scope link" for p, tap in desired.items()]  # fmt: skip
    ours: list[float] = []
    theirs: list[float] = []
    with EndpointRoutes(ctx.netns) as routes:
        for _ in range(ctx.rounds):
            start = time.perf_counter()
            plan = routes.converge(desired)
            ours.append(time.perf_counter() - start)
            if len(plan.replace) != ctx.count or len(routes.read()) != ctx.count:
                raise RuntimeError("route programming did not install every route")
            routes.converge({})
            theirs.append(_ip_batch(ctx.netns, batch))
            if len(routes.read()) != ctx.count:
                raise RuntimeError("ip -batch did not install every route")
            routes.converge({})
    program_s, ip_batch_s = statistics.median(ours), statistics.median(theirs)
    return {
        "count": ctx.count,
        "taps": ctx.taps,
        "program_s": round(program_s, 4),
        "ip_batch_s": round(ip_batch_s, 4),
        "program_over_ip_batch": round(program_s / ip_batch_s, 2),
    }


PARTS: dict[str, Callable[[Context], dict[str, float | int]]] = {"program": program}


def _int_option(options: dict[str, str], key: str, default: int, low: int, high: int) -> int:
    raw = options.get(key, default)
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"bench routes: {key} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SystemExit(f"bench routes: {key} must be within {low}..{high}, got {value}")
    return value


def run(options: dict[str, str]) -> dict[str, float | int]:
    """Run the selected parts (default: all) and merge their results."""
    if os.geteuid() != 0:
        raise SystemExit("bench routes needs root (it creates a network namespace)")
    count = _int_option(options, "count", 10_000, 1, 1_000_000)
    taps = _int_option(options, "taps", 100, 1, 4096)
    rounds = _int_option(options, "rounds", 3, 1, 50)
    names = options.get("parts", ",".join(PARTS)).split(",")
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise SystemExit(f"bench routes: unknown part(s) {unknown}; known: {sorted(PARTS)}")
    ctx = Context(count, taps, rounds, f"l3f-bench-{secrets.token_hex(3)}")
    netns_mod.create(ctx.netns)
    try:
        _make_taps(ctx)
        result: dict[str, float | int] = {}
        for name in names:
            result.update(PARTS[name](ctx))
        return result
    finally:
        netns_mod.delete(ctx.netns)
