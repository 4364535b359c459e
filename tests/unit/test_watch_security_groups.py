"""What every host's watch carries so it can enforce security groups: the
groups with their rules, and a slim member record of every port in a group
(id, groups, addresses) wherever it is bound, from plain events and a store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from l3fabric import keys
from l3fabric.service.watch import relevant_events, snapshot
from l3fabric.store import Event
from l3fabric.store.sqlite import SqliteStore

PORT = keys.neutron_key("ports", "p1")
GROUP = keys.neutron_key("security-groups", "sg1")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "watch.db")
    yield s
    s.close()


def _port(host: str = "h2", groups: tuple[str, ...] = ("sg1",), **extra: Any) -> dict[str, Any]:
    return {
        "id": "p1",
        "name": "vm",
        "binding:host_id": host,
        "status": "DOWN",
        "mac_address": "fa:16:3e:00:00:01",
        "device_id": "vm-1",
        "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.5"}],
        "allowed_address_pairs": [{"ip_address": "10.0.0.99", "mac_address": "fa:16:3e:00:00:01"}],
        "security_groups": list(groups),
        **extra,
    }


def _group(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"id": "sg1", "name": "web", "project_id": "p", "security_group_rules": list(rules)}


def _put(key: str, value: Any, prev: Any = None) -> Event:
    return Event("put", key, 7, value, prev)


def _members(store: SqliteStore, event: Event, host: str = "h1") -> list[tuple[str, Any]]:
    return [
        (e["type"], e["object"])
        for e in relevant_events(store, [event], host)
        if e["kind"] == "member"
    ]


MEMBER = {"id": "p1", "security_groups": ["sg1"], "addresses": ["10.0.0.5", "10.0.0.99"]}


def test_every_host_sees_security_groups_with_their_rules(store: SqliteStore) -> None:
    rule = {"id": "r1", "direction": "ingress", "remote_group_id": "sg1"}
    for host in ("h1", "h9"):
        found = relevant_events(store, [_put(GROUP, _group(rule), _group())], host)
        assert [(e["type"], e["kind"], e["id"]) for e in found] == [
            ("put", "security_group", "sg1")
        ]
        assert found[0]["object"]["security_group_rules"] == [rule]
    gone = relevant_events(store, [Event("delete", GROUP, 8, None, _group())], "h1")
    assert [(e["type"], e["kind"]) for e in gone] == [("delete", "security_group")]


def test_a_port_elsewhere_reaches_every_host_as_a_slim_member(store: SqliteStore) -> None:
    # Only ids and addresses: nothing of the port's MAC, name, device or binding.
    assert _members(store, _put(PORT, _port())) == [("put", MEMBER)]
    assert _members(store, _put(PORT, _port(), None), "h9") == [("put", MEMBER)]
    # The host the port is bound to gets the port itself and the member record.
    kinds = [
        (e["kind"], e["type"]) for e in relevant_events(store, [_put(PORT, _port("h1"))], "h1")
    ]
    assert kinds == [("port", "put"), ("member", "put")]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        # Addresses move: the new set.
        (_port(), _port(fixed_ips=[{"subnet_id": "s1", "ip_address": "10.0.0.6"}]),
         [("put", {**MEMBER, "addresses": ["10.0.0.6", "10.0.0.99"]})]),
        (_port(), _port(allowed_address_pairs=[]), [("put", {**MEMBER, "addresses": ["10.0.0.5"]})]),
        # Groups change: the new groups; the last one gone: a delete.
        (_port(), _port(groups=("sg1", "sg2")),
         [("put", {**MEMBER, "security_groups": ["sg1", "sg2"]})]),
        (_port(), _port(groups=()), [("delete", None)]),
        (_port(groups=()), _port(), [("put", MEMBER)]),
        # Port security turned off (which clears the groups): a delete.
        (_port(), _port(groups=(), port_security_enabled=False), [("delete", None)]),
        # The port is deleted.
        (_port(), None, [("delete", None)]),
        # Nothing a member record holds changed: nobody wakes.
        (_port(), _port(status="ACTIVE"), []),
        (_port(), _port(name="renamed"), []),
        (_port("h2"), _port("h3"), []),  # moved: still the same member
        (_port(groups=()), _port(groups=(), status="ACTIVE"), []),
    ],
    ids=["fixed-ip", "pairs", "groups", "last-group", "joins", "port-security-off",
         "deleted", "status", "renamed", "moved", "no-groups"],
)  # fmt: skip
def test_member_events_follow_addresses_and_groups(
    store: SqliteStore, before: Any, after: Any, expected: list[tuple[str, Any]]
) -> None:
    event = (
        _put(PORT, after, before) if after is not None else Event("delete", PORT, 7, None, before)
    )
    assert _members(store, event) == expected


def test_a_snapshot_holds_every_group_and_every_member(store: SqliteStore) -> None:
    store.put(GROUP, _group())
    store.put(PORT, _port("h2"))
    store.put(keys.neutron_key("ports", "p2"), {**_port("h1", groups=()), "id": "p2"})
    snap = snapshot(store, "h1")
    assert snap["security_groups"] == [_group()]
    assert snap["members"] == [MEMBER]  # p2 is in no group
    assert [p["id"] for p in snap["ports"]] == ["p2"]
