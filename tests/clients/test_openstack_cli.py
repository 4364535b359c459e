"""The real ``openstack`` CLI against the server (each call is a 1-2 s process,
so each test is a whole user story)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.clients


def test_network_subnet_and_ports_by_name(cli) -> None:
    net = cli.json("network", "create", "public", "--external")
    assert net["router:external"] is True
    sub = cli.json(
        "subnet", "create", "public-v4", "--network", "public", "--subnet-range", "203.0.113.0/24"
    )
    assert sub["gateway_ip"] == "203.0.113.1"
    port = cli.json(
        "port", "create", "web1", "--network", "public",
        "--fixed-ip", "subnet=public-v4,ip-address=203.0.113.10", "--host", "compute1",
    )  # fmt: skip
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "203.0.113.10"}]
    assert port["binding_host_id"] == "compute1"
    assert port["status"] == "DOWN"

    # A taken address: the user reads Neutron's message.
    taken = cli.run(
        "port", "create", "web2", "--network", "public",
        "--fixed-ip", "subnet=public-v4,ip-address=203.0.113.10",
    )  # fmt: skip
    assert taken.returncode != 0
    assert "IP address 203.0.113.10 already allocated" in taken.stderr

    cli.ok("port", "set", "web1", "--name", "www", "--allowed-address", "ip-address=203.0.113.99")
    shown = cli.json("port", "show", "www")
    assert shown["id"] == port["id"]
    assert shown["allowed_address_pairs"][0]["ip_address"] == "203.0.113.99"
    # An allowed address outside the network's subnets: the user reads why.
    outside = cli.run("port", "set", "www", "--allowed-address", "ip-address=198.51.100.7")
    assert outside.returncode != 0
    assert "not inside any subnet of the port's network" in outside.stderr
    listed = cli.json("port", "list", "--network", "public")
    assert [p["ID"] for p in listed] == [port["id"]]

    in_use = cli.run("network", "delete", "public")
    assert in_use.returncode != 0
    assert "ports still in use" in in_use.stderr
    cli.ok("port", "delete", "www")
    cli.ok("network", "delete", net["id"])
    assert cli.json("subnet", "list") == []


def test_security_groups(cli) -> None:
    group = cli.json("security", "group", "create", "web", "--description", "web servers")
    rule = cli.json(
        "security", "group", "rule", "create", "web", "--protocol", "tcp", "--dst-port", "443"
    )
    assert (rule["port_range_min"], rule["port_range_max"]) == (443, 443)
    cli.ok("security", "group", "set", "web", "--name", "https")
    names = {g["Name"] for g in cli.json("security", "group", "list")}
    assert names == {"default", "https"}
    rules = cli.json("security", "group", "rule", "list", "https")
    assert rule["id"] in {r["ID"] for r in rules}
    cli.ok("security", "group", "delete", group["id"])
    assert {g["Name"] for g in cli.json("security", "group", "list")} == {"default"}


def test_floating_ip_round_trip(cli) -> None:
    # The external network is set up over HTTP: each CLI call costs ~1.5 s,
    # and network and subnet creation by the CLI are covered above.
    net = httpx.post(
        f"{cli.url}/v2.0/networks", json={"network": {"name": "public", "router:external": True}}
    ).json()["network"]
    httpx.post(
        f"{cli.url}/v2.0/subnets",
        json={"subnet": {"network_id": net["id"], "cidr": "203.0.113.0/24"}},
    ).raise_for_status()
    created = cli.json("floating", "ip", "create", "public", "--floating-ip-address", "203.0.113.7")
    assert created["floating_ip_address"] == "203.0.113.7"
    assert created["floating_network_id"] == net["id"]
    assert created["status"] == "DOWN"
    assert created["router_id"] is None
    shown = cli.json("floating", "ip", "show", "203.0.113.7")
    assert shown["id"] == created["id"]
    cli.ok("floating", "ip", "delete", "203.0.113.7")
    assert cli.json("floating", "ip", "list") == []


def test_port_security_off_on_networks_and_ports(cli) -> None:
    # Only what needs the CLI goes through it (each call costs ~1.5 s).
    net = cli.json("network", "create", "open", "--disable-port-security")
    assert net["port_security_enabled"] is False
    httpx.post(
        f"{cli.url}/v2.0/subnets", json={"subnet": {"network_id": net["id"], "cidr": "10.0.0.0/24"}}
    ).raise_for_status()
    secured = httpx.post(f"{cli.url}/v2.0/networks", json={"network": {"name": "secured"}}).json()[
        "network"
    ]
    httpx.post(
        f"{cli.url}/v2.0/subnets",
        json={"subnet": {"network_id": secured["id"], "cidr": "10.1.0.0/24"}},
    ).raise_for_status()

    # Inherited from the network: no filtering, no groups (not even the default one).
    inherited = cli.json("port", "create", "p1", "--network", "open")
    assert inherited["port_security_enabled"] is False
    assert inherited["security_group_ids"] == []
    own = cli.json("port", "create", "p2", "--network", "secured", "--disable-port-security")
    assert own["port_security_enabled"] is False and own["security_group_ids"] == []

    # A port with groups: port security goes off only with its groups.
    port = httpx.post(
        f"{cli.url}/v2.0/ports", json={"port": {"network_id": secured["id"], "name": "p3"}}
    ).json()["port"]
    assert port["security_groups"]
    refused = cli.run("port", "set", "p3", "--disable-port-security")
    assert refused.returncode != 0
    assert "Port has security group associated" in refused.stderr
    cli.ok("port", "set", "p3", "--no-security-group", "--disable-port-security")
    shown = httpx.get(f"{cli.url}/v2.0/ports/{port['id']}").json()["port"]
    assert shown["port_security_enabled"] is False and shown["security_groups"] == []
