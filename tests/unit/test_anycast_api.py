"""/v1/anycast over the real app and a SQLite store: reservation, members,
health checks, status reports, deletion and the port-delete refusal."""

from __future__ import annotations

import pytest

from tests.unit.api_helpers import error, make


@pytest.fixture
def net(client):
    network = make(client, "networks", "network", name="web")
    v4 = make(client, "subnets", "subnet", network_id=network["id"], cidr="10.0.0.0/29")
    v6 = make(
        client, "subnets", "subnet", network_id=network["id"], cidr="2001:db8::/64", ip_version=6
    )
    return {"network": network, "v4": v4, "v6": v6}


def port(client, net, host: str = "h1"):
    return make(
        client, "ports", "port", network_id=net["network"]["id"], **{"binding:host_id": host}
    )


def group(client, net, **attrs):
    body = {"name": "svc", "subnet_id": net["v4"]["id"], **attrs}
    r = client.post("/v1/anycast", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_create_reserves_an_address_no_port_can_take(client, net) -> None:
    g = group(client, net, health_check={"type": "tcp", "port": 80})
    assert g["address"].startswith("10.0.0.")
    assert g["network_id"] == net["network"]["id"]
    assert g["health_check"] == {
        "type": "tcp",
        "port": 80,
        "path": None,
        "interval_s": 1.0,
        "timeout_s": 0.5,
        "rise": 2,
        "fall": 2,
    }
    r = client.post(
        "/v2.0/ports",
        json={
            "port": {
                "network_id": net["network"]["id"],
                "fixed_ips": [{"ip_address": g["address"]}],
            }
        },
    )
    assert error(r, 409) == "IpAddressAlreadyAllocated"
    # Automatic allocation skips it too, and the pool (5 usable addresses) holds only 4 ports.
    taken = {p["fixed_ips"][0]["ip_address"] for p in (port(client, net) for _ in range(4))}
    assert g["address"] not in taken
    r = client.post("/v2.0/ports", json={"port": {"network_id": net["network"]["id"]}})
    # The group's address counts: the pool is full after 4 ports.
    assert error(r, 409) == "IpAddressGenerationFailure"


def test_requested_address_and_its_errors(client, net) -> None:
    g = group(client, net, address="10.0.0.5")
    assert g["address"] == "10.0.0.5"
    r = client.post(
        "/v1/anycast", json={"name": "b", "subnet_id": net["v4"]["id"], "address": "10.0.0.5"}
    )
    assert error(r, 409) == "IpAddressAlreadyAllocated"
    for bad, kind in [
        ("10.0.1.5", "InvalidIpForSubnet"),
        ("10.0.0.0", "InvalidIpForSubnet"),
        ("nope", "InvalidInput"),
    ]:
        r = client.post(
            "/v1/anycast", json={"name": "b", "subnet_id": net["v4"]["id"], "address": bad}
        )
        assert error(r, 400) == kind, bad
    r = client.post(
        "/v1/anycast", json={"name": "b", "subnet_id": net["v4"]["id"], "address": "10.0.0.1"}
    )
    assert error(r, 409) == "IpAddressAlreadyAllocated"  # the gateway
    v6 = group(client, net, subnet_id=net["v6"]["id"], address="2001:db8::a")
    assert v6["ip_version"] == 6


def test_envelope_is_accepted_and_list_shows_groups(client, net) -> None:
    r = client.post("/v1/anycast", json={"anycast": {"name": "env", "subnet_id": net["v4"]["id"]}})
    assert r.status_code == 201, r.text
    listed = client.get("/v1/anycast").json()["anycast"]
    assert [g["id"] for g in listed] == [r.json()["id"]]


@pytest.mark.parametrize(
    "attrs",
    [
        {"health_check": {"type": "tcp"}},
        {"health_check": {"type": "icmp", "port": 80}},
        {"health_check": {"type": "tcp", "port": 80, "path": "/x"}},
        {"health_check": {"type": "http", "port": 80, "path": "health"}},
        {"health_check": {"type": "http", "port": 70000}},
        {"health_check": {"type": "udp", "port": 53}},
        {"health_check": {"type": "icmp", "interval_s": 0}},
        {"health_check": {"type": "icmp", "interval_s": 1, "timeout_s": 2}},
        {"health_check": {"type": "icmp", "rise": 0}},
        {"health_check": {"type": "icmp", "fall": "x"}},
        {"health_check": {"type": "icmp", "retries": 3}},
        {"name": "has space"},
        {"colour": "blue"},
        {"members": "not-a-list"},
    ],
)
def test_bad_bodies_are_400(client, net, attrs) -> None:
    body = {"name": "svc", "subnet_id": net["v4"]["id"], **attrs}
    assert error(client.post("/v1/anycast", json=body), 400) == "InvalidInput"


def test_http_check_defaults_its_path(client, net) -> None:
    g = group(client, net, health_check={"type": "http", "port": 8080, "rise": 3, "fall": 1})
    assert g["health_check"]["path"] == "/"
    assert (g["health_check"]["rise"], g["health_check"]["fall"]) == (3, 1)


def test_unknown_subnet_and_group_are_404(client, net) -> None:
    r = client.post("/v1/anycast", json={"name": "x", "subnet_id": "nope"})
    assert error(r, 404) == "SubnetNotFound"
    for method in ("get", "delete"):
        assert error(getattr(client, method)("/v1/anycast/nope"), 404) == "AnycastNotFound"
    assert error(client.put("/v1/anycast/nope", json={"name": "y"}), 404) == "AnycastNotFound"


def test_members_must_exist_and_be_on_the_network(client, net) -> None:
    other = make(client, "networks", "network", name="other")
    make(client, "subnets", "subnet", network_id=other["id"], cidr="10.9.0.0/24")
    stranger = make(client, "ports", "port", network_id=other["id"])
    r = client.post(
        "/v1/anycast", json={"name": "x", "subnet_id": net["v4"]["id"], "members": ["nope"]}
    )
    assert error(r, 404) == "PortNotFound"
    r = client.post(
        "/v1/anycast", json={"name": "x", "subnet_id": net["v4"]["id"], "members": [stranger["id"]]}
    )
    assert error(r, 400) == "InvalidInput"
    assert "not on the anycast subnet's network" in r.json()["NeutronError"]["message"]
    p = port(client, net)
    r = client.post(
        "/v1/anycast",
        json={"name": "x", "subnet_id": net["v4"]["id"], "members": [p["id"], p["id"]]},
    )
    assert error(r, 400) == "InvalidInput"
    assert client.get("/v1/anycast").json()["anycast"] == []  # nothing half-made


def test_membership_changes_are_single_calls(client, net) -> None:
    a, b, c = (port(client, net, h) for h in ("h1", "h1", "h2"))
    g = group(client, net, members=[a["id"]])
    r = client.post(f"/v1/anycast/{g['id']}/members", json={"port_id": b["id"]})
    assert r.status_code == 200, r.text
    assert r.json()["members"] == [a["id"], b["id"]]
    again = client.post(f"/v1/anycast/{g['id']}/members", json={"port_id": b["id"]}).json()
    assert again["members"] == [a["id"], b["id"]]  # adding a member twice changes nothing
    assert again["revision_number"] == 1
    r = client.delete(f"/v1/anycast/{g['id']}/members/{a['id']}")
    assert r.json()["members"] == [b["id"]]
    r = client.delete(f"/v1/anycast/{g['id']}/members/{a['id']}")
    assert error(r, 404) == "AnycastMemberNotFound"
    r = client.put(f"/v1/anycast/{g['id']}", json={"members": [c["id"], a["id"]]})
    assert r.status_code == 200, r.text
    assert r.json()["members"] == [c["id"], a["id"]]
    assert client.get(f"/v1/anycast/{g['id']}").json()["members"] == [c["id"], a["id"]]
    r = client.post(f"/v1/anycast/{g['id']}/members", json={"port": a["id"]})
    assert error(r, 400) == "InvalidInput"
    r = client.post(f"/v1/anycast/{g['id']}/members", json={"port_id": "nope"})
    assert error(r, 404) == "PortNotFound"


def test_update_name_and_check_but_not_the_address(client, net) -> None:
    g = group(client, net)
    r = client.put(
        f"/v1/anycast/{g['id']}", json={"name": "renamed", "health_check": {"type": "icmp"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "renamed"
    assert r.json()["health_check"]["type"] == "icmp"
    assert r.json()["revision_number"] == 1
    for frozen in ({"address": "10.0.0.6"}, {"subnet_id": net["v6"]["id"]}):
        assert error(client.put(f"/v1/anycast/{g['id']}", json=frozen), 400) == "InvalidInput"
    r = client.put(f"/v1/anycast/{g['id']}", json={"health_check": None})
    assert r.json()["health_check"] is None


def test_delete_releases_the_address(client, net) -> None:
    g = group(client, net, address="10.0.0.4")
    assert client.delete(f"/v1/anycast/{g['id']}").status_code == 204
    assert error(client.get(f"/v1/anycast/{g['id']}"), 404) == "AnycastNotFound"
    p = make(
        client,
        "ports",
        "port",
        network_id=net["network"]["id"],
        fixed_ips=[{"ip_address": "10.0.0.4"}],
    )
    assert p["fixed_ips"][0]["ip_address"] == "10.0.0.4"


def test_subnet_with_a_group_cannot_be_deleted(client, net) -> None:
    g = group(client, net)
    assert error(client.delete(f"/v2.0/subnets/{net['v4']['id']}"), 409) == "SubnetInUse"
    client.delete(f"/v1/anycast/{g['id']}")
    assert client.delete(f"/v2.0/subnets/{net['v4']['id']}").status_code == 204


def test_member_port_cannot_be_deleted(client, net) -> None:
    p = port(client, net)
    g = group(client, net, members=[p["id"]])
    r = client.delete(f"/v2.0/ports/{p['id']}")
    assert error(r, 409) == "PortInUse"
    assert "remove it from them first" in r.json()["NeutronError"]["message"]
    assert client.get(f"/v2.0/ports/{p['id']}").status_code == 200
    client.delete(f"/v1/anycast/{g['id']}/members/{p['id']}")
    assert client.delete(f"/v2.0/ports/{p['id']}").status_code == 204


def test_status_reports(client, net) -> None:
    a, b = port(client, net, "h1"), port(client, net, "h2")
    g = group(client, net, members=[a["id"], b["id"]], health_check={"type": "icmp"})
    assert g["status"] == {
        "members": {a["id"]: "unknown", b["id"]: "unknown"},
        "healthy_members": 0,
    }
    r = client.post(
        f"/v1/anycast/{g['id']}/status", json={"host": "h1", "members": {a["id"]: "healthy"}}
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"/v1/anycast/{g['id']}/status", json={"host": "h2", "members": {b["id"]: "unhealthy"}}
    )
    status = client.get(f"/v1/anycast/{g['id']}").json()["status"]
    assert status == {"members": {a["id"]: "healthy", b["id"]: "unhealthy"}, "healthy_members": 1}
    assert client.get("/v1/anycast").json()["anycast"][0]["status"] == status
    r = client.post(
        f"/v1/anycast/{g['id']}/status", json={"host": "h1", "members": {"x": "healthy"}}
    )
    assert error(r, 400) == "InvalidInput"
    r = client.post(
        f"/v1/anycast/{g['id']}/status", json={"host": "h1", "members": {a["id"]: "meh"}}
    )
    assert error(r, 400) == "InvalidInput"


def test_no_input_makes_a_500(client, net) -> None:
    bodies = [None, [], "x", 1, {"anycast": []}, {"name": None}, {"subnet_id": 5, "name": "a"}]
    for body in bodies:
        r = client.post("/v1/anycast", json=body)
        assert 400 <= r.status_code < 500, (body, r.text)
    r = client.post(
        "/v1/anycast", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
