"""The fabric API (/v1) over a real SQLite store: config, hosts, gateways, heartbeats, watch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from l3fabric import keys
from l3fabric.api import fabric
from l3fabric.api.errors import install_error_handlers
from l3fabric.api.heartbeats import Heartbeats
from l3fabric.api.watches import Watches, long_poll
from l3fabric.store.sqlite import SqliteStore

HOST = {"router_id": "10.0.0.11", "address": "10.0.0.11"}


def fabric_app(store: SqliteStore) -> FastAPI:
    """The /v1 API alone, wired the way api/app.py wires it."""
    app = FastAPI()
    app.state.store = store
    install_error_handlers(app)
    fabric.install(app)
    app.add_middleware(Watches, state=app.state)
    app.add_middleware(Heartbeats, state=app.state)
    return app


def port(port_id: str, host: str, status: str = "DOWN", ip: str = "10.1.0.5") -> dict[str, Any]:
    """A port as the Neutron API stores it."""
    return {
        "id": port_id,
        "network_id": "net-1",
        "fixed_ips": [{"subnet_id": "sub-1", "ip_address": ip}],
        "allowed_address_pairs": [],
        "binding:host_id": host,
        "mac_address": "fa:16:3e:00:00:01",
        "status": status,
        "admin_state_up": True,
        "device_id": "",
        "revision_number": 1,
        "updated_at": "2024-01-01T00:00:00Z",
        "security_groups": [],
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "fabric.db")
    yield s
    s.close()


@pytest.fixture
def api(store: SqliteStore) -> Iterator[TestClient]:
    with TestClient(fabric_app(store)) as client:
        yield client


def error_type(response) -> str:
    return response.json()["NeutronError"]["type"]


# Fabric configuration ------------------------------------------------------------


def test_fabric_defaults_when_never_set(api: TestClient) -> None:
    config = api.get("/v1/fabric").json()
    assert config["asn"] == 65000
    assert config["peering"] == "gateway"
    assert config["host_asn"] == "same"
    assert config["bfd"] == {"enabled": True, "interval_ms": 100, "multiplier": 3}
    assert config["graceful_restart"] == {"enabled": True, "restart_time_s": 120}


def test_fabric_put_is_stored_and_returned(api: TestClient, store: SqliteStore) -> None:
    body = {"asn": 64512, "peering": "reflectors", "route_reflectors": ["10.0.0.1", "2001:db8::1"]}
    answer = api.put("/v1/fabric", json=body)
    assert answer.status_code == 200
    assert api.get("/v1/fabric").json()["route_reflectors"] == ["10.0.0.1", "2001:db8::1"]
    assert store.get(keys.FABRIC_CONFIG).value["asn"] == 64512


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"peering": "ring"}, "peering"),
        ({"asn": 0}, "asn"),
        ({"peering": "reflectors"}, "route_reflectors"),
        ({"route_reflectors": ["10.0.0.300"]}, "route_reflectors"),
        ({"keepalive_s": 30, "hold_s": 20}, "keepalive_s"),
        ({"bfd": {"interval": 5}}, "bfd.interval"),
        ([1, 2], "body"),
    ],
)
def test_fabric_bad_config_is_a_clear_400(api: TestClient, body: Any, words: str) -> None:
    answer = api.put("/v1/fabric", json=body)
    assert answer.status_code == 400
    assert error_type(answer) == "InvalidInput"
    assert words in answer.json()["NeutronError"]["message"]


def test_fabric_put_without_json_is_malformed(api: TestClient) -> None:
    answer = api.put(
        "/v1/fabric", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400
    assert error_type(answer) == "MalformedRequestBody"


# Hosts and gateways -------------------------------------------------------------------


def test_host_register_show_list_delete(api: TestClient) -> None:
    assert api.put("/v1/hosts/h1", json=HOST).status_code == 201
    assert api.put("/v1/hosts/h1", json={**HOST, "rack": "r1"}).status_code == 200
    shown = api.get("/v1/hosts/h1").json()
    assert shown["name"] == "h1" and shown["rack"] == "r1"
    assert shown["status"] == "down"  # registered, but no heartbeat yet
    assert shown["effective_asn"] == 65000
    assert [h["name"] for h in api.get("/v1/hosts").json()["hosts"]] == ["h1"]
    assert api.delete("/v1/hosts/h1").status_code == 204
    missing = api.get("/v1/hosts/h1")
    assert missing.status_code == 404 and error_type(missing) == "HostNotFound"
    assert api.delete("/v1/hosts/h1").status_code == 404


def test_host_registration_errors(api: TestClient) -> None:
    assert api.put("/v1/hosts/h1", json={"router_id": "10.0.0.1"}).status_code == 400
    assert api.put("/v1/hosts/bad name", json=HOST).status_code == 400
    other = api.put("/v1/hosts/h1", json={**HOST, "name": "h2"})
    assert other.status_code == 400 and "differs" in other.json()["NeutronError"]["message"]
    v6_router_id = api.put("/v1/hosts/h1", json={**HOST, "router_id": "2001:db8::1"})
    assert v6_router_id.status_code == 400


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/hosts/h1", "peers"),
        ("/v1/gateways/h1", "upstream"),
        ("/v1/gateways/h1", "fabric_peers"),
    ],
)
def test_one_peer_name_twice_in_a_list_is_a_400_and_keeps_the_registration(
    api: TestClient, path: str, field: str
) -> None:
    # A peer's name names its BGP session: two sessions of one name are no BIRD config.
    gateway = {"router_id": "10.0.0.11", "fabric_addresses": ["10.0.0.11"]}
    body = gateway if "gateways" in path else HOST
    assert api.put(path, json=body).status_code == 201
    twice = [{"name": "tor", "address": a, "asn": 65001} for a in ("10.0.0.1", "10.0.0.2")]
    bad = api.put(path, json={**body, field: twice})
    assert bad.status_code == 400 and error_type(bad) == "InvalidInput"
    assert "tor repeated" in bad.json()["NeutronError"]["message"]
    assert api.get(path).json().get(field) in (None, [])
    # The same name in upstream and fabric_peers is two sessions ("up:tor", "p:tor").
    if "gateways" in path:
        both = {**body, "upstream": twice[:1], "fabric_peers": twice[1:]}
        assert api.put(path, json=both).status_code == 200


def test_per_host_asn_is_derived_unique_and_explicit_asn_wins(api: TestClient) -> None:
    api.put("/v1/fabric", json={"host_asn": "per-host"})
    api.put("/v1/hosts/h1", json=HOST)
    api.put("/v1/hosts/h2", json={"router_id": "10.0.0.12", "address": "10.0.0.12"})
    api.put("/v1/hosts/h3", json={"router_id": "10.0.0.13", "address": "10.0.0.13", "asn": 65101})
    asns = {h["name"]: h["effective_asn"] for h in api.get("/v1/hosts").json()["hosts"]}
    assert asns["h3"] == 65101
    assert asns["h1"] != asns["h2"]
    assert all(4_200_000_000 <= asns[h] <= 4_294_967_294 for h in ("h1", "h2"))


def test_gateway_register_heartbeat_and_show(api: TestClient) -> None:
    body = {
        "router_id": "10.0.0.1",
        "fabric_addresses": ["10.0.0.1"],
        "upstream": [{"name": "isp", "address": "192.0.2.1", "asn": 64496}],
        "snat_address": "198.51.100.1",
    }
    assert api.put("/v1/gateways/gw1", json=body).status_code == 201
    anycast = {"prefixes": [{"prefix": "10.1.0.100/32", "next_hops": [{"via": "10.0.0.2", "dev": "f0", "weight": 2}]}]}  # fmt: skip
    beat = {
        "bgp": [{"name": "isp", "peer": "192.0.2.1", "state": "Established"}],
        "nat": {"n": 3},
        "anycast": anycast,
    }
    assert api.post("/v1/gateways/gw1/heartbeat", json=beat).status_code == 200
    shown = api.get("/v1/gateways/gw1").json()
    assert shown["status"] == "up" and shown["nat"] == {"n": 3}
    assert shown["anycast"] == anycast
    assert shown["upstream"][0]["asn"] == 64496 and shown["effective_asn"] == 65000
    bad = api.put("/v1/gateways/gw2", json={**body, "fabric_addresses": []})
    assert bad.status_code == 400


# Heartbeats and port status ---------------------------------------------------------------


def test_heartbeat_sets_status_of_own_ports_only(api: TestClient, store: SqliteStore) -> None:
    api.put("/v1/hosts/h1", json=HOST)
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    store.put(keys.neutron_key("ports", "p2"), port("p2", "h2"))
    beat = {"ports": {"p1": "ACTIVE", "p2": "ACTIVE", "nope": "ACTIVE"}, "agent": {"v": "1"}}
    answer = api.post("/v1/hosts/h1/heartbeat", json=beat)
    assert answer.status_code == 200
    assert answer.json()["ports_changed"] == ["p1"]
    p1 = store.get(keys.neutron_key("ports", "p1")).value
    assert p1["status"] == "ACTIVE" and p1["revision_number"] == 2
    assert p1["updated_at"] != "2024-01-01T00:00:00Z"
    assert store.get(keys.neutron_key("ports", "p2")).value["status"] == "DOWN"
    host = api.get("/v1/hosts/h1").json()
    assert host["status"] == "up" and host["agent"] == {"v": "1"}


def test_repeated_heartbeat_does_not_touch_ports(api: TestClient, store: SqliteStore) -> None:
    api.put("/v1/hosts/h1", json=HOST)
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    api.post("/v1/hosts/h1/heartbeat", json={"ports": {"p1": "ACTIVE"}})
    before = store.get(keys.neutron_key("ports", "p1")).mod_revision
    again = api.post("/v1/hosts/h1/heartbeat", json={"ports": {"p1": "ACTIVE"}})
    assert again.json()["ports_changed"] == []
    assert store.get(keys.neutron_key("ports", "p1")).mod_revision == before


def test_heartbeat_errors(api: TestClient) -> None:
    unknown = api.post("/v1/hosts/ghost/heartbeat", json={})
    assert unknown.status_code == 404 and error_type(unknown) == "HostNotFound"
    api.put("/v1/hosts/h1", json=HOST)
    bad = api.post("/v1/hosts/h1/heartbeat", json={"ports": {"p1": "UP"}})
    assert bad.status_code == 400 and error_type(bad) == "InvalidInput"
    for body in (b"", b"{nope", b'{"agent": NaN}'):
        malformed = api.post("/v1/hosts/h1/heartbeat", content=body)
        assert malformed.status_code == 400 and error_type(malformed) == "MalformedRequestBody"
    gateway = api.post("/v1/gateways/h1/heartbeat", json={})
    assert gateway.status_code == 404 and error_type(gateway) == "GatewayNotFound"
    # Not a heartbeat's method: FastAPI answers as for any route.
    assert api.get("/v1/hosts/h1/heartbeat").status_code == 405


def test_host_goes_down_after_three_missed_intervals(api: TestClient) -> None:
    api.put("/v1/fabric", json={"heartbeat_interval_s": 0.1})
    api.put("/v1/hosts/h1", json=HOST)
    api.post("/v1/hosts/h1/heartbeat", json={})
    assert api.get("/v1/hosts/h1").json()["status"] == "up"
    time.sleep(0.35)
    assert api.get("/v1/hosts/h1").json()["status"] == "down"


# Snapshot and watch ------------------------------------------------------------------------


def test_snapshot_holds_what_the_host_needs(api: TestClient, store: SqliteStore) -> None:
    api.put("/v1/hosts/h1", json=HOST)
    api.put("/v1/hosts/h2", json={"router_id": "10.0.0.12", "address": "10.0.0.12"})
    store.put(keys.neutron_key("networks", "net-1"), {"id": "net-1", "router:external": False})
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    store.put(keys.neutron_key("ports", "p2"), port("p2", "h2"))
    snap = api.get("/v1/watch", params={"host": "h1"}).json()
    assert snap["revision"] == store.revision()
    assert snap["host"]["name"] == "h1"
    assert [h["name"] for h in snap["hosts"]] == ["h2"]
    assert [p["id"] for p in snap["ports"]] == ["p1"]
    assert [n["id"] for n in snap["networks"]] == ["net-1"]
    assert snap["fabric"]["asn"] == 65000


def test_watch_returns_own_port_events_and_skips_others(
    api: TestClient, store: SqliteStore
) -> None:
    since = api.get("/v1/watch", params={"host": "h1"}).json()["revision"]
    store.put(keys.neutron_key("ports", "p2"), port("p2", "h2"))  # not ours
    store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
    answer = api.get("/v1/watch", params={"host": "h1", "since": since, "timeout": 5}).json()
    assert [(e["type"], e["kind"], e["id"]) for e in answer["events"]] == [("put", "port", "p1")]
    assert answer["revision"] == store.revision()


def test_port_moving_away_is_a_delete_for_the_old_host(api: TestClient, store: SqliteStore) -> None:
    key = keys.neutron_key("ports", "p1")
    store.put(key, port("p1", "h1"))
    since = store.revision()
    store.put(key, port("p1", "h2"))
    for host, expected in (("h1", ("delete", None)), ("h2", ("put", "p1"))):
        params = {"host": host, "since": since, "timeout": 5}
        (event,) = api.get("/v1/watch", params=params).json()["events"]
        obj = event["object"]["id"] if event["object"] else None
        assert (event["type"], obj) == expected


def test_heartbeats_of_other_hosts_do_not_wake_a_watch(api: TestClient, store: SqliteStore) -> None:
    api.put("/v1/hosts/h2", json={"router_id": "10.0.0.12", "address": "10.0.0.12"})
    since = store.revision()
    api.post("/v1/hosts/h2/heartbeat", json={"bgp": [{"name": "gw", "state": "Established"}]})
    api.put("/v1/hosts/h2", json={"router_id": "10.0.0.12", "address": "10.0.0.12"})  # same
    started = time.monotonic()
    answer = api.get("/v1/watch", params={"host": "h1", "since": since, "timeout": 0.5}).json()
    assert answer["events"] == []
    assert time.monotonic() - started >= 0.45
    assert answer["revision"] == store.revision()  # the client resumes after the skipped changes


def test_fabric_gateway_and_host_changes_reach_every_host(
    api: TestClient, store: SqliteStore
) -> None:
    since = store.revision()
    api.put("/v1/fabric", json={"asn": 64600})
    api.put("/v1/gateways/gw1", json={"router_id": "10.0.0.1", "fabric_addresses": ["10.0.0.1"]})
    api.put("/v1/hosts/h2", json={"router_id": "10.0.0.12", "address": "10.0.0.12"})
    answer = api.get("/v1/watch", params={"host": "h1", "since": since, "timeout": 5}).json()
    kinds = [(e["kind"], e["id"]) for e in answer["events"]]
    assert kinds == [("fabric", "fabric"), ("gateway", "gw1"), ("host", "h2")]
    assert answer["events"][0]["object"]["asn"] == 64600


def test_watch_from_compacted_revision_is_410_resync(api: TestClient, store: SqliteStore) -> None:
    store.put("/neutron/networks/a", {"id": "a"})
    old = store.revision()
    store.put("/neutron/networks/b", {"id": "b"})
    store.compact(store.revision())
    answer = api.get("/v1/watch", params={"host": "h1", "since": old, "timeout": 1})
    assert answer.status_code == 410 and error_type(answer) == "ResyncRequired"
    future = api.get("/v1/watch", params={"host": "h1", "since": old + 100, "timeout": 1})
    assert future.status_code == 410


@pytest.mark.parametrize(
    "params",
    [
        {"host": "h1", "since": 0, "timeout": 56},
        {"host": "h1", "since": -1},
        {"host": "h 1"},
        {"host": "h1", "since": "x"},
        {},
    ],
)
def test_watch_bad_parameters_are_400(api: TestClient, params: dict[str, Any]) -> None:
    assert api.get("/v1/watch", params=params).status_code == 400


@pytest.mark.parametrize(
    ("query", "poll"),
    [
        (b"host=h1&since=7", ("h1", 7, 25.0)),
        (b"since=7&timeout=0.5&host=h1", ("h1", 7, 0.5)),
        (b"host=h1", None),  # a snapshot
        (b"host=h1&since=-1", None),
        (b"host=h1&since=1e3", None),
        (b"host=h1&since=7&timeout=nan", None),
        (b"host=h1&since=7&host=h2", None),  # repeated
        (b"host=h1&since=7&extra=1", None),
        (b"since=7", None),
    ],
)
def test_only_plain_long_polls_skip_fastapi(query: bytes, poll: Any) -> None:
    # Anything else is FastAPI's to read and refuse, as it always was.
    assert long_poll(query) == poll


def test_long_polls_are_answered_in_front_of_fastapi(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = fabric_app(store)
    routed = []
    original = app.router.__call__

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope.get("path"))
        await original(scope, receive, send)

    monkeypatch.setattr(app, "router", type("R", (), {"__call__": staticmethod(counting)})())
    with TestClient(app) as client:
        since = store.revision()
        store.put(keys.neutron_key("ports", "p1"), port("p1", "h1"))
        answer = client.get("/v1/watch", params={"host": "h1", "since": since, "timeout": 5})
        assert [e["id"] for e in answer.json()["events"]] == ["p1"]
        assert "/v1/watch" not in routed
        assert client.get("/v1/watch", params={"host": "h1"}).status_code == 200  # a snapshot
        assert routed.count("/v1/watch") == 1
