"""The agent's cache (client.HostState) of security groups and remote-group
members: snapshots and event sequences keep ``group_members`` right, and only
canonical addresses get in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l3fabric import keys
from l3fabric.client import HostState
from l3fabric.service.watch import snapshot
from l3fabric.store.sqlite import SqliteStore


def _member(port_id: str, groups: list[str], addresses: list[str]) -> dict[str, Any]:
    return {"id": port_id, "security_groups": groups, "addresses": addresses}


def _ev(type_: str, kind: str, id_: str, obj: Any = None) -> dict[str, Any]:
    return {"type": type_, "kind": kind, "id": id_, "revision": 1, "object": obj}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "db")
    yield s
    s.close()


def _store_port(store: SqliteStore, port_id: str, groups: list[str], *addresses: str) -> None:
    """A stored port on another host: its first address fixed, the rest address pairs."""
    first, *pairs = addresses
    store.put(
        keys.neutron_key("ports", port_id),
        {
            "id": port_id,
            "binding:host_id": "h2",
            "security_groups": groups,
            "fixed_ips": [{"subnet_id": "s1", "ip_address": first}],
            "allowed_address_pairs": [{"ip_address": a} for a in pairs],
        },
    )


def test_a_snapshot_fills_groups_and_members(store: SqliteStore) -> None:
    group = {"id": "sg1", "name": "web", "security_group_rules": [{"id": "r1"}]}
    store.put(keys.neutron_key("security-groups", "sg1"), group)
    _store_port(store, "p1", ["sg1"], "10.0.0.5", "2001:db8::5")
    _store_port(store, "p2", ["sg1", "sg2"], "10.0.0.6", "10.0.1.0/28")
    state = HostState.from_snapshot(snapshot(store, "h1"))
    assert state.security_groups == {"sg1": group}
    assert state.group_members("sg1") == {"10.0.0.5", "2001:db8::5", "10.0.0.6", "10.0.1.0/28"}
    assert state.group_members("sg2") == {"10.0.0.6", "10.0.1.0/28"}
    assert state.group_members("nobody") == set()
    assert dict(state.member_addresses()) == {
        "sg1": state.group_members("sg1"),
        "sg2": state.group_members("sg2"),
    }


def test_member_events_move_addresses_between_groups() -> None:
    state = HostState()
    assert state.apply("h1", _ev("put", "member", "p1", _member("p1", ["a"], ["10.0.0.5"])))
    assert state.apply("h1", _ev("put", "member", "p2", _member("p2", ["a"], ["10.0.0.6"])))
    assert state.group_members("a") == {"10.0.0.5", "10.0.0.6"}
    # p1 gets another address and moves from group a to b.
    moved = _member("p1", ["b"], ["10.0.0.5", "10.0.0.50"])
    assert state.apply("h1", _ev("put", "member", "p1", moved))
    assert state.group_members("a") == {"10.0.0.6"}
    assert state.group_members("b") == {"10.0.0.5", "10.0.0.50"}
    # The same record again (a replay after a snapshot): nothing to converge.
    assert not state.apply("h1", _ev("put", "member", "p1", moved))
    # Two ports with the same address (an allowed address pair): one leaving keeps it.
    state.apply("h1", _ev("put", "member", "p3", _member("p3", ["b"], ["10.0.0.50"])))
    assert state.apply("h1", _ev("delete", "member", "p1"))
    assert state.group_members("b") == {"10.0.0.50"}
    assert state.apply("h1", _ev("delete", "member", "p3"))
    assert state.group_members("b") == set()
    assert not state.apply("h1", _ev("delete", "member", "p3"))  # already gone
    assert set(state.members) == {"p2"}


def test_a_copy_is_not_changed_by_later_events() -> None:
    state = HostState()
    state.apply("h1", _ev("put", "member", "p1", _member("p1", ["a"], ["10.0.0.5"])))
    before = state.copy()
    state.apply("h1", _ev("put", "member", "p2", _member("p2", ["a"], ["10.0.0.6"])))
    state.apply("h1", _ev("delete", "member", "p1"))
    assert before.group_members("a") == {"10.0.0.5"}
    assert set(before.members) == {"p1"}
    assert state.group_members("a") == {"10.0.0.6"}


def test_security_group_events_replace_and_delete_groups() -> None:
    state = HostState()
    group = {"id": "sg1", "security_group_rules": []}
    assert state.apply("h1", _ev("put", "security_group", "sg1", group))
    assert not state.apply("h1", _ev("put", "security_group", "sg1", dict(group)))
    ruled = {**group, "security_group_rules": [{"id": "r1", "remote_ip_prefix": "10.0.0.0/8"}]}
    assert state.apply("h1", _ev("put", "security_group", "sg1", ruled))
    assert state.security_groups["sg1"] is ruled
    assert state.apply("h1", _ev("delete", "security_group", "sg1"))
    assert state.security_groups == {}


def test_records_with_non_canonical_addresses_are_left_out(store: SqliteStore) -> None:
    state = HostState()
    state.apply("h1", _ev("put", "member", "p1", _member("p1", ["a"], ["10.0.0.5"])))
    # A member whose address is not canonical counts as absent, also for its group.
    bad = _member("p1", ["a"], ["fe80::1%eth0"])
    assert state.apply("h1", _ev("put", "member", "p1", bad))
    assert state.members == {} and state.group_members("a") == set()
    state.apply("h1", _ev("put", "member", "p2", _member("p2", ["a"], ["2001:DB8::1"])))
    assert state.group_members("a") == set()
    rule = {"id": "r1", "remote_ip_prefix": "10.0.0.1/8"}  # host bits set: not canonical
    state.apply("h1", _ev("put", "security_group", "sg1", {"id": "sg1",
                                                            "security_group_rules": [rule]}))  # fmt: skip
    assert state.security_groups == {}
    # A record stored before the API refused such addresses.
    _store_port(store, "p1", ["a"], "010.0.0.5")
    _store_port(store, "p2", ["a"], "10.0.0.6")
    snap = HostState.from_snapshot(snapshot(store, "h1"))
    assert set(snap.members) == {"p2"} and snap.group_members("a") == {"10.0.0.6"}


def test_member_events_in_any_order_keep_the_index_a_recount_of_the_records() -> None:
    """Counted per address (two ports may hold one): equal to counting every record again."""
    import random

    from l3fabric.group_members import GroupMembers

    rng = random.Random(3)
    state = HostState()
    copies = []
    for step in range(400):
        port_id = f"p{rng.randrange(12)}"
        if rng.random() < 0.25:
            state.apply("h1", _ev("delete", "member", port_id))
        else:
            groups = rng.sample(["a", "b", "c"], rng.randrange(0, 3))
            addresses = rng.sample([f"10.0.0.{i}" for i in range(6)], rng.randrange(1, 3))
            state.apply("h1", _ev("put", "member", port_id, _member(port_id, groups, addresses)))
        recount = GroupMembers.of(state.members)
        assert dict(state.member_addresses()) == dict(recount.by_group()), step
        if step % 50 == 0:
            copies.append((state.copy(), dict(recount.by_group())))
    for copy, then in copies:  # copies kept what they had; one changed itself counts anew
        assert dict(copy.member_addresses()) == then
        copy.apply("h1", _ev("delete", "member", "p0"))
        assert dict(copy.member_addresses()) == dict(GroupMembers.of(copy.members).by_group())
