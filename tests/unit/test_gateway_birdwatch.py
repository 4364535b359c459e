"""The BIRD watch: the fabric gate on upstream announcements, and a BIRD found dead."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from l3fabric.gateway.birdwatch import SETTLE_S, BirdWatch, fabric_ready
from l3fabric.gateway.observed import GatewayObserved
from l3fabric.gateway.ops import GatewayBirdConfigure
from l3fabric.gateway.plan import desired_state, plan
from l3fabric.routing.bird_config import render
from l3fabric.routing.bird_control import ProtocolStatus

from .test_gateway_pair import POOL, desired, view
from .test_gateway_plan import EGRESS

NOW = datetime(2026, 12, 2, 20, 0, 0)


def bgp(name: str, up_since: datetime | None) -> ProtocolStatus:
    """Session ``name``, Established since ``up_since`` (None: down)."""
    if up_since is None:
        return ProtocolStatus(name, "BGP", "---", "start", "2026-12-02 19:00:00.000", "Active")
    since = up_since.isoformat(sep=" ", timespec="milliseconds")
    return ProtocolStatus(name, "BGP", "---", "up", since, "Established")


def test_upstream_waits_for_every_fabric_session_or_settles_after_the_first() -> None:
    recent, settled = NOW - timedelta(seconds=1), NOW - timedelta(seconds=SETTLE_S)
    upstream = bgp("up:internet", recent)
    assert fabric_ready([upstream], NOW)  # nothing to wait for
    assert not fabric_ready([upstream, bgp("h:h1", None), bgp("h:h2", None)], NOW)
    assert not fabric_ready([upstream, bgp("h:h1", recent), bgp("h:h2", None)], NOW)
    assert fabric_ready([upstream, bgp("h:h1", recent), bgp("h:h2", recent)], NOW)
    # A host that stays down does not keep the gateway silent for ever.
    assert fabric_ready([bgp("h:h1", settled), bgp("h:h2", None)], NOW)
    # Once open, the gate shuts only when no fabric session is left.
    one_down = [bgp("h:h1", recent), bgp("h:h2", None)]
    assert fabric_ready(one_down, NOW, was=True) and not fabric_ready(one_down, NOW)
    assert not fabric_ready([bgp("h:h1", None), bgp("h:h2", None)], NOW, was=True)
    # Upstream sessions are not the fabric: one that is down holds nothing.
    assert fabric_ready([bgp("up:internet", None), bgp("p:tor", recent)], NOW)


class FakeControl:
    def __init__(self) -> None:
        self.rows: list[ProtocolStatus] = []

    def request(self, command: str) -> list[tuple[int, str]]:
        assert command == "show protocols"
        return [
            (1002, f"{p.name} {p.proto} {p.table} {p.state} {p.since} {p.info}") for p in self.rows
        ]


class FakeBird:
    def __init__(self) -> None:
        self.running = True
        self.control = FakeControl()

    def alive(self) -> bool:
        return self.running


def test_the_watch_wakes_the_agent_when_the_gate_flips_and_drops_steering_when_bird_dies() -> None:
    bird = FakeBird()
    dead: list[bool] = []
    watch = BirdWatch(bird, lambda: None, lambda: dead.append(True), clock=lambda: NOW)  # type: ignore[arg-type]
    bird.control.rows = [bgp("h:h1", None)]
    assert not watch.poll() and not watch.ready  # closed from the start
    bird.control.rows = [bgp("h:h1", NOW)]
    assert watch.poll() and watch.ready
    assert not watch.poll()  # no change, no wake
    bird.running = False  # killed: the steering route goes once, the gate closes
    assert watch.poll() and dead == [True] and not watch.ready
    assert not watch.poll() and dead == [True]
    bird.running = True  # restarted: the sessions come up again
    assert watch.poll() and watch.ready and dead == [True]


def test_a_gateway_without_the_fabrics_routes_announces_nothing_upstream(tmp_path: Path) -> None:
    ready = desired(tmp_path)
    waiting = desired_state(
        "gw1", view(), GatewayObserved(egress=EGRESS, fabric_ready=False), sync_dir=tmp_path
    )
    assert ready.bird is not None and waiting.bird is not None
    up = [p for p in waiting.bird.peers if p.role == "up"]
    assert up and all(p.export_policy.kind == "none" for p in up)
    assert all(p.export_policy.kind == "originated" for p in ready.bird.peers if p.role == "up")
    assert POOL in ready.policy.public
    # The fabric still gets everything (its default route included).
    fabric = [(p.name, p.export_policy) for p in waiting.bird.peers if p.role != "up"]
    assert fabric == [(p.name, p.export_policy) for p in ready.bird.peers if p.role != "up"]
    # The gate opening is a BIRD configure like any other; nothing else changes.
    observed = GatewayObserved(egress=EGRESS, bird_running=True, bird_text=render(waiting.bird))
    assert [op for op in plan(ready, observed) if op.domain == "bird"] == [
        GatewayBirdConfigure(config=ready.bird)
    ]


def test_a_steering_route_that_could_not_be_dropped_is_dropped_at_the_next_poll() -> None:
    bird, calls = FakeBird(), []

    def drop() -> None:
        calls.append(True)
        if len(calls) == 1:
            raise RuntimeError("ip route flush: busy")

    watch = BirdWatch(bird, lambda: None, drop, clock=lambda: NOW)  # type: ignore[arg-type]
    bird.running = False
    with pytest.raises(RuntimeError):
        watch.poll()
    assert watch.poll() and len(calls) == 2
    assert not watch.poll() and len(calls) == 2
