"""Heartbeats cost no store write (l3fabric.service.liveness): the controller
keeps each agent's report in memory and writes only a change of state (a BGP
session up or down), while the host and gateway views keep their fields."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l3fabric import keys
from l3fabric.service.errors import BadRequest
from l3fabric.service.fabric import FabricService
from l3fabric.service.liveness import MemoryLiveness
from l3fabric.store.sqlite import SqliteStore

HOST = {"router_id": "10.0.0.11", "address": "10.0.0.11"}
GATEWAY = {"router_id": "10.0.0.1", "fabric_addresses": ["10.0.0.1"]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "liveness.db")
    yield s
    s.close()


def _session(state: str, info: str = "") -> dict[str, Any]:
    return {"name": "tor", "peer": "10.0.0.1", "state": state, "info": info}


def test_steady_heartbeats_write_nothing(store: SqliteStore) -> None:
    fabric = FabricService(store)
    fabric.hosts.register("h1", HOST)
    port = {"id": "p1", "binding:host_id": "h1", "status": "DOWN"}
    store.put(keys.neutron_key("ports", "p1"), port)
    beat = {"bgp": [_session("Established")], "ports": {"p1": "ACTIVE"}, "agent": {"n": 0}}
    fabric.host_heartbeat("h1", beat)
    after_first = store.revision()
    for n in range(1, 50):
        # Counters and details change on every beat; the state does not.
        fabric.host_heartbeat(
            "h1", {**beat, "agent": {"n": n}, "bgp": [_session("Established", f"{n}s")]}
        )
    assert store.revision() == after_first
    shown = fabric.hosts.show("h1")
    assert shown["status"] == "up" and shown["agent"] == {"n": 49}
    assert shown["bgp"][0]["info"] == "49s" and shown["heartbeat_at"] is not None


class CountingStore(SqliteStore):
    """SQLite that counts every read and write (the event loop must do none)."""

    calls = 0

    def get(self, key: str) -> Any:
        self.calls += 1
        return super().get(key)

    def get_many(self, keys: Any) -> Any:
        self.calls += 1
        return super().get_many(keys)

    def txn(self, ops: Any) -> int:
        self.calls += 1
        return super().txn(ops)


def test_only_a_heartbeat_that_needs_no_store_is_served_without_it(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "counted.db")
    fabric = FabricService(store)
    fabric.hosts.register("h1", HOST)
    store.put(keys.neutron_key("ports", "p1"), {"id": "p1", "binding:host_id": "h1"})
    beat = {"bgp": [_session("Established")], "ports": {"p1": "ACTIVE"}}
    store.calls = 0
    assert fabric.host_heartbeat("h1", beat, store=False) is None  # the first: not known
    assert store.calls == 0 and fabric.hosts.liveness.last("host", "h1") is None
    fabric.host_heartbeat("h1", beat)
    store.calls = 0
    for n in range(5):  # steady: answered from memory, and recorded
        answer = fabric.host_heartbeat("h1", {**beat, "agent": {"n": n}}, store=False)
        assert answer == {"host": "h1", "ports_changed": []}
    assert fabric.hosts.show("h1")["agent"] == {"n": 4}
    store.calls = 0
    for changed in ({**beat, "ports": {"p1": "DOWN"}}, {"bgp": [_session("Active")]}):
        assert fabric.host_heartbeat("h1", changed, store=False) is None
    assert store.calls == 0
    with pytest.raises(BadRequest):  # refused the same way on the event loop
        fabric.host_heartbeat("h1", {"ports": "not a map"}, store=False)
    store.close()


def test_a_state_change_is_written_for_every_controller(store: SqliteStore) -> None:
    fabric = FabricService(store)
    fabric.hosts.register("h1", HOST)
    fabric.host_heartbeat("h1", {"bgp": [_session("Established")]})
    before = store.revision()
    fabric.host_heartbeat("h1", {"bgp": [_session("Active", "Connection refused")]})
    assert store.revision() == before + 1
    # Another controller on the same store (no heartbeat of its own) sees the new state.
    other = FabricService(store)
    assert [s["state"] for s in other.hosts.show("h1")["bgp"]] == ["Active"]
    assert other.hosts.list()[0]["bgp"][0]["state"] == "Active"


def test_gateway_counters_stay_in_memory_and_in_the_view(store: SqliteStore) -> None:
    fabric = FabricService(store)
    fabric.gateways.register("gw1", GATEWAY)
    fabric.gateway_heartbeat("gw1", {"nat": {"n": 1}})
    before = store.revision()
    fabric.gateway_heartbeat("gw1", {"nat": {"n": 2}, "anycast": {"prefixes": []}})
    assert store.revision() == before
    shown = fabric.gateways.show("gw1")
    assert shown["nat"] == {"n": 2} and shown["anycast"] == {"prefixes": []}


def test_a_deleted_host_is_forgotten(store: SqliteStore) -> None:
    fabric = FabricService(store)
    fabric.hosts.register("h1", HOST)
    fabric.host_heartbeat("h1", {})
    fabric.hosts.delete("h1")
    assert fabric.hosts.liveness.last("host", "h1") is None
    assert store.get("/fabric/status/hosts/h1") is None


def test_reports_expire_after_their_ttl() -> None:
    liveness = MemoryLiveness(ttl=0.0)
    liveness.beat("host", "h1", {"agent": {}})
    assert liveness.last("host", "h1") is None
    kept = MemoryLiveness()
    stamped = kept.beat("host", "h1", {"agent": {"v": 1}})
    assert kept.last("host", "h1") == stamped and "heartbeat_at" in stamped


def test_the_controller_an_agent_reports_to_is_known_to_every_controller(
    store: SqliteStore,
) -> None:
    fabric = FabricService(store)
    fabric.hosts.register("h1", HOST)
    beat = {"bgp": [_session("Established")], "agent": {"controller": "http://c1:9696", "n": 0}}
    fabric.host_heartbeat("h1", beat)
    before = store.revision()
    fabric.host_heartbeat("h1", {**beat, "agent": {"controller": "http://c1:9696", "n": 1}})
    assert store.revision() == before  # the same controller: nothing to write
    other = FabricService(store)
    assert other.hosts.show("h1")["agent"]["controller"] == "http://c1:9696"
    # A failover is a change of state: written once, seen by the other controller.
    other.host_heartbeat("h1", {**beat, "agent": {"controller": "http://c2:9696", "n": 2}})
    assert store.revision() == before + 1
    assert FabricService(store).hosts.show("h1")["agent"]["controller"] == "http://c2:9696"


def test_a_controller_shows_the_newer_state_another_controller_stored(store: SqliteStore) -> None:
    first, second = FabricService(store), FabricService(store)
    first.hosts.register("h1", HOST)
    beat = {"bgp": [_session("Established")], "agent": {"controller": "http://c1:9696"}}
    first.host_heartbeat("h1", beat)
    # The agent moves to the second controller, which stores the change.
    second.host_heartbeat("h1", {**beat, "agent": {"controller": "http://c2:9696"}})
    shown = first.hosts.show("h1")
    assert shown["agent"]["controller"] == "http://c2:9696"
    assert first.hosts.list()[0]["agent"]["controller"] == "http://c2:9696"
