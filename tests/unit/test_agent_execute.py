"""execute.run: nftables ops beside the tap preparation, all before any route."""

from __future__ import annotations

import threading

from l3fabric.agent import execute
from l3fabric.agent.execute import PassMetrics
from l3fabric.agent.ops import (
    OK,
    GuardElements,
    Op,
    Outcome,
    RoutesSet,
    SecurityGroupsApply,
    TapsPrepare,
)
from l3fabric.dataplane.links import LinkInfo
from l3fabric.dataplane.sg_diff import Transaction
from l3fabric.dataplane.sg_model import SgState
from l3fabric.dataplane.sg_render import Rendered

TAP = "tap0123456789a"
OTHER = "tapabcdefabcde"


def _ops() -> list[Op]:
    return [
        SecurityGroupsApply(
            Transaction("add element ...\n"), Rendered(), SgState(), frozenset({TAP})
        ),
        GuardElements(add=((TAP, "10.0.0.1/32"), (OTHER, "10.0.0.2/32"))),
        TapsPrepare(taps=((TAP, LinkInfo(5, 0, {})), (OTHER, LinkInfo(6, 0, {})))),
        RoutesSet(replace=(("10.0.0.1/32", TAP, 5), ("10.0.0.2/32", OTHER, 6))),
    ]


class Host:
    """Appliers that see each other: the nft ones wait (bounded) for the taps to start."""

    def __init__(self, sg_outcome: Outcome = OK) -> None:
        self.taps_started = threading.Event()
        self.sg_outcome = sg_outcome
        self.nft_saw_taps: list[bool] = []
        self.done: list[str] = []
        self.routed: list[tuple[str, str, int]] = []

    def apply(self, op: Op) -> Outcome:
        if isinstance(op, TapsPrepare):
            self.taps_started.set()
        elif isinstance(op, RoutesSet):
            self.routed += op.replace
        else:
            self.nft_saw_taps.append(self.taps_started.wait(2.0))
        self.done.append(type(op).__name__)
        return self.sg_outcome if isinstance(op, SecurityGroupsApply) else OK


def _run(host: Host) -> PassMetrics:
    metrics = PassMetrics()
    appliers = dict.fromkeys(("secgroups", "nft", "taps", "routes"), host)
    execute.run(_ops(), appliers, metrics)
    return metrics


def test_nftables_ops_run_beside_the_taps_and_end_before_the_routes() -> None:
    host = Host()
    metrics = _run(host)
    # Both nft ops ran while the taps were being prepared (not one after the other).
    assert host.nft_saw_taps == [True, True]
    assert host.done[-1] == "RoutesSet"
    assert host.done.index("SecurityGroupsApply") < host.done.index("GuardElements")
    assert {"secgroups", "guard", "taps", "routes"} <= metrics.steps.keys()


def test_a_failed_security_group_op_still_keeps_its_tap_unrouted() -> None:
    host = Host(sg_outcome=Outcome(errors=("secgroups: refused",), failed=True))
    metrics = _run(host)
    assert host.routed == [("10.0.0.2/32", OTHER, 6)]
    assert metrics.errors == ["secgroups: refused"]
