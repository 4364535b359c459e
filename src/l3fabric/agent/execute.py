"""Running a plan: each operation to the applier of its domain, in order, with pass metrics.

An ``Applier`` is anything with ``apply(op) -> Outcome`` (agent/appliers.py
wraps the kernel, nftables, BIRD and the probes; unit tests record). ``run``
prunes each op by what earlier ones could not do (ops.Blocked), catches an
applier's exception as that op's failure, and times every step into a
``PassMetrics``, which the agent logs, keeps for its heartbeat and writes to
``<run dir>/passes.json`` for the benchmarks (structured: no log parsing).

One exception to strict order: the nftables ops (security groups, guard)
that come right before the tap preparation run, in their order, in a thread
beside it; all end before any route.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from l3fabric.agent.ops import (
    Blocked,
    GuardElements,
    GuardTable,
    Op,
    Outcome,
    SecurityGroupsApply,
    TapsPrepare,
)

# Ops that only write nftables: they may run beside the tap preparation.
_NFT_OPS = (SecurityGroupsApply, GuardTable, GuardElements)


class Applier(Protocol):
    """Carries out operations of one domain (routes, nftables, BIRD ...)."""

    def apply(self, op: Op) -> Outcome: ...


@dataclass
class StepMetrics:
    """One step of a pass: its time, operations, objects touched and errors."""

    seconds: float = 0.0
    ops: int = 0
    changes: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class PassMetrics:
    """One reconcile pass, as the benchmarks and the heartbeat read it."""

    number: int = 0
    kind: str = "full"  # "full" (kernel re-read) or "incremental" (the changed taps only)
    started_at: float = 0.0  # wall clock
    seconds: float = 0.0
    # CPU time of the pass's threads (the loop's and the nftables one beside the
    # taps): on a busy machine wall time measures the machine, this the pass.
    cpu_seconds: float = 0.0
    steps: dict[str, StepMetrics] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Not fields (not in to_json): where the loop thread's clocks stood at the start.
        self.begun = time.monotonic()
        self.cpu_begun = time.thread_time()

    def finish(self) -> None:
        """The pass is over: its seconds, and the loop thread's CPU added to ``cpu_seconds``."""
        self.seconds = time.monotonic() - self.begun
        self.cpu_seconds += time.thread_time() - self.cpu_begun

    def step(self, name: str) -> StepMetrics:
        return self.steps.setdefault(name, StepMetrics())

    def timed(self, name: str, started: float) -> None:
        self.step(name).seconds += time.monotonic() - started

    @property
    def errors(self) -> list[str]:
        return [e for s in self.steps.values() for e in s.errors]

    @property
    def operations(self) -> int:
        return sum(s.ops for s in self.steps.values())

    @property
    def routes_changed(self) -> int:
        return self.steps["routes"].changes if "routes" in self.steps else 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["operations"] = self.operations
        data["errors"] = self.errors
        return data


def _apply(applier: Applier, op: Op) -> Outcome:
    try:
        return applier.apply(op)
    except Exception as exc:
        return Outcome(errors=(f"{op.step}: {exc}",), failed=True)


def _record(metrics: PassMetrics, op: Op, outcome: Outcome, seconds: float) -> None:
    step = metrics.step(op.step)
    step.seconds += seconds
    step.ops += 1
    step.changes += op.size()
    step.errors += outcome.errors


def _beside_taps(queue: list[Op]) -> list[Op]:
    """The nftables ops at the head of ``queue`` if the tap preparation follows them (taken)."""
    n = 0
    while n < len(queue) and isinstance(queue[n], _NFT_OPS):
        n += 1
    if not n or n == len(queue) or not isinstance(queue[n], TapsPrepare):
        return []
    taken = queue[:n]
    del queue[:n]
    return taken


def _apply_all(
    ops: list[Op], appliers: Mapping[str, Applier]
) -> tuple[list[tuple[Op, Outcome, float]], float]:
    """Each op's outcome and seconds, and the CPU time of this (the nft) thread."""
    done = []
    cpu = time.thread_time()
    for op in ops:
        started = time.monotonic()
        done.append((op, _apply(appliers[op.domain], op), time.monotonic() - started))
    return done, time.thread_time() - cpu


def run(ops: Sequence[Op], appliers: Mapping[str, Applier], metrics: PassMetrics) -> Blocked:
    """Apply ``ops`` in order; returns what could not be done (for statuses)."""
    blocked = Blocked()
    queue = list(ops)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nft") as pool:
        while queue:
            beside = _beside_taps(queue)
            if beside:
                # nftables (in process: libnftables drops the GIL) in a thread
                # while this one prepares the taps; both end before any route.
                nft = pool.submit(_apply_all, beside, appliers)
                taps = queue.pop(0).pruned(blocked)
                if taps is not None:
                    begun = time.monotonic()
                    outcome = _apply(appliers[taps.domain], taps)
                    _record(metrics, taps, outcome, time.monotonic() - begun)
                    taps.block(outcome, blocked)
                done, cpu = nft.result()
                metrics.cpu_seconds += cpu
                for op, outcome, seconds in done:
                    _record(metrics, op, outcome, seconds)
                    op.block(outcome, blocked)
                continue
            op = queue.pop(0).pruned(blocked)
            if op is None:
                continue
            started = time.monotonic()
            outcome = _apply(appliers[op.domain], op)
            _record(metrics, op, outcome, time.monotonic() - started)
            op.block(outcome, blocked)
    return blocked
