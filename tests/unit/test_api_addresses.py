"""Every API field that takes an address or prefix refuses zone IDs, spaces, quotes and
newlines with a 400, stores canonical text, and so keeps address uniqueness."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from l3fabric import keys
from tests.unit.api_helpers import error, make

# The registration that gave every host and the gateway an attacker's BGP session (issue 9).
INJECTION = (
    "fe80::1%lo as 64999;\n}\nprotocol bgp injected { local as 65000; neighbor 192.0.2.66 as"
    " 64666; multihop; ipv4 { import all; export all; }; }\nprotocol bgp tail { local"
    " 2001:db8::1 as 65000; neighbor 2001:db8::67"
)
HOSTILE = ["fe80::1%lo", "10.0.0.1 ", "2001:db8:1::5%dup", "10.0.0.1\n", '10.0.0.1"']

HOST = {
    "router_id": "10.0.0.11",
    "address": "2001:db8::11",
    "peers": [{"name": "tor", "address": "2001:db8::1", "asn": 65001}],
}
GATEWAY = {
    "router_id": "10.0.0.1",
    "fabric_addresses": ["10.0.0.1"],
    "upstream": [{"name": "isp", "address": "192.0.2.1", "asn": 64500}],
    "snat_address": "192.0.2.2",
    "fabric_peers": [{"name": "tor", "address": "10.0.0.2", "asn": 65001}],
    "infrastructure": ["172.16.0.0/16"],
}


def _with(body: dict[str, Any], path: tuple, value: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    ("url", "body", "path"),
    [
        ("/v1/hosts/h1", HOST, ("router_id",)),
        ("/v1/hosts/h1", HOST, ("address",)),
        ("/v1/hosts/h1", HOST, ("peers", 0, "address")),
        ("/v1/gateways/gw", GATEWAY, ("router_id",)),
        ("/v1/gateways/gw", GATEWAY, ("fabric_addresses", 0)),
        ("/v1/gateways/gw", GATEWAY, ("upstream", 0, "address")),
        ("/v1/gateways/gw", GATEWAY, ("snat_address",)),
        ("/v1/gateways/gw", GATEWAY, ("fabric_peers", 0, "address")),
        ("/v1/gateways/gw", GATEWAY, ("infrastructure", 0)),
        (
            "/v1/fabric",
            {"peering": "reflectors", "route_reflectors": ["10.0.0.5"]},
            ("route_reflectors", 0),
        ),
    ],
)
def test_fabric_api_refuses_hostile_addresses(client, url, body, path, value) -> None:
    assert client.put(url, json=body).status_code in (200, 201)
    before = client.get(url).json()
    r = client.put(url, json=_with(body, path, value))
    assert error(r, 400) == "InvalidInput"
    assert client.get(url).json() == before  # nothing stored


def test_the_injection_payload_gets_a_400(client) -> None:
    r = client.put("/v1/hosts/evil", json={"router_id": "10.9.9.9", "address": INJECTION})
    assert error(r, 400) == "InvalidInput"
    assert "zone IDs" in r.json()["NeutronError"]["message"]
    assert client.get("/v1/hosts/evil").status_code == 404


def test_fabric_addresses_are_stored_in_canonical_form(client) -> None:
    body = _with(HOST, ("address",), "2001:DB8:0::0011")
    assert client.put("/v1/hosts/h1", json=body).json()["address"] == "2001:db8::11"
    r = client.put("/v1/gateways/gw", json=_with(GATEWAY, ("infrastructure", 0), "FD00::/8"))
    assert r.json()["infrastructure"] == ["fd00::/8"]


def test_a_stored_fabric_config_with_a_zone_id_is_served_not_a_500(client) -> None:
    # Written before the API refused it: the controller must keep serving.
    stored = {"peering": "reflectors", "route_reflectors": ["fe80::1%lo as 1;"]}
    client.app.state.store.put(keys.FABRIC_CONFIG, stored)
    r = client.get("/v1/fabric")
    assert r.status_code == 200
    assert r.json()["route_reflectors"] == stored["route_reflectors"]
    assert client.get("/v1/watch", params={"host": "h1"}).status_code == 200


# Neutron --------------------------------------------------------------------------------


@pytest.fixture
def net(client) -> dict[str, Any]:
    network = make(client, "networks", "network", name="n")
    subnet = make(
        client,
        "subnets",
        "subnet",
        network_id=network["id"],
        cidr="2001:db8:1::/64",
        ip_version=6,
    )
    return {"network": network, "subnet": subnet}


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    ("collection", "attrs"),
    [
        ("subnets", lambda v: {"cidr": v}),
        ("subnets", lambda v: {"cidr": "10.9.0.0/24", "gateway_ip": v}),
        ("subnets", lambda v: {"cidr": "10.9.0.0/24", "dns_nameservers": [v]}),
        (
            "subnets",
            lambda v: {
                "cidr": "10.9.0.0/24",
                "allocation_pools": [{"start": v, "end": "10.9.0.9"}],
            },
        ),
        (
            "subnets",
            lambda v: {
                "cidr": "10.9.0.0/24",
                "host_routes": [{"destination": v, "nexthop": "10.9.0.1"}],
            },
        ),
        (
            "subnets",
            lambda v: {
                "cidr": "10.9.0.0/24",
                "host_routes": [{"destination": "10.8.0.0/16", "nexthop": v}],
            },
        ),
        ("ports", lambda v: {"fixed_ips": [{"ip_address": v}]}),
        ("ports", lambda v: {"allowed_address_pairs": [{"ip_address": v}]}),
        ("floatingips", lambda v: {"floating_ip_address": v}),
    ],
)
def test_neutron_api_refuses_hostile_addresses(client, net, collection, attrs, value) -> None:
    key = collection[:-1]
    body = {"network_id": net["network"]["id"], **attrs(value)}
    if collection == "floatingips":
        body = {"floating_network_id": net["network"]["id"], **attrs(value)}
    r = client.post(f"/v2.0/{collection}", json={key: body})
    assert error(r, 400) in ("InvalidInput", "HTTPBadRequest"), r.text


@pytest.mark.parametrize("value", HOSTILE)
def test_security_group_rules_refuse_hostile_prefixes(client, value) -> None:
    sg = make(client, "security-groups", "security_group", name="sg")
    rule = {"security_group_id": sg["id"], "direction": "ingress", "remote_ip_prefix": value}
    r = client.post("/v2.0/security-group-rules", json={"security_group_rule": rule})
    assert error(r, 400) in ("InvalidInput", "HTTPBadRequest"), r.text


def _port(client, net, **attrs) -> Any:
    body = {"network_id": net["network"]["id"], **attrs}
    return client.post("/v2.0/ports", json={"port": body})


def test_a_zone_id_does_not_get_around_address_uniqueness(client, net) -> None:
    assert _port(client, net, fixed_ips=[{"ip_address": "2001:db8:1::5"}]).status_code == 201
    r = _port(client, net, fixed_ips=[{"ip_address": "2001:db8:1::5%dup"}])
    assert r.status_code == 400, r.text
    # Another spelling of the same address is the same address.
    r = _port(client, net, fixed_ips=[{"ip_address": "2001:DB8:1:0::05"}])
    assert error(r, 409) == "IpAddressAlreadyAllocated"
    ports = client.get("/v2.0/ports").json()["ports"]
    assert [p["fixed_ips"][0]["ip_address"] for p in ports] == ["2001:db8:1::5"]


def test_allowed_address_pairs_with_a_zone_id_are_refused(client, net) -> None:
    r = _port(client, net, allowed_address_pairs=[{"ip_address": '2001:db8:1::9%x"; }'}])
    assert error(r, 400) == "InvalidInput"
    r = _port(client, net, allowed_address_pairs=[{"ip_address": "2001:DB8:1::9"}])
    assert r.json()["port"]["allowed_address_pairs"][0]["ip_address"] == "2001:db8:1::9"


def test_gateway_ip_with_a_zone_id_is_refused(client, net) -> None:
    subnet = {"network_id": net["network"]["id"], "cidr": "2001:db8:2::/64", "ip_version": 6}
    r = client.post("/v2.0/subnets", json={"subnet": {**subnet, "gateway_ip": "2001:db8:2::1%x"}})
    assert error(r, 400) == "InvalidInput"
    r = client.put(
        f"/v2.0/subnets/{net['subnet']['id']}", json={"subnet": {"gateway_ip": "2001:db8:1::1%x"}}
    )
    assert error(r, 400) == "InvalidInput"


def test_anycast_address_with_a_zone_id_is_refused(client, net) -> None:
    body = {"name": "svc", "subnet_id": net["subnet"]["id"], "address": "2001:db8:1::7%x"}
    r = client.post("/v1/anycast", json=body)
    assert error(r, 400) == "InvalidInput"
    r = client.post("/v1/anycast", json={**body, "address": "2001:DB8:1::7"})
    assert r.status_code == 201 and r.json()["address"] == "2001:db8:1::7"
    # The port that tries the same address by another spelling finds it taken.
    r = _port(client, net, fixed_ips=[{"ip_address": "2001:db8:1:0:0::7"}])
    assert error(r, 409) == "IpAddressAlreadyAllocated"
