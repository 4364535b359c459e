"""Which passes re-read the whole host (full) and which only what changed (incremental).

Full: the first pass, the timer's pass, a pass after lost link events, any
pass after a failed one, and at the latest FULL_PASS_BACKSTOP resync
intervals after the last full one (a host whose events never leave the timer
a quiet interval). Every other wake-up is incremental and re-reads only the
taps named by link events and those of the ports the watch changed. The
reader and the appliers are fakes; the pass itself is the agent's own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

import pytest

from l3fabric.agent import host as host_mod
from l3fabric.agent.host import FULL_PASS_BACKSTOP, HostAgent
from l3fabric.agent.observed import Observed
from l3fabric.agent.ops import Outcome, RoutesSet
from l3fabric.client import HostState
from l3fabric.dataplane.links import tap_name

from .agent_ports import A, B, port
from .recording import DOMAINS, Recorder
from .test_agent_plan import HOST, _tap

RESYNC_S = 10.0


class Reader:
    """The kernel as ``HostReader`` reads it: records each read, full or of some taps."""

    def __init__(self) -> None:
        self.reads: list[str | frozenset[str]] = []  # "full", or the taps re-read
        self.taps = dict([_tap(A, 5), _tap(B, 6)])

    def full(self, remembered: Observed | None) -> Observed:
        self.reads.append("full")
        return Observed(taps=self.taps, bird_running=True)

    def refresh(self, model: Observed, changed: Collection[str]) -> Observed:
        self.reads.append(frozenset(changed))
        return dataclasses.replace(model, taps={**model.taps, **self.taps})


class Watcher:
    """The watch's cache: a view, and the ports changed since the last call."""

    def __init__(self, *ports: dict[str, Any]) -> None:
        self.ports = {p["id"]: p for p in ports}
        self.changed: frozenset[str] | None = None  # None: a snapshot (compare all)

    def change(self, new: dict[str, Any]) -> None:
        self.ports = {**self.ports, new["id"]: new}
        self.changed = (self.changed or frozenset()) | {new["id"]}

    def state_and_changes(self) -> tuple[HostState, frozenset[str] | None]:
        changed, self.changed = self.changed, frozenset()
        return HostState(fabric={"asn": 65000}, host=HOST, ports=dict(self.ports)), changed


@pytest.fixture
def agent(tmp_path, monkeypatch) -> HostAgent:
    agent = HostAgent("h1", "http://127.0.0.1:9", tmp_path, RESYNC_S, dhcp=False)
    agent._reader = Reader()  # type: ignore[assignment]
    agent.watcher = Watcher(port(A, "10.1.0.2"))  # type: ignore[assignment]
    agent._appliers = dict.fromkeys(DOMAINS, Recorder())
    monkeypatch.setattr(agent, "report_soon", lambda: None)
    clock = [1000.0]
    monkeypatch.setattr(host_mod.time, "monotonic", lambda: clock[0])
    agent.clock = clock  # type: ignore[attr-defined]
    return agent


def _pass(agent: HostAgent, timed: bool = False, after_s: float = 1.0) -> str | frozenset[str]:
    """One pass ``after_s`` after the last; what it read of the kernel."""
    agent.clock[0] += after_s  # type: ignore[attr-defined]
    agent.pass_once(timed)
    agent.passes += 1
    return agent._reader.reads[-1]  # type: ignore[attr-defined]


def test_the_first_pass_and_the_timers_are_full_the_others_incremental(agent) -> None:
    assert _pass(agent) == "full"  # start-up
    assert agent.last_pass.kind == "full"
    assert _pass(agent) == frozenset()  # woken with nothing changed: nothing re-read
    assert agent.last_pass.kind == "incremental" and agent.last_pass.operations == 0
    assert _pass(agent, timed=True) == "full"


def test_an_incremental_pass_rereads_the_taps_of_changed_ports_and_link_events(agent) -> None:
    _pass(agent)
    agent.watcher.change(port(B, "10.1.0.3"))
    agent._taps_changed({tap_name(A)})
    assert _pass(agent) == {tap_name(A), tap_name(B)}
    routes = agent._appliers["routes"].ops
    assert RoutesSet(replace=(("10.1.0.3/32", tap_name(B), 6),)) in routes


def test_events_that_never_leave_the_timer_a_quiet_interval_still_get_a_full_pass(agent) -> None:
    _pass(agent)
    step = RESYNC_S / 2  # an event every half interval: the timer never fires
    kinds = [_pass(agent, after_s=step) for _ in range(2 * FULL_PASS_BACKSTOP)]
    first_full = kinds.index("full")
    assert all(k != "full" for k in kinds[:first_full])
    assert (first_full + 1) * step >= FULL_PASS_BACKSTOP * RESYNC_S  # not earlier than due
    assert first_full + 1 <= FULL_PASS_BACKSTOP * RESYNC_S / step  # and not later


def test_lost_link_events_mean_a_full_pass(agent) -> None:
    _pass(agent)
    agent._taps_changed(None)  # the link watcher's socket overflowed
    assert _pass(agent) == "full"
    assert _pass(agent) == frozenset()


def test_a_pass_after_a_failed_one_is_full(agent) -> None:
    _pass(agent)
    failing = Recorder(fail={RoutesSet: Outcome(errors=("refused",), failed=True)})
    agent._appliers = dict.fromkeys(DOMAINS, failing)
    agent.watcher.change(port(B, "10.1.0.3"))
    assert _pass(agent) == {tap_name(B)}
    assert agent.last_pass.errors == ["refused"]
    agent._appliers = dict.fromkeys(DOMAINS, Recorder())
    assert _pass(agent) == "full"  # the kernel may hold anything in between: re-read
