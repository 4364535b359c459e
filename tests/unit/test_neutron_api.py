"""The Neutron v2.0 API as a client sees it: documents, envelopes, status
codes, errors, filters, and the semantics of each resource."""

from __future__ import annotations

import re

import pytest

from tests.unit.api_helpers import error, make


def network(client, **attrs):
    return make(client, "networks", "network", **attrs)


def subnet(client, net, cidr, **attrs):
    return make(client, "subnets", "subnet", network_id=net["id"], cidr=cidr, **attrs)


def port(client, net, **attrs):
    return make(client, "ports", "port", network_id=net["id"], **attrs)


# Documents ------------------------------------------------------------------


def test_version_document_is_exact(client) -> None:
    assert client.get("/").json() == {
        "versions": [
            {
                "id": "v2.0",
                "status": "CURRENT",
                "links": [{"rel": "self", "href": "http://testserver/v2.0/"}],
            }
        ]
    }


def test_resources_and_extensions(client) -> None:
    names = {r["collection"] for r in client.get("/v2.0/").json()["resources"]}
    assert {"networks", "subnets", "ports", "security-groups", "routers"} <= names
    aliases = {e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]}
    assert {"external-net", "binding", "allowed-address-pairs", "security-group"} <= aliases
    assert client.get("/v2.0/extensions/binding").json()["extension"]["alias"] == "binding"
    assert error(client.get("/v2.0/extensions/dvr"), 404) == "ExtensionNotFound"
    assert error(client.get("/v2.0/no-such-things"), 404) == "HTTPNotFound"


# Networks -------------------------------------------------------------------


def test_network_attributes_and_standard_fields(client) -> None:
    net = network(client, name="pub", **{"router:external": True, "provider:network_type": "flat"})
    assert net["router:external"] is True and net["shared"] is False
    assert net["admin_state_up"] is True and net["status"] == "ACTIVE"
    assert net["provider:network_type"] == "flat"
    assert net["project_id"] == net["tenant_id"] == "default"
    assert net["revision_number"] == 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", net["created_at"])
    r = client.put(f"/v2.0/networks/{net['id']}", json={"network": {"name": "pub2"}})
    assert r.status_code == 200
    assert r.json()["network"]["revision_number"] == 1
    assert client.get(f"/v2.0/networks/{net['id']}").json()["network"]["name"] == "pub2"


def test_project_header_sets_the_owner(client) -> None:
    r = client.post("/v2.0/networks", json={"network": {}}, headers={"X-Project-Id": "p1"})
    assert r.json()["network"]["project_id"] == "p1"


def test_unknown_id_is_404_so_name_lookup_falls_back_to_a_query(client) -> None:
    network(client, name="blue")
    assert error(client.get("/v2.0/networks/blue"), 404) == "NetworkNotFound"
    assert [n["name"] for n in client.get("/v2.0/networks?name=blue").json()["networks"]] == [
        "blue"
    ]
    for collection, kind in [
        ("ports", "PortNotFound"),
        ("subnets", "SubnetNotFound"),
        ("security-groups", "SecurityGroupNotFound"),
    ]:
        assert error(client.get(f"/v2.0/{collection}/nope"), 404) == kind
        assert error(client.delete(f"/v2.0/{collection}/nope"), 404) == kind


def test_filters_and_fields(client) -> None:
    a = network(client, name="a", **{"router:external": True})
    b = network(client, name="b")
    network(client, name="c", shared=True)

    def names(query: str) -> list[str]:
        return sorted(n["name"] for n in client.get(f"/v2.0/networks?{query}").json()["networks"])

    assert names("router:external=True") == ["a"]
    assert names("router%3Aexternal=false") == ["b", "c"]
    assert names("name=a&name=b") == ["a", "b"]  # OR within a key
    assert names("name=a&name=b&shared=true") == []  # AND across keys
    assert names(f"id={b['id']}") == ["b"]
    got = client.get(f"/v2.0/networks/{a['id']}?fields=id&fields=name").json()["network"]
    assert got == {"id": a["id"], "name": "a"}
    listed = client.get("/v2.0/networks?fields=name&name=a").json()["networks"]
    assert listed == [{"name": "a"}]


def test_pagination_and_sorting(client) -> None:
    for name in "dcab":
        network(client, name=name)
    page = client.get("/v2.0/networks?sort_key=name&sort_dir=asc&limit=3").json()
    assert [n["name"] for n in page["networks"]] == ["a", "b", "c"]
    next_href = page["networks_links"][0]["href"]
    rest = client.get(next_href).json()
    assert [n["name"] for n in rest["networks"]] == ["d"]
    assert "networks_links" not in rest


def test_bulk_create_is_all_or_nothing(client) -> None:
    r = client.post("/v2.0/networks", json={"networks": [{"name": "x"}, {"name": "y"}]})
    assert r.status_code == 201
    assert [n["name"] for n in r.json()["networks"]] == ["x", "y"]
    r = client.post("/v2.0/networks", json={"networks": [{"name": "z"}, {"mtu": "nope"}]})
    assert error(r, 400) == "InvalidInput"
    assert client.get("/v2.0/networks?name=z").json()["networks"] == []


def test_if_match_revision(client) -> None:
    net = network(client)
    url = f"/v2.0/networks/{net['id']}"
    r = client.put(url, json={"network": {"name": "n"}}, headers={"If-Match": "revision_number=5"})
    assert error(r, 412) == "RevisionNumberConstraintFailed"
    r = client.put(url, json={"network": {"name": "n"}}, headers={"If-Match": "revision_number=0"})
    assert r.status_code == 200


# Subnets --------------------------------------------------------------------


def test_subnet_defaults_v4_and_v6(client) -> None:
    net = network(client)
    v4 = subnet(client, net, "10.0.0.0/24", ip_version=4)
    assert v4["gateway_ip"] == "10.0.0.1"
    assert v4["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert v4["enable_dhcp"] is True
    v6 = subnet(client, net, "2001:db8::/64", ip_version=6, gateway_ip=None)
    assert v6["gateway_ip"] is None
    assert v6["allocation_pools"] == [
        {"start": "2001:db8::1", "end": "2001:db8::ffff:ffff:ffff:ffff"}
    ]
    assert client.get(f"/v2.0/networks/{net['id']}").json()["network"]["subnets"] == [
        v4["id"],
        v6["id"],
    ]


@pytest.mark.parametrize(
    ("attrs", "kind"),
    [
        ({"cidr": "10.0.0.0/0"}, "InvalidInput"),
        ({"cidr": "10.0.0.1/24"}, "InvalidInput"),
        ({"cidr": "banana"}, "InvalidInput"),
        ({"cidr": "10.0.0.0/24", "ip_version": 6}, "InvalidInput"),
        ({"cidr": "10.0.0.0/24", "gateway_ip": "10.0.1.1"}, "InvalidInput"),
        ({"cidr": "10.0.0.0/24", "gateway_ip": "10.0.0.255"}, "InvalidInput"),
        (
            {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.1.2", "end": "10.0.1.9"}]},
            "InvalidInput",
        ),
        (
            {"cidr": "10.0.0.0/24", "allocation_pools": [{"start": "10.0.0.1", "end": "10.0.0.9"}]},
            "GatewayConflictWithAllocationPools",
        ),
        ({"cidr": "10.0.0.0/24", "ip_version": "four"}, "InvalidInput"),
        (
            {
                "cidr": "10.0.0.0/24",
                "host_routes": [{"destination": "2001:db8::/64", "nexthop": "10.0.0.9"}],
            },
            "InvalidInput",
        ),
    ],
)
def test_bad_subnets_are_rejected(client, attrs, kind) -> None:
    net = network(client)
    r = client.post("/v2.0/subnets", json={"subnet": {"network_id": net["id"], **attrs}})
    assert error(r, 409 if kind.startswith("Gateway") else 400) == kind


def test_overlapping_subnets_only_matter_on_one_network(client) -> None:
    a, b = network(client), network(client)
    subnet(client, a, "10.0.0.0/24")
    r = client.post(
        "/v2.0/subnets", json={"subnet": {"network_id": a["id"], "cidr": "10.0.0.128/25"}}
    )
    assert error(r, 400) == "InvalidInput"
    assert "overlaps" in r.json()["NeutronError"]["message"]
    subnet(client, b, "10.0.0.0/24")


def test_subnet_on_unknown_network_is_404(client) -> None:
    r = client.post("/v2.0/subnets", json={"subnet": {"network_id": "nope", "cidr": "10.0.0.0/24"}})
    assert error(r, 404) == "NetworkNotFound"


# Ports ----------------------------------------------------------------------


def test_port_defaults(client) -> None:
    net = network(client)
    sub = subnet(client, net, "10.0.0.0/24")
    p = port(client, net, **{"binding:host_id": "h1"})
    assert p["status"] == "DOWN"
    assert re.fullmatch(r"fa:16:3e(:[0-9a-f]{2}){3}", p["mac_address"])
    assert p["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.2"}]
    assert p["binding:host_id"] == "h1" and p["binding:vif_type"] == "tap"
    default = client.get("/v2.0/security-groups?name=default").json()["security_groups"]
    assert p["security_groups"] == [default[0]["id"]]


def test_dual_stack_port_gets_one_address_per_family(client) -> None:
    net = network(client)
    subnet(client, net, "10.0.0.0/24")
    subnet(client, net, "2001:db8::/64")
    p = port(client, net)
    assert [f["ip_address"] for f in p["fixed_ips"]] == ["10.0.0.2", "2001:db8::2"]


def test_requested_addresses(client) -> None:
    net = network(client)
    sub = subnet(client, net, "10.0.0.0/24")
    p = port(client, net, fixed_ips=[{"ip_address": "10.0.0.50"}])
    assert p["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.50"}]
    r = client.post(
        "/v2.0/ports",
        json={"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.50"}]}},
    )
    assert error(r, 409) == "IpAddressAlreadyAllocated"
    assert "10.0.0.50" in r.json()["NeutronError"]["message"]
    for bad in ["10.0.1.5", "10.0.0.255", "10.0.0.0"]:
        r = client.post(
            "/v2.0/ports",
            json={"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": bad}]}},
        )
        assert r.status_code == 400, bad
    r = client.post(
        "/v2.0/ports",
        json={
            "port": {
                "network_id": net["id"],
                "fixed_ips": [{"subnet_id": sub["id"], "ip_address": "10.0.0.1"}],
            }
        },
    )
    assert error(r, 409) == "IpAddressAlreadyAllocated"  # the gateway


def test_fixed_ips_update_reruns_ipam_and_releases(client) -> None:
    net = network(client)
    sub = subnet(client, net, "10.0.0.0/24")
    p = port(client, net, fixed_ips=[{"ip_address": "10.0.0.10"}])
    r = client.put(
        f"/v2.0/ports/{p['id']}", json={"port": {"fixed_ips": [{"ip_address": "10.0.0.11"}]}}
    )
    assert r.status_code == 200
    assert r.json()["port"]["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.11"}]
    assert r.json()["port"]["revision_number"] == 1
    # 10.0.0.10 is free again, 10.0.0.11 is not.
    port(client, net, fixed_ips=[{"ip_address": "10.0.0.10"}])
    r = client.post(
        "/v2.0/ports",
        json={"port": {"network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.11"}]}},
    )
    assert error(r, 409) == "IpAddressAlreadyAllocated"
    # A subnet-only entry keeps the address the port has there, and adds one.
    r = client.put(
        f"/v2.0/ports/{p['id']}",
        json={"port": {"fixed_ips": [{"subnet_id": sub["id"]}, {"subnet_id": sub["id"]}]}},
    )
    ips = [f["ip_address"] for f in r.json()["port"]["fixed_ips"]]
    assert ips[0] == "10.0.0.11" and len(set(ips)) == 2


def test_delete_releases_addresses(client) -> None:
    net = network(client)
    subnet(client, net, "10.0.0.0/24")
    p = port(client, net, fixed_ips=[{"ip_address": "10.0.0.7"}])
    assert client.delete(f"/v2.0/ports/{p['id']}").status_code == 204
    port(client, net, fixed_ips=[{"ip_address": "10.0.0.7"}])


def test_pool_exhaustion_is_a_clean_409(client) -> None:
    net = network(client)
    subnet(client, net, "10.0.0.0/30")  # one usable address after the gateway
    port(client, net)
    r = client.post("/v2.0/ports", json={"port": {"network_id": net["id"]}})
    assert error(r, 409) == "IpAddressGenerationFailure"


def test_allowed_address_pairs(client) -> None:
    net = network(client)
    subnet(client, net, "10.0.0.0/24")
    p = port(
        client,
        net,
        allowed_address_pairs=[{"ip_address": "10.0.0.200"}, {"ip_address": "10.0.0.64/26"}],
    )
    assert p["allowed_address_pairs"] == [
        {"ip_address": "10.0.0.200", "mac_address": p["mac_address"]},
        {"ip_address": "10.0.0.64/26", "mac_address": p["mac_address"]},
    ]
    for bad in ["10.1.0.1", "not-an-ip", "10.0.0.0/8"]:
        r = client.put(
            f"/v2.0/ports/{p['id']}",
            json={"port": {"allowed_address_pairs": [{"ip_address": bad}]}},
        )
        assert error(r, 400) == "InvalidInput", bad


def test_port_filters_on_fixed_ips_and_binding(client) -> None:
    net = network(client)
    subnet(client, net, "10.0.0.0/24")
    a = port(client, net, fixed_ips=[{"ip_address": "10.0.0.5"}], **{"binding:host_id": "h1"})
    port(client, net)
    got = client.get("/v2.0/ports?fixed_ips=ip_address%3D10.0.0.5").json()["ports"]
    assert [p["id"] for p in got] == [a["id"]]
    got = client.get("/v2.0/ports?binding:host_id=h1").json()["ports"]
    assert [p["id"] for p in got] == [a["id"]]


def test_status_is_read_only(client) -> None:
    net = network(client)
    p = port(client, net)
    r = client.put(f"/v2.0/ports/{p['id']}", json={"port": {"status": "ACTIVE"}})
    assert error(r, 400) == "InvalidInput"
    r = client.put(f"/v2.0/ports/{p['id']}", json={"port": {"network_id": "x"}})
    assert error(r, 400) == "InvalidInput"


def test_in_use_networks_and_subnets(client) -> None:
    net = network(client)
    sub = subnet(client, net, "10.0.0.0/24")
    p = port(client, net)
    assert error(client.delete(f"/v2.0/networks/{net['id']}"), 409) == "NetworkInUse"
    assert error(client.delete(f"/v2.0/subnets/{sub['id']}"), 409) == "SubnetInUse"
    client.delete(f"/v2.0/ports/{p['id']}")
    assert client.delete(f"/v2.0/networks/{net['id']}").status_code == 204
    # The network took its subnets with it.
    assert error(client.get(f"/v2.0/subnets/{sub['id']}"), 404) == "SubnetNotFound"


def test_subnet_delete_updates_the_network(client) -> None:
    net = network(client)
    sub = subnet(client, net, "10.0.0.0/24")
    assert client.delete(f"/v2.0/subnets/{sub['id']}").status_code == 204
    assert client.get(f"/v2.0/networks/{net['id']}").json()["network"]["subnets"] == []


# Security groups ------------------------------------------------------------


def test_security_groups_and_rules(client) -> None:
    groups = client.get("/v2.0/security-groups").json()["security_groups"]
    assert [g["name"] for g in groups] == ["default"]
    default = groups[0]
    assert (
        error(client.delete(f"/v2.0/security-groups/{default['id']}"), 409)
        == "SecurityGroupCannotRemoveDefault"
    )
    web = make(client, "security-groups", "security_group", name="web")
    assert {r["direction"] for r in web["security_group_rules"]} == {"egress"}
    rule = make(
        client,
        "security-group-rules",
        "security_group_rule",
        security_group_id=web["id"],
        direction="ingress",
        protocol="tcp",
        port_range_min=80,
        port_range_max=80,
        remote_ip_prefix="192.0.2.7/24",
    )
    assert rule["remote_ip_prefix"] == "192.0.2.0/24"
    again = client.post(
        "/v2.0/security-group-rules",
        json={
            "security_group_rule": {
                k: rule[k]
                for k in (
                    "security_group_id",
                    "direction",
                    "protocol",
                    "port_range_min",
                    "port_range_max",
                    "remote_ip_prefix",
                )
            }
        },
    )
    assert error(again, 409) == "SecurityGroupRuleExists"
    group = client.get(f"/v2.0/security-groups/{web['id']}").json()["security_group"]
    assert rule["id"] in [r["id"] for r in group["security_group_rules"]]
    assert group["revision_number"] == 1
    assert client.delete(f"/v2.0/security-group-rules/{rule['id']}").status_code == 204
    group = client.get(f"/v2.0/security-groups/{web['id']}").json()["security_group"]
    assert rule["id"] not in [r["id"] for r in group["security_group_rules"]]


@pytest.mark.parametrize(
    "attrs",
    [
        {"direction": "sideways"},
        {"direction": "ingress", "protocol": "tcp", "port_range_min": 90, "port_range_max": 80},
        {"direction": "ingress", "protocol": "banana"},
        {"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"},
        {"direction": "ingress", "protocol": "gre", "port_range_min": 1, "port_range_max": 2},
    ],
)
def test_bad_rules(client, attrs) -> None:
    web = make(client, "security-groups", "security_group", name="web")
    r = client.post(
        "/v2.0/security-group-rules",
        json={"security_group_rule": {"security_group_id": web["id"], **attrs}},
    )
    assert r.status_code == 400


def test_group_in_use_cannot_be_deleted(client) -> None:
    web = make(client, "security-groups", "security_group", name="web")
    net = network(client)
    p = port(client, net, security_groups=[web["id"]])
    assert error(client.delete(f"/v2.0/security-groups/{web['id']}"), 409) == "SecurityGroupInUse"
    r = client.post(
        "/v2.0/ports", json={"port": {"network_id": net["id"], "security_groups": ["nope"]}}
    )
    assert error(r, 404) == "SecurityGroupNotFound"
    client.delete(f"/v2.0/ports/{p['id']}")
    assert client.delete(f"/v2.0/security-groups/{web['id']}").status_code == 204


# Routers --------------------------------------------------------------------


def test_routers_are_stored_and_interfaces_hold_the_gateway(client) -> None:
    ext = network(client, **{"router:external": True})
    net = network(client)
    sub = subnet(client, net, "10.0.0.0/24")
    router = make(
        client, "routers", "router", name="r", external_gateway_info={"network_id": ext["id"]}
    )
    assert router["external_gateway_info"]["network_id"] == ext["id"]
    r = client.post(
        "/v2.0/routers", json={"router": {"external_gateway_info": {"network_id": net["id"]}}}
    )
    assert error(r, 400) == "InvalidInput"
    info = client.put(
        f"/v2.0/routers/{router['id']}/add_router_interface", json={"subnet_id": sub["id"]}
    ).json()
    iface = client.get(f"/v2.0/ports/{info['port_id']}").json()["port"]
    assert iface["fixed_ips"][0]["ip_address"] == "10.0.0.1"
    assert iface["device_owner"] == "network:router_interface"
    assert error(client.delete(f"/v2.0/routers/{router['id']}"), 409) == "RouterInUse"
    client.put(
        f"/v2.0/routers/{router['id']}/remove_router_interface", json={"subnet_id": sub["id"]}
    )
    assert client.delete(f"/v2.0/routers/{router['id']}").status_code == 204


# No input is a 500 ----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/v2.0/networks", b"{not json"),
        ("post", "/v2.0/networks", b""),
        ("post", "/v2.0/networks", b"[]"),
        ("post", "/v2.0/networks", b'{"network": []}'),
        ("post", "/v2.0/networks", b'{"network": {"admin_state_up": "maybe"}}'),
        ("post", "/v2.0/networks", b'{"networks": {}}'),
        ("post", "/v2.0/networks", b'{"nets": {}}'),
        ("post", "/v2.0/networks", b'{"network": {"name": 7}}'),
        ("post", "/v2.0/subnets", b'{"subnet": {"cidr": "10.0.0.0/24"}}'),
        ("post", "/v2.0/subnets", b'{"subnet": {"network_id": 5, "cidr": null}}'),
        ("post", "/v2.0/ports", b'{"port": {"network_id": "x", "fixed_ips": "10.0.0.1"}}'),
        ("post", "/v2.0/ports", b'{"port": {"network_id": "x", "mac_address": "zz"}}'),
        ("post", "/v2.0/ports", b'{"port": {}}'),
        (
            "post",
            "/v2.0/security-group-rules",
            b'{"security_group_rule": {"direction": "ingress"}}',
        ),
        ("put", "/v2.0/networks/x", b'{"network": {}}'),
        ("put", "/v2.0/security-group-rules/x", b'{"security_group_rule": {}}'),
        ("get", "/v2.0/networks?limit=-1", None),
        ("get", "/v2.0/networks?marker=nope", None),
        ("get", "/v2.0/networks?sort_dir=sideways", None),
        ("put", "/v2.0/routers/x/add_router_interface", b"{}"),
    ],
)
def test_bad_requests_are_4xx_with_a_neutron_body(client, method, path, body) -> None:
    r = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert set(r.json()["NeutronError"]) == {"type", "message", "detail"}
