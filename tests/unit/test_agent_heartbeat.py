"""The host agent's heartbeat: the statuses that changed, and every status now and then."""

from __future__ import annotations

from typing import Any

import pytest

from l3fabric.agent import host as host_mod
from l3fabric.agent.host import FULL_REPORT_S, HostAgent


class Client:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, str]] = []
        self.fail = fail

    def heartbeat(self, host: str, ports: dict[str, str], **_: Any) -> None:
        if self.fail:
            raise OSError("controller away")
        self.sent.append(dict(ports))


class Probes:
    def flush_reports(self, client: object) -> None:
        pass


@pytest.fixture
def agent(tmp_path, monkeypatch) -> HostAgent:
    agent = HostAgent("h1", "http://127.0.0.1:9", tmp_path)
    agent.client = Client()  # type: ignore[assignment]
    agent._probes = Probes()  # type: ignore[assignment]
    monkeypatch.setattr(agent, "bgp_sessions", list)
    clock = [1000.0]
    monkeypatch.setattr(host_mod.time, "monotonic", lambda: clock[0])
    agent.clock = clock  # type: ignore[attr-defined]
    return agent


def test_a_heartbeat_carries_only_the_statuses_that_changed(agent) -> None:
    many = {f"p{i}": "ACTIVE" for i in range(10_000)}
    agent.statuses = dict(many)
    agent.send_heartbeat()
    agent.statuses = {**many, "p5": "DOWN", "new": "DOWN"}
    agent.clock[0] += 2
    agent.send_heartbeat()
    agent.clock[0] += 2
    agent.send_heartbeat()
    first, change, quiet = agent.client.sent
    assert first == many  # at start: every status
    assert change == {"p5": "DOWN", "new": "DOWN"} and quiet == {}


def test_every_status_again_now_and_then_and_after_a_failed_heartbeat(agent) -> None:
    agent.statuses = {"a": "ACTIVE", "b": "DOWN"}
    agent.send_heartbeat()
    agent.statuses = {"a": "DOWN", "b": "DOWN"}
    agent.client.fail = True
    with pytest.raises(OSError):
        agent.send_heartbeat()
    agent.client.fail = False
    agent.send_heartbeat()  # the change the controller did not take is sent again
    agent.clock[0] += FULL_REPORT_S
    agent.send_heartbeat()  # a controller that lost a status gets it back
    assert agent.client.sent == [{"a": "ACTIVE", "b": "DOWN"}, {"a": "DOWN"}, {"a": "DOWN", "b": "DOWN"}]  # fmt: skip


def test_statuses_a_pass_changed_are_sent_from_the_ports_it_touched(agent) -> None:
    many = {f"p{i}": "ACTIVE" for i in range(1_000)}
    agent.statuses = many
    agent.send_heartbeat()
    # A pass that touched p5 and a new port (what the agent's reconcile reports).
    agent._set_statuses({**many, "p5": "DOWN", "new": "DOWN"}, {"p5", "new", "p6"})
    agent.client.fail = True
    with pytest.raises(OSError):
        agent.send_heartbeat()
    agent.client.fail = False
    agent._set_statuses({**many, "p5": "DOWN", "new": "ACTIVE"}, {"new"})
    agent.clock[0] += 2
    agent.send_heartbeat()  # the failed one's changes too
    agent.clock[0] += 2
    agent.send_heartbeat()
    assert agent.client.sent[1:] == [{"p5": "DOWN", "new": "ACTIVE"}, {}]
