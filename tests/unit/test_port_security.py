"""Neutron's port-security extension through the API: networks default to on,
a port inherits its network's value, and a port with port security off has
no security groups and no allowed address pairs (Neutron's errors)."""

from __future__ import annotations

import pytest

from tests.unit.api_helpers import error, make


def _network(client, **attrs):
    net = make(client, "networks", "network", **attrs)
    make(client, "subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24")
    return net


def _port(client, net, **attrs):
    return make(client, "ports", "port", network_id=net["id"], **attrs)


def _create(client, net, **attrs):
    return client.post("/v2.0/ports", json={"port": {"network_id": net["id"], **attrs}})


def _update(client, port_id, **attrs):
    return client.put(f"/v2.0/ports/{port_id}", json={"port": attrs})


def _group(client, name="web"):
    return make(client, "security-groups", "security_group", name=name)


def test_the_extension_is_listed_as_neutron_names_it(client) -> None:
    found = client.get("/v2.0/extensions/port-security").json()["extension"]
    assert found["alias"] == "port-security"


def test_networks_default_to_port_security_and_ports_inherit_it(client) -> None:
    secured = _network(client)
    assert secured["port_security_enabled"] is True
    port = _port(client, secured)
    assert port["port_security_enabled"] is True and len(port["security_groups"]) == 1

    open_net = _network(client, port_security_enabled=False)
    assert open_net["port_security_enabled"] is False
    # Inherited off: no groups at all, not the default group.
    port = _port(client, open_net)
    assert port["port_security_enabled"] is False and port["security_groups"] == []
    # A port may still turn it on for itself on such a network.
    own = _port(client, open_net, port_security_enabled=True)
    assert own["port_security_enabled"] is True and len(own["security_groups"]) == 1


def test_a_network_can_change_its_default(client) -> None:
    net = _network(client)
    r = client.put(
        f"/v2.0/networks/{net['id']}", json={"network": {"port_security_enabled": False}}
    )
    assert r.status_code == 200 and r.json()["network"]["port_security_enabled"] is False
    assert _port(client, net)["security_groups"] == []


def test_a_port_without_port_security_cannot_have_groups(client) -> None:
    net = _network(client)
    web = _group(client)
    r = _create(client, net, port_security_enabled=False, security_groups=[web["id"]])
    assert error(r, 400) == "PortSecurityAndIPRequiredForSecurityGroups"
    assert client.get("/v2.0/ports").json()["ports"] == []  # nothing was created
    port = _port(client, net, port_security_enabled=False, security_groups=[])
    r = _update(client, port["id"], security_groups=[web["id"]])
    assert error(r, 400) == "PortSecurityAndIPRequiredForSecurityGroups"


def test_disabling_port_security_needs_the_groups_cleared_in_the_same_request(client) -> None:
    net = _network(client)
    port = _port(client, net)
    r = _update(client, port["id"], port_security_enabled=False)
    assert error(r, 409) == "PortSecurityPortHasSecurityGroup"
    kept = client.get(f"/v2.0/ports/{port['id']}").json()["port"]
    assert kept["port_security_enabled"] is True and kept["security_groups"]
    r = _update(client, port["id"], port_security_enabled=False, security_groups=[])
    assert r.status_code == 200, r.text
    assert r.json()["port"]["port_security_enabled"] is False
    assert r.json()["port"]["security_groups"] == []
    # Back on: the groups are the user's to set again (Neutron adds none).
    r = _update(client, port["id"], port_security_enabled=True)
    assert r.json()["port"]["security_groups"] == []


@pytest.mark.parametrize("on_create", [True, False])
def test_allowed_address_pairs_need_port_security(client, on_create: bool) -> None:
    net = _network(client)
    pairs = [{"ip_address": "10.0.0.99"}]
    if on_create:
        r = _create(client, net, port_security_enabled=False, allowed_address_pairs=pairs)
    else:
        port = _port(client, net, allowed_address_pairs=pairs)
        r = _update(client, port["id"], port_security_enabled=False, security_groups=[])
    assert error(r, 409) == "AddressPairAndPortSecurityRequired"
    if not on_create:
        r = _update(
            client,
            port["id"],
            port_security_enabled=False,
            security_groups=[],
            allowed_address_pairs=[],
        )
        assert r.status_code == 200, r.text


def test_the_networks_own_ports_get_no_default_group(client) -> None:
    # Neutron's trusted ports: a router interface's or floating IP's address
    # must not become a member of the project's default group.
    net = _network(client)
    router_port = _port(client, net, device_owner="network:router_interface")
    assert router_port["security_groups"] == []
    assert _port(client, net, device_owner="compute:nova")["security_groups"]
