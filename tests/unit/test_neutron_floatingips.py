"""Floating IPs over the Neutron API: accepted, stored, allocated by the
ports' IPAM, associated and disassociated, released on delete, and holding
their external network and subnet in use."""

from __future__ import annotations

import pytest

from tests.unit.api_helpers import error, make
from tests.unit.test_neutron_api import network, port, subnet


@pytest.fixture
def public(client):
    net = network(client, name="public", **{"router:external": True})
    return net, subnet(client, net, "203.0.113.0/24")


def fip(client, net, **attrs):
    return make(client, "floatingips", "floatingip", floating_network_id=net["id"], **attrs)


def post(client, body):
    return client.post("/v2.0/floatingips", json={"floatingip": body})


def put(client, fip_id, body):
    return client.put(f"/v2.0/floatingips/{fip_id}", json={"floatingip": body})


def test_create_shows_neutron_fields_and_holds_the_address_in_a_port(client, public) -> None:
    net, sub = public
    created = fip(client, net, description="web")
    assert created["floating_ip_address"] == "203.0.113.2"
    assert created["floating_network_id"] == net["id"]
    assert (created["router_id"], created["port_id"], created["fixed_ip_address"]) == (
        None,
        None,
        None,
    )
    assert created["status"] == "DOWN"
    assert created["project_id"] == created["tenant_id"] == "default"
    assert created["description"] == "web"
    assert created["revision_number"] == 0
    assert created["created_at"] and created["updated_at"]
    (holder,) = client.get("/v2.0/ports").json()["ports"]
    assert holder["device_owner"] == "network:floatingip"
    assert holder["device_id"] == created["id"]
    assert holder["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "203.0.113.2"}]
    # A port on the same network gets the next address, not the floating one.
    assert port(client, net)["fixed_ips"][0]["ip_address"] == "203.0.113.3"
    shown = client.get(f"/v2.0/floatingips/{created['id']}").json()["floatingip"]
    assert shown == created
    assert "floatingips" in {r["collection"] for r in client.get("/v2.0/").json()["resources"]}


def test_requested_address_subnet_and_conflicts(client, public) -> None:
    net, sub = public
    chosen = fip(client, net, floating_ip_address="203.0.113.77", subnet_id=sub["id"])
    assert chosen["floating_ip_address"] == "203.0.113.77"
    taken = post(client, {"floating_network_id": net["id"], "floating_ip_address": "203.0.113.77"})
    assert error(taken, 409) == "IpAddressAlreadyAllocated"
    assert "203.0.113.77 already allocated" in taken.json()["NeutronError"]["message"]
    outside = post(client, {"floating_network_id": net["id"], "floating_ip_address": "10.9.9.9"})
    assert error(outside, 400) == "InvalidIpForNetwork"
    gateway = post(client, {"floating_network_id": net["id"], "floating_ip_address": "203.0.113.1"})
    assert error(gateway, 409) == "IpAddressAlreadyAllocated"
    v6 = post(client, {"floating_network_id": net["id"], "floating_ip_address": "2001:db8::5"})
    assert error(v6, 400) == "InvalidInput"


def test_network_must_exist_and_be_external(client, public) -> None:
    missing = post(client, {"floating_network_id": "nope"})
    assert error(missing, 404) == "NetworkNotFound"
    private = network(client, name="private")
    subnet(client, private, "10.1.0.0/24")
    refused = post(client, {"floating_network_id": private["id"]})
    assert error(refused, 400) == "InvalidInput"
    assert refused.json()["NeutronError"]["message"] == (
        f"Bad floatingip request: Network {private['id']} is not a valid external network."
    )
    assert error(post(client, {}), 400) == "InvalidInput"
    assert client.get("/v2.0/ports").json()["ports"] == []


def test_external_network_without_ipv4_room(client) -> None:
    net = network(client, **{"router:external": True})
    subnet(client, net, "2001:db8:1::/64")
    assert error(post(client, {"floating_network_id": net["id"]}), 400) == "InvalidInput"
    # A full first subnet is skipped for the next one.
    tiny = subnet(client, net, "198.51.100.0/30")
    subnet(client, net, "192.0.2.0/24")
    first = fip(client, net)
    assert first["floating_ip_address"] == "198.51.100.2"
    assert fip(client, net)["floating_ip_address"] == "192.0.2.2"
    full = post(client, {"floating_network_id": net["id"], "subnet_id": tiny["id"]})
    assert error(full, 409) == "IpAddressGenerationFailure"


def test_associate_and_disassociate(client, public) -> None:
    net, _ = public
    private = network(client, name="private")
    subnet(client, private, "10.1.0.0/24")
    vm = port(client, private)
    created = fip(client, net, port_id=vm["id"])
    assert (created["port_id"], created["fixed_ip_address"]) == (vm["id"], "10.1.0.2")
    listed = client.get("/v2.0/floatingips", params={"port_id": vm["id"]}).json()
    assert [f["id"] for f in listed["floatingips"]] == [created["id"]]
    by_address = client.get("/v2.0/floatingips", params={"floating_ip_address": "203.0.113.2"})
    assert [f["id"] for f in by_address.json()["floatingips"]] == [created["id"]]

    # One floating IP per fixed IP and external network.
    second = fip(client, net)
    again = put(client, second["id"], {"port_id": vm["id"]})
    assert error(again, 409) == "FloatingIPPortAlreadyAssociated"

    freed = put(client, created["id"], {"port_id": None, "description": "spare"}).json()
    assert freed["floatingip"]["port_id"] is None
    assert freed["floatingip"]["fixed_ip_address"] is None
    assert freed["floatingip"]["description"] == "spare"
    assert freed["floatingip"]["revision_number"] == 1
    moved = put(client, second["id"], {"port_id": vm["id"], "fixed_ip_address": "10.1.0.2"})
    assert moved.json()["floatingip"]["fixed_ip_address"] == "10.1.0.2"


def test_association_errors(client, public) -> None:
    net, _ = public
    created = fip(client, net)
    assert error(put(client, created["id"], {"port_id": "nope"}), 404) == "PortNotFound"
    private = network(client)
    subnet(client, private, "10.1.0.0/24")
    vm = port(client, private)
    wrong = put(client, created["id"], {"port_id": vm["id"], "fixed_ip_address": "10.1.0.99"})
    assert error(wrong, 400) == "InvalidInput"
    assert "does not have fixed ip 10.1.0.99" in wrong.json()["NeutronError"]["message"]
    lonely = put(client, created["id"], {"fixed_ip_address": "10.1.0.2"})
    assert error(lonely, 400) == "InvalidInput"
    bare = port(client, private, fixed_ips=[])
    assert error(put(client, created["id"], {"port_id": bare["id"]}), 400) == "InvalidInput"
    frozen = put(client, created["id"], {"floating_ip_address": "203.0.113.9"})
    assert error(frozen, 400) == "InvalidInput"
    other = port(client, private, project_id="someone-else")
    assert error(put(client, created["id"], {"port_id": other["id"]}), 400) == "InvalidInput"
    unchanged = client.get(f"/v2.0/floatingips/{created['id']}").json()["floatingip"]
    assert unchanged == created


def test_delete_releases_the_address_and_in_use_refusals(client, public) -> None:
    net, sub = public
    created = fip(client, net, floating_ip_address="203.0.113.50")
    assert error(client.delete(f"/v2.0/subnets/{sub['id']}"), 409) == "SubnetInUse"
    assert error(client.delete(f"/v2.0/networks/{net['id']}"), 409) == "NetworkInUse"
    assert client.delete(f"/v2.0/floatingips/{created['id']}").status_code == 204
    assert error(client.get(f"/v2.0/floatingips/{created['id']}"), 404) == "FloatingIPNotFound"
    assert error(client.delete(f"/v2.0/floatingips/{created['id']}"), 404) == "FloatingIPNotFound"
    assert client.get("/v2.0/ports").json()["ports"] == []
    # The address is free again.
    assert fip(client, net, floating_ip_address="203.0.113.50")["id"] != created["id"]


def test_if_match_on_update(client, public) -> None:
    net, _ = public
    created = fip(client, net)
    stale = client.put(
        f"/v2.0/floatingips/{created['id']}",
        json={"floatingip": {"description": "x"}},
        headers={"If-Match": "revision_number=5"},
    )
    assert error(stale, 412) == "RevisionNumberConstraintFailed"


def test_disassociate_port_clears_its_floating_ips(client, public) -> None:
    net, _ = public
    private = network(client)
    subnet(client, private, "10.1.0.0/24")
    vm = port(client, private)
    kept = fip(client, net)
    associated = fip(client, net, port_id=vm["id"])
    client.app.state.neutron.floatingips.disassociate_port(vm["id"])
    shown = client.get(f"/v2.0/floatingips/{associated['id']}").json()["floatingip"]
    assert (shown["port_id"], shown["fixed_ip_address"]) == (None, None)
    assert client.get(f"/v2.0/floatingips/{kept['id']}").json()["floatingip"] == kept


def test_deleting_a_port_clears_its_floating_ip_and_the_holder_port_is_protected(
    client, public
) -> None:
    net, _ = public
    private = network(client)
    subnet(client, private, "10.1.0.0/24")
    vm = port(client, private)
    created = fip(client, net, port_id=vm["id"])
    assert client.delete(f"/v2.0/ports/{vm['id']}").status_code == 204
    shown = client.get(f"/v2.0/floatingips/{created['id']}").json()["floatingip"]
    assert (shown["port_id"], shown["fixed_ip_address"]) == (None, None)

    holder = client.app.state.neutron.floatingips.holder(created["id"])
    refused = client.delete(f"/v2.0/ports/{holder['id']}")
    assert error(refused, 409) == "PortInUse"
    assert "network:floatingip" in refused.json()["NeutronError"]["message"]
    assert client.delete(f"/v2.0/floatingips/{created['id']}").status_code == 204
    assert client.get(f"/v2.0/ports/{holder['id']}").status_code == 404
