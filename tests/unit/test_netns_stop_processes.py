"""``lab.netns.stop_processes``: a daemon started while others are stopped is stopped too."""

from __future__ import annotations

import pytest

from l3fabric.lab import netns


def test_a_process_started_during_the_kill_is_killed_in_the_next_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The agent (10) starts dnsmasq (11) as it is being stopped.
    listings = {"ns1": [[10], [11], []]}
    killed: list[list[int]] = []
    monkeypatch.setattr(netns, "namespace_pids", lambda ns: listings[ns].pop(0))
    monkeypatch.setattr(netns, "kill_pids", lambda pids: killed.append(sorted(pids)))

    netns.stop_processes(["ns1"])

    assert killed == [[10], [11]]


def test_rounds_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds: list[list[int]] = []
    monkeypatch.setattr(netns, "namespace_pids", lambda ns: [7])  # never dies
    monkeypatch.setattr(netns, "kill_pids", lambda pids: rounds.append(list(pids)))

    netns.stop_processes(["ns1", "ns2"])

    assert rounds == [[7, 7]] * netns.KILL_ROUNDS


def test_namespaces_without_processes_cost_one_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[str] = []
    monkeypatch.setattr(netns, "namespace_pids", lambda ns: listed.append(ns) or [])
    monkeypatch.setattr(netns, "kill_pids", lambda pids: pytest.fail("nothing to kill"))

    netns.stop_processes(["a", "b"])

    assert listed == ["a", "b"]
