"""A recording applier for the agents' plan tests (host and gateway)."""

from __future__ import annotations

from collections.abc import Callable

from l3fabric.agent import execute
from l3fabric.agent.execute import PassMetrics
from l3fabric.agent.ops import OK, Blocked, Op, Outcome

# Every domain of both agents' plans (agent/ops.py, gateway/ops.py).
DOMAINS = (
    "host",
    "nft",
    "secgroups",
    "taps",
    "routes",
    "announce",
    "nexthops",
    "probes",
    "bird",
    "dhcp",
    "nat",
    "anycast",
)


class Recorder:
    """Every applier at once: records each op; ``fail`` maps an op type to its outcome."""

    def __init__(self, fail: dict[type, Outcome] | None = None) -> None:
        self.ops: list[Op] = []
        self.fail = fail or {}

    def apply(self, op: Op) -> Outcome:
        self.ops.append(op)
        return self.fail.get(type(op), OK)

    def run(self, ops: list[Op], metrics: PassMetrics | None = None) -> Blocked:
        return execute.run(ops, dict.fromkeys(DOMAINS, self), metrics or PassMetrics())

    def index(self, kind: type, where: Callable[[Op], bool] = lambda op: True) -> int:
        return next(i for i, op in enumerate(self.ops) if isinstance(op, kind) and where(op))
