"""Which store changes a host's agent sees (l3fabric.service.watch), on plain
events and a store, without HTTP: an agent acts on every event it is given
and misses every one it is not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l3fabric import keys
from l3fabric.service.errors import BadRequest, Gone
from l3fabric.service.watch import (
    check_watch,
    relevant_event,
    relevant_events,
    snapshot,
    watch_blocking,
)
from l3fabric.store import Event
from l3fabric.store.sqlite import SqliteStore

PORT = keys.neutron_key("ports", "p1")


def _port(host: str, **extra: Any) -> dict[str, Any]:
    return {"id": "p1", "binding:host_id": host, "status": "DOWN", **extra}


def _put(key: str, value: Any, prev: Any = None, revision: int = 7) -> Event:
    return Event("put", key, revision, value, prev)


def _seen(event: Event, host: str = "h1") -> tuple[str, str, str] | None:
    found = relevant_event(event, host)
    return None if found is None else (found["type"], found["kind"], found["id"])


def test_a_host_sees_its_own_ports_and_not_the_others() -> None:
    assert _seen(_put(PORT, _port("h1"))) == ("put", "port", "p1")
    assert _seen(_put(PORT, _port("h2"))) is None
    # A change of another host's port that never was this host's: nothing to do.
    assert _seen(_put(PORT, _port("h2", status="ACTIVE"), _port("h2"))) is None


@pytest.mark.parametrize(
    "event",
    [
        _put(PORT, _port("h2"), _port("h1")),  # moved to another host
        _put(PORT, _port(""), _port("h1")),  # unbound
        Event("delete", PORT, 7, None, _port("h1")),  # deleted
    ],
    ids=["moved", "unbound", "deleted"],
)
def test_a_port_that_leaves_the_host_is_a_delete_for_it(event: Event) -> None:
    found = relevant_event(event, "h1")
    assert found == {"type": "delete", "kind": "port", "id": "p1", "revision": 7, "object": None}


@pytest.mark.parametrize(
    ("key", "kind", "id_"),
    [
        (keys.neutron_key("networks", "n1"), "network", "n1"),
        (keys.neutron_key("subnets", "s1"), "subnet", "s1"),
        (keys.host_key("h2"), "host", "h2"),
        (keys.gateway_key("gw"), "gateway", "gw"),
    ],
)
def test_everyone_sees_networks_subnets_hosts_and_gateways(key: str, kind: str, id_: str) -> None:
    assert _seen(_put(key, {"name": id_}), "h1") == ("put", kind, id_)
    assert _seen(Event("delete", key, 8, None, {"name": id_}), "h9") == ("delete", kind, id_)
    # Re-registering the same thing changes nothing, so it wakes nobody.
    assert _seen(_put(key, {"name": id_}, {"name": id_})) is None


def test_the_fabric_config_is_always_sent_whole_with_defaults_filled_in() -> None:
    found = relevant_event(_put(keys.FABRIC_CONFIG, {"asn": 65100}), "h1")
    assert found is not None and found["kind"] == "fabric"
    assert found["object"]["asn"] == 65100 and found["object"]["peering"] == "gateway"
    # Deleted: the agents go back to the defaults rather than keep a stale one.
    gone = relevant_event(Event("delete", keys.FABRIC_CONFIG, 9, None, {"asn": 65100}), "h1")
    assert gone is not None and gone["type"] == "put" and gone["object"]["asn"] == 65000


@pytest.mark.parametrize(
    "key",
    [
        "/fabric/status/hosts/h1",  # heartbeats never wake a watch
        "/fabric/status/anycast/g1/h1",
        keys.ipam_key("s1", "10.0.0.5"),
        keys.allocated_key("n1"),
        keys.neutron_key("security-group-rules", "r1"),  # its group carries it
    ],
)
def test_status_reports_and_bookkeeping_wake_nobody(key: str) -> None:
    assert _seen(_put(key, {"x": 1})) is None


def test_a_port_status_report_wakes_not_even_its_own_host() -> None:
    reported = _port("h1", status="ACTIVE", revision_number=2, updated_at="later")
    before = _port("h1", revision_number=1, updated_at="now")
    assert _seen(_put(PORT, reported, before)) is None
    assert relevant_event(_put(PORT, reported, before), "gw", everything=True) is None
    # Anything the host programs that changes with it is sent.
    renamed = {**reported, "fixed_ips": [{"ip_address": "10.0.0.9"}]}
    assert _seen(_put(PORT, renamed, before)) == ("put", "port", "p1")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "watch.db")
    yield s
    s.close()


def _group(members: list[str]) -> dict[str, Any]:
    return {"id": "g1", "name": "web", "members": members}


def test_an_anycast_group_reaches_the_hosts_of_its_members_and_every_gateway(
    store: SqliteStore,
) -> None:
    store.put(keys.neutron_key("ports", "p1"), _port("h1"))
    store.put(keys.gateway_key("gw"), {"name": "gw"})
    group_key = keys.anycast_key("g1")
    store.put(group_key, _group(["p1"]))
    event = _put(group_key, _group(["p1"]))

    def anycast(host: str) -> list[tuple[str, str]]:
        return [(e["type"], e["id"]) for e in relevant_events(store, [event], host)]

    assert anycast("h1") == [("put", "g1")]
    assert anycast("gw") == [("put", "g1")]
    assert anycast("h2") == []
    assert [g["id"] for g in snapshot(store, "h1")["anycast"]] == ["g1"]
    assert snapshot(store, "h2")["anycast"] == []


def test_a_host_whose_member_moves_away_is_told_to_drop_the_group(store: SqliteStore) -> None:
    store.put(keys.anycast_key("g1"), _group(["p1"]))
    store.put(keys.neutron_key("ports", "p1"), _port("h2"))
    moved = _put(PORT, _port("h2"), _port("h1"))
    kinds = {(e["kind"], e["type"]) for e in relevant_events(store, [moved], "h1")}
    assert kinds == {("port", "delete"), ("anycast", "delete")}
    assert {(e["kind"], e["type"]) for e in relevant_events(store, [moved], "h2")} == {
        ("port", "put"),
        ("anycast", "put"),
    }


def test_a_snapshot_holds_the_hosts_own_ports_and_the_other_hosts(store: SqliteStore) -> None:
    store.put(keys.neutron_key("ports", "p1"), _port("h1"))
    store.put(keys.neutron_key("ports", "p2"), {**_port("h2"), "id": "p2"})
    store.put(keys.host_key("h1"), {"name": "h1"})
    store.put(keys.host_key("h2"), {"name": "h2"})
    snap = snapshot(store, "h1")
    assert [p["id"] for p in snap["ports"]] == ["p1"]
    assert snap["host"] == {"name": "h1"} and snap["hosts"] == [{"name": "h2"}]
    assert snap["revision"] == store.revision()


def test_a_revision_the_store_never_had_means_resync(store: SqliteStore) -> None:
    store.put("/neutron/networks/n1", {"id": "n1"})
    with pytest.raises(Gone) as caught:
        watch_blocking(store, "h1", store.revision() + 5, 0)
    assert caught.value.type == "ResyncRequired"


def test_the_watch_returns_what_changed_since_at_once(store: SqliteStore) -> None:
    since = store.revision()
    store.put(keys.neutron_key("networks", "n1"), {"id": "n1"})
    answer = watch_blocking(store, "h1", since, 5)
    assert [(e["kind"], e["id"]) for e in answer["events"]] == [("network", "n1")]
    assert answer["revision"] == store.revision()


@pytest.mark.parametrize(
    ("host", "since", "timeout"),
    [("bad name", None, 1.0), ("h1", -1, 1.0), ("h1", 0, 56.0), ("h1", 0, -1.0)],
)
def test_a_watch_that_cannot_be_served_is_a_bad_request(
    host: str, since: int | None, timeout: float
) -> None:
    with pytest.raises(BadRequest):
        check_watch(host, since, timeout)
