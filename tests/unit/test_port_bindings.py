"""Neutron's binding-extended API as Nova's live migration drives it:
an inactive binding on the destination, its activation (which moves the
port to the destination for the watch), the source's binding kept inactive
for Nova to delete, Neutron's errors and policy (admin or service only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from l3fabric.service.ports import TAP_MAC
from l3fabric.service.watch import snapshot
from tests.unit.api_helpers import error, make
from tests.unit.policy_helpers import policy_client


def _port(client, **attrs):
    net = make(client, "networks", "network", name="n")
    make(client, "subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24")
    return make(client, "ports", "port", network_id=net["id"], device_owner="compute:nova", **attrs)


def _bindings(client, port_id, **params):
    r = client.get(f"/v2.0/ports/{port_id}/bindings", params=params)
    assert r.status_code == 200, r.text
    return {b["host"]: b for b in r.json()["bindings"]}


def _create(client, port_id, **binding):
    return client.post(f"/v2.0/ports/{port_id}/bindings", json={"binding": binding})


def test_extension_and_tap_binding_nova_accepts(client) -> None:
    aliases = {e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]}
    assert {"binding", "binding-extended", "port-security"} <= aliases
    port = _port(client, **{"binding:host_id": "a"})
    assert port["binding:vif_type"] == "tap"
    assert port["binding:vif_details"] == {"port_filter": True, "mac_address": TAP_MAC}
    assert _bindings(client, port["id"]) == {
        "a": {
            "host": "a",
            "vif_type": "tap",
            "vif_details": {"port_filter": True, "mac_address": TAP_MAC},
            "profile": {},
            "vnic_type": "normal",
            "status": "ACTIVE",
        }
    }


def test_live_migration_moves_the_port_on_activation(client, tmp_path: Path) -> None:
    port = _port(client, **{"binding:host_id": "a"})
    pid = port["id"]
    r = _create(client, pid, host="b", profile={"migrating_to": "b"})
    assert r.status_code == 201, r.text
    assert r.json()["binding"]["status"] == "INACTIVE"
    # Still on a until activation: a's watch has it, b's does not.
    store = client.app.state.store
    assert [p["id"] for p in snapshot(store, "a")["ports"]] == [pid]
    assert snapshot(store, "b")["ports"] == []
    assert error(_create(client, pid, host="b"), 409) == "PortBindingAlreadyExists"
    assert error(_create(client, pid, host="a"), 409) == "PortBindingAlreadyExists"

    r = client.put(f"/v2.0/ports/{pid}/bindings/b/activate")
    assert r.status_code == 200, r.text
    assert r.json()["binding"]["status"] == "ACTIVE"
    moved = client.get(f"/v2.0/ports/{pid}").json()["port"]
    assert moved["binding:host_id"] == "b"
    assert moved["binding:profile"] == {"migrating_to": "b"}
    assert moved["status"] == "DOWN"  # until b's agent reports it
    assert snapshot(store, "a")["ports"] == []
    assert [p["id"] for p in snapshot(store, "b")["ports"]] == [pid]
    both = _bindings(client, pid)
    assert both["a"]["status"] == "INACTIVE" and both["b"]["status"] == "ACTIVE"
    assert set(_bindings(client, pid, status="INACTIVE")) == {"a"}

    again = client.put(f"/v2.0/ports/{pid}/bindings/b/activate")
    assert error(again, 409) == "PortBindingAlreadyActive"
    # Nova deletes the source's binding after the migration.
    assert client.delete(f"/v2.0/ports/{pid}/bindings/a").status_code == 204
    assert set(_bindings(client, pid)) == {"b"}
    assert error(client.get(f"/v2.0/ports/{pid}/bindings/a"), 404) == "PortBindingNotFound"
    assert error(client.put(f"/v2.0/ports/{pid}/bindings/a/activate"), 404) == (
        "PortBindingNotFound"
    )


def test_update_changes_the_profile_and_a_binding_goes_with_its_port(client) -> None:
    port = _port(client, **{"binding:host_id": "a"})
    pid = port["id"]
    assert _create(client, pid, host="b").status_code == 201
    r = client.put(f"/v2.0/ports/{pid}/bindings/b", json={"binding": {"profile": {"x": 1}}})
    assert r.status_code == 200 and r.json()["binding"]["profile"] == {"x": 1}
    r = client.put(f"/v2.0/ports/{pid}/bindings/a", json={"binding": {"profile": {"y": 2}}})
    assert r.json()["binding"]["status"] == "ACTIVE"
    assert client.get(f"/v2.0/ports/{pid}").json()["port"]["binding:profile"] == {"y": 2}
    assert client.delete(f"/v2.0/ports/{pid}").status_code == 204
    store = client.app.state.store
    assert store.range("/port-bindings/")[0] == []


def test_an_unbound_port_gets_an_active_binding(client) -> None:
    pid = _port(client)["id"]
    r = _create(client, pid, host="c")
    assert r.status_code == 201 and r.json()["binding"]["status"] == "ACTIVE"
    assert client.get(f"/v2.0/ports/{pid}").json()["port"]["binding:host_id"] == "c"
    # Deleting the active binding unbinds the port.
    assert client.delete(f"/v2.0/ports/{pid}/bindings/c").status_code == 204
    port = client.get(f"/v2.0/ports/{pid}").json()["port"]
    assert port["binding:host_id"] == "" and port["binding:vif_type"] == "unbound"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"binding": []},
        {"binding": {}},
        {"binding": {"host": ""}},
        {"binding": {"host": "b", "vnic_type": "direct"}},
        {"binding": {"host": "b", "color": "red"}},
        {"binding": {"host": "b", "profile": "x"}},
    ],
)
def test_bad_binding_bodies_are_400(client, body) -> None:
    pid = _port(client, **{"binding:host_id": "a"})["id"]
    r = client.post(f"/v2.0/ports/{pid}/bindings", json=body)
    assert r.status_code == 400, r.text
    assert set(r.json()["NeutronError"]) == {"type", "message", "detail"}
    assert set(_bindings(client, pid)) == {"a"}


def test_missing_port_is_404(client) -> None:
    assert error(client.get("/v2.0/ports/nope/bindings"), 404) == "PortNotFound"
    assert error(_create(client, "nope", host="b"), 404) == "PortNotFound"


def test_only_admins_and_the_service_role_touch_bindings(tmp_path: Path) -> None:
    with policy_client(tmp_path) as client:
        member = {"X-Project-Id": "p1", "X-Test-Roles": "member"}
        service = {"X-Project-Id": "nova", "X-Test-Roles": "service"}
        net = client.post("/v2.0/networks", json={"network": {"name": "n"}}, headers=member).json()[
            "network"
        ]
        port = client.post(
            "/v2.0/ports", json={"port": {"network_id": net["id"]}}, headers=member
        ).json()["port"]
        path = f"/v2.0/ports/{port['id']}/bindings"
        assert error(client.get(path, headers=member), 403) == "PolicyNotAuthorized"
        body = {"binding": {"host": "b"}}
        assert error(client.post(path, json=body, headers=member), 403) == "PolicyNotAuthorized"
        other = {"X-Project-Id": "p2", "X-Test-Roles": "member"}
        assert error(client.get(path, headers=other), 404) == "PortNotFound"
        assert client.post(path, json=body, headers=service).status_code == 201
        assert client.get(path, headers=service).json()["bindings"][0]["host"] == "b"


def test_a_port_rebound_by_a_plain_update_lists_each_host_once(client) -> None:
    pid = _port(client, **{"binding:host_id": "a"})["id"]
    assert _create(client, pid, host="b").status_code == 201
    r = client.put(f"/v2.0/ports/{pid}", json={"port": {"binding:host_id": "b"}})
    assert r.status_code == 200
    assert {h: b["status"] for h, b in _bindings(client, pid).items()} == {"b": "ACTIVE"}
    assert len(client.get(f"/v2.0/ports/{pid}/bindings").json()["bindings"]) == 1
