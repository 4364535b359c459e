"""allowed_address_pairs the Neutron way: one address on several ports (any
hosts, several on one host), inside a subnet of the port's network or a 400."""

from __future__ import annotations

import pytest

from tests.unit.api_helpers import make


@pytest.fixture
def net(client):
    network = make(client, "networks", "network", name="web")
    make(client, "subnets", "subnet", network_id=network["id"], cidr="10.0.0.0/24")
    make(client, "subnets", "subnet", network_id=network["id"], cidr="2001:db8::/64", ip_version=6)
    return network


def port(client, net, host: str, **attrs):
    return make(client, "ports", "port", network_id=net["id"], **{"binding:host_id": host}, **attrs)


def set_pairs(client, port_id: str, *addresses: str):
    pairs = [{"ip_address": a} for a in addresses]
    return client.put(f"/v2.0/ports/{port_id}", json={"port": {"allowed_address_pairs": pairs}})


def test_one_address_on_many_ports_on_any_hosts(client, net) -> None:
    ports = [port(client, net, h) for h in ("h1", "h1", "h2")]
    for p in ports:
        r = set_pairs(client, p["id"], "10.0.0.100", "2001:db8::100")
        assert r.status_code == 200, r.text
    holders = client.get(
        "/v2.0/ports", params={"allowed_address_pairs": "ip_address=10.0.0.100"}
    ).json()["ports"]
    assert sorted(p["id"] for p in holders) == sorted(p["id"] for p in ports)
    assert {p["binding:host_id"] for p in holders} == {"h1", "h2"}
    # On create too, and the pairs take the port's MAC unless they name one.
    q = port(client, net, "h3", allowed_address_pairs=[{"ip_address": "10.0.0.100"}])
    assert q["allowed_address_pairs"] == [
        {"ip_address": "10.0.0.100", "mac_address": q["mac_address"]}
    ]


def test_a_pair_address_stays_free_for_ipam(client, net) -> None:
    """A pair is not an allocation: a port may still get the address as its fixed IP
    (how keepalived-style VIPs are set up: a port reserves the VIP, others allow it)."""
    port(client, net, "h1", allowed_address_pairs=[{"ip_address": "10.0.0.50"}])
    vip = port(client, net, "", fixed_ips=[{"ip_address": "10.0.0.50"}])
    assert vip["fixed_ips"][0]["ip_address"] == "10.0.0.50"


@pytest.mark.parametrize(
    "address",
    ["10.1.0.1", "192.0.2.0/24", "10.0.0.0/8", "0.0.0.0/0", "2001:db9::1", "::/0"],
)
def test_outside_the_networks_subnets_is_400_on_create_and_update(client, net, address) -> None:
    p = port(client, net, "h1")
    for r in (
        set_pairs(client, p["id"], address),
        client.post(
            "/v2.0/ports",
            json={
                "port": {
                    "network_id": net["id"],
                    "allowed_address_pairs": [{"ip_address": address}],
                }
            },
        ),
    ):
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/json")
        error = r.json()["NeutronError"]
        assert error["type"] == "InvalidInput"
        assert "not inside any subnet of the port's network" in error["message"]
    assert client.get(f"/v2.0/ports/{p['id']}").json()["port"]["allowed_address_pairs"] == []


def test_malformed_and_duplicate_pairs_are_400(client, net) -> None:
    p = port(client, net, "h1")
    for bad in (["not-an-ip"], ["10.0.0.5/24"], ["10.0.0.9", "10.0.0.9"]):
        r = set_pairs(client, p["id"], *bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["NeutronError"]["type"] == "InvalidInput"
    # The same address with two different MACs is two pairs, as in Neutron.
    pairs = [
        {"ip_address": "10.0.0.9", "mac_address": "fa:16:3e:00:00:01"},
        {"ip_address": "10.0.0.9", "mac_address": "fa:16:3e:00:00:02"},
    ]
    r = client.put(f"/v2.0/ports/{p['id']}", json={"port": {"allowed_address_pairs": pairs}})
    assert r.status_code == 200, r.text


def test_network_without_subnets_allows_no_pairs(client) -> None:
    bare = make(client, "networks", "network", name="bare")
    r = client.post(
        "/v2.0/ports",
        json={
            "port": {
                "network_id": bare["id"],
                "allowed_address_pairs": [{"ip_address": "10.0.0.1"}],
            }
        },
    )
    assert r.status_code == 400
    assert make(client, "ports", "port", network_id=bare["id"])["allowed_address_pairs"] == []


def test_clearing_pairs(client, net) -> None:
    p = port(client, net, "h1", allowed_address_pairs=[{"ip_address": "10.0.0.64/26"}])
    r = set_pairs(client, p["id"])
    assert r.json()["port"]["allowed_address_pairs"] == []
