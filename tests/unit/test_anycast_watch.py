"""The watch carries anycast groups: to each host while one of the group's
members is bound to it, to gateways always; replaying the events gives what
a fresh snapshot gives."""

from __future__ import annotations

import warnings

import pytest

from l3fabric.client import HostState
from tests.unit.api_helpers import make

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

GATEWAY = {"router_id": "10.255.0.1", "fabric_addresses": ["10.255.0.1"]}


class Follower:
    """One watcher's cache, kept by snapshot + watch events as the agents keep theirs."""

    def __init__(self, client: TestClient, name: str) -> None:
        self.client = client
        self.name = name
        self.state = HostState.from_snapshot(self._snapshot())
        self.last: list[dict] = []

    def _snapshot(self) -> dict:
        return self.client.get("/v1/watch", params={"host": self.name}).json()

    def follow(self) -> dict[str, str]:
        """Apply the pending events; returns {group id: event type} of the anycast ones."""
        params = {"host": self.name, "since": self.state.revision, "timeout": 0}
        answer = self.client.get("/v1/watch", params=params).json()
        for event in answer["events"]:
            self.state.apply(self.name, event)
        self.state.revision = answer["revision"]
        self.last = answer["events"]
        # Converged: the cache holds exactly what a new snapshot holds.
        fresh = {g["id"]: g for g in self._snapshot()["anycast"]}
        assert self.state.anycast == fresh
        return {e["id"]: e["type"] for e in answer["events"] if e["kind"] == "anycast"}


@pytest.fixture
def net(client):
    network = make(client, "networks", "network", name="web")
    subnet = make(client, "subnets", "subnet", network_id=network["id"], cidr="10.0.0.0/24")
    return {"network": network, "subnet": subnet}


def port(client, net, host: str):
    return make(
        client, "ports", "port", network_id=net["network"]["id"], **{"binding:host_id": host}
    )


def test_groups_follow_their_members_hosts(client, net) -> None:
    assert client.put("/v1/gateways/gw1", json=GATEWAY).status_code == 201
    a1, a2, b = port(client, net, "h1"), port(client, net, "h1"), port(client, net, "h2")
    h1, h2, h3, gw = (Follower(client, n) for n in ("h1", "h2", "h3", "gw1"))

    g = client.post(
        "/v1/anycast",
        json={"name": "svc", "subnet_id": net["subnet"]["id"], "members": [a1["id"]]},
    ).json()
    assert h1.follow() == {g["id"]: "put"}
    assert h2.follow() == {}
    assert gw.follow() == {g["id"]: "put"}
    assert h1.state.anycast[g["id"]]["address"] == g["address"]

    # Several members on one host, and one on another host.
    client.post(f"/v1/anycast/{g['id']}/members", json={"port_id": a2["id"]})
    client.post(f"/v1/anycast/{g['id']}/members", json={"port_id": b["id"]})
    assert h1.follow() == {g["id"]: "put"}
    assert h2.follow() == {g["id"]: "put"}
    assert h1.state.anycast[g["id"]]["members"] == [a1["id"], a2["id"], b["id"]]

    # One of h1's two members leaves: h1 still has the group.
    client.delete(f"/v1/anycast/{g['id']}/members/{a1['id']}")
    assert h1.follow() == {g["id"]: "put"}
    assert g["id"] in h1.state.anycast
    assert gw.follow() == {g["id"]: "put"}

    # A member port moves from h1 to h3: h1 has none left (a delete), h3 one.
    r = client.put(f"/v2.0/ports/{a2['id']}", json={"port": {"binding:host_id": "h3"}})
    assert r.status_code == 200, r.text
    assert h1.follow() == {g["id"]: "delete"}
    assert h1.state.anycast == {}
    assert h3.follow() == {g["id"]: "put"}
    assert gw.follow() == {}  # the group itself did not change

    # Status reports never wake a watch.
    assert h2.follow() == {g["id"]: "put"}  # the membership changes above
    client.post(
        f"/v1/anycast/{g['id']}/status", json={"host": "h2", "members": {b["id"]: "healthy"}}
    )
    assert h2.follow() == {}
    assert h2.last == []

    # A PUT replacing the members: h2 loses it, h1 gets it back.
    client.put(f"/v1/anycast/{g['id']}", json={"members": [a1["id"], a2["id"]]})
    assert h2.follow() == {g["id"]: "delete"}
    assert h1.follow() == {g["id"]: "put"}
    assert h3.follow() == {g["id"]: "put"}

    client.delete(f"/v1/anycast/{g['id']}")
    for follower in (h1, h3, gw):
        assert follower.follow() == {g["id"]: "delete"}
        assert follower.state.anycast == {}
    assert h2.follow() == {}  # it had no member: nothing to wake it for


def test_unbinding_and_other_hosts_ports(client, net) -> None:
    a, other = port(client, net, "h1"), port(client, net, "h2")
    g = client.post(
        "/v1/anycast", json={"name": "svc", "subnet_id": net["subnet"]["id"], "members": [a["id"]]}
    ).json()
    h1 = Follower(client, "h1")
    assert list(h1.state.anycast) == [g["id"]]
    port(client, net, "h1")  # a new port on h1 that is no member: no anycast event
    client.put(f"/v2.0/ports/{other['id']}", json={"port": {"name": "renamed"}})
    assert h1.follow() == {}
    client.put(f"/v2.0/ports/{a['id']}", json={"port": {"binding:host_id": ""}})
    assert h1.follow() == {g["id"]: "delete"}
    client.put(f"/v2.0/ports/{a['id']}", json={"port": {"binding:host_id": "h1"}})
    assert h1.follow() == {g["id"]: "put"}


def test_a_gateway_snapshot_holds_every_group(client, net) -> None:
    client.put("/v1/gateways/gw1", json=GATEWAY)
    a = port(client, net, "h1")
    with_member = client.post(
        "/v1/anycast", json={"name": "one", "subnet_id": net["subnet"]["id"], "members": [a["id"]]}
    ).json()
    empty = client.post(
        "/v1/anycast", json={"name": "two", "subnet_id": net["subnet"]["id"]}
    ).json()
    gw = client.get("/v1/watch", params={"host": "gw1"}).json()
    assert {g["id"] for g in gw["anycast"]} == {with_member["id"], empty["id"]}
    h1 = client.get("/v1/watch", params={"host": "h1"}).json()
    assert [g["id"] for g in h1["anycast"]] == [with_member["id"]]
    assert client.get("/v1/watch", params={"host": "h2"}).json()["anycast"] == []


def test_host_state_without_anycast_in_an_old_snapshot() -> None:
    """A controller from before anycast sends no "anycast" key: the cache starts empty."""
    snap = {
        "revision": 1,
        "fabric": {},
        "host": None,
        "gateways": [],
        "hosts": [],
        "networks": [],
        "subnets": [],
        "ports": [],
    }
    state = HostState.from_snapshot(snap)
    assert state.anycast == {}
    group = {"id": "g", "address": "10.1.0.80"}
    state.apply("h1", {"type": "put", "kind": "anycast", "id": "g", "revision": 2, "object": group})
    copy = state.copy()
    state.apply(
        "h1", {"type": "delete", "kind": "anycast", "id": "g", "revision": 3, "object": None}
    )
    assert copy.anycast == {"g": group}
    assert state.anycast == {}
