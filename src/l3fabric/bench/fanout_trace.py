"""Where a fan-out event's time goes: the ``event_trace`` lines of a run, by stage.

With ``L3F_EVENT_TRACE=PREFIX`` set for ``l3fabric bench fanout``, the
server, the simulated agents and the benchmark stamp each created port at
every stage it passes (``l3fabric.event_trace``). ``stages`` joins the lines
by port id and gives, for each step from one stage to the next, its median
and p99, and how the slowest 1 % of events spent their time.
"""

from __future__ import annotations

import glob
import itertools
import statistics
from collections.abc import Iterable
from typing import Any

# In the order an event passes them (``feed``: etcd only).
ORDER = ("commit", "feed", "read", "publish", "answer", "seen")


def load(prefix: str) -> dict[str, dict[str, float]]:
    """Port id -> stage -> its first time, from every process's file."""
    stamps: dict[str, dict[str, float]] = {}
    for path in glob.glob(f"{glob.escape(prefix)}.*"):
        with open(path) as lines:
            for line in lines:
                stage, ident, at = line.split()
                stamps.setdefault(ident, {}).setdefault(stage, float(at))
    return stamps


def stages(prefix: str, created: dict[str, float]) -> dict[str, Any]:
    """Per step (``commit_read``, ...): p50/p99 in ms over ``created``'s ports,
    and the mean of each step over the slowest 1 % (by commit to seen)."""
    stamps = load(prefix)
    rows = [{**stamps.get(port, {}), "created": at} for port, at in created.items()]
    steps = _steps(rows)
    out: dict[str, Any] = {}
    for name, values in steps.items():
        if values:
            out[f"trace_{name}_p50_ms"] = round(1000 * statistics.median(values), 2)
            out[f"trace_{name}_p99_ms"] = round(1000 * _p99(values), 2)
    whole = [(r["seen"] - r["commit"], r) for r in rows if "seen" in r and "commit" in r]
    whole.sort(key=lambda pair: pair[0])
    slow = [r for _, r in whole[-max(1, len(whole) // 100) :]] if whole else []
    for name, values in _steps(slow).items():
        if values:
            out[f"trace_{name}_slowest_ms"] = round(1000 * statistics.fmean(values), 2)
    return out


def _steps(rows: Iterable[dict[str, float]]) -> dict[str, list[float]]:
    steps: dict[str, list[float]] = {}
    for row in rows:
        present = [s for s in ORDER if s in row]
        for before, after in itertools.pairwise(present):
            steps.setdefault(f"{before}_{after}", []).append(row[after] - row[before])
        if "commit" in row and "created" in row:
            steps.setdefault("commit_created", []).append(row["created"] - row["commit"])
    return steps


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
