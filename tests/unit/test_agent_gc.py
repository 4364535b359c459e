"""The host agent's full pass freezes what it leaves; what a later pass replaces is still freed."""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator

import pytest

from l3fabric.agent.host import HostAgent
from l3fabric.agent.observed import Observed
from l3fabric.client import HostState

from .agent_ports import port
from .recording import DOMAINS, Recorder

HOST = {"name": "h1", "router_id": "172.17.0.2", "address": "172.16.0.2", "asn": None, "peers": None}  # fmt: skip


def _view(generation: int) -> HostState:
    ports = (port(f"{i:08x}-1111-2222-3333-{generation:012x}", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(2000))  # fmt: skip
    return HostState(fabric={"asn": 65000}, host=HOST, ports={p["id"]: p for p in ports})


@pytest.fixture
def agent(tmp_path) -> Iterator[HostAgent]:
    agent = HostAgent("h1", "http://127.0.0.1:9", tmp_path, dhcp=False)
    reader = types.SimpleNamespace(full=lambda model: Observed(bird_running=True))
    agent._reader = reader  # type: ignore[assignment]
    agent._appliers = dict.fromkeys(DOMAINS, Recorder())
    yield agent
    gc.unfreeze()  # the rest of the test session collects as usual


def test_a_full_pass_freezes_and_a_replaced_view_is_freed(agent) -> None:
    agent.reconcile(_view(1), full=True)
    frozen = gc.get_freeze_count()
    assert frozen > 6000  # the pass's state (2,000 ports) is out of the collector's walk
    for generation in range(2, 6):  # every port object replaced, each time
        agent._appliers["routes"].ops.clear()  # type: ignore[attr-defined]  # the fake's record
        agent.reconcile(_view(generation), full=True)
    # Reference counting freed each replaced generation (each is >8,000
    # containers: the port dicts, their lists, the endpoints): not five of them.
    assert gc.get_freeze_count() - frozen < 2000


def test_the_collector_off_since_the_start_runs_again_after_the_first_pass(agent) -> None:
    # running() turns it off before the snapshot; the first pass turns it back on.
    gc.disable()
    try:
        agent.reconcile(_view(1), full=False)  # the first pass observes everything anyway
        assert gc.isenabled()
    finally:
        gc.enable()
