"""`lab boot` / `lab delete` against the real controller (no agents: the lab's own part)."""

from __future__ import annotations

import pytest

from l3fabric.lab import netns

from .lab_fixtures import lab_factory, needs_root  # noqa: F401  (lab_factory: a fixture)

pytestmark = [pytest.mark.integration, needs_root]


def test_boot_registers_hosts_creates_ports_and_the_vm(lab_factory) -> None:  # noqa: F811
    lab = lab_factory("racks: [{name: r1, hosts: 2, tor: false}]", agents=False)
    with lab.client() as client:
        hosts = {h["name"]: h for h in client.list_hosts()}
        assert set(hosts) == {"r1-h1", "r1-h2"}
        assert {p["name"] for p in hosts["r1-h2"]["peers"]} == {"gw1", "gw1-v6"}
        net = client.create_network(name="pub", **{"router:external": True})
        client.create_subnet(network_id=net["id"], cidr="203.0.113.0/24", ip_version=4)
        priv = client.create_network(name="priv")
        client.create_subnet(network_id=priv["id"], cidr="10.1.0.0/24", ip_version=4)
    record = lab.boot("vm1", ["pub", priv["id"]], "r1-h2", ["203.0.113.10"])
    tap0, tap1 = (p["tap"] for p in record["ports"])
    host_links = lab.exec("r1-h2", "ip", "-br", "link").stdout
    assert tap0 in host_links and tap1 in host_links
    vm = lab.exec("vm1", "ip", "-br", "addr").stdout
    assert "203.0.113.10/32" in vm and "10.1.0." in vm
    mac = lab.exec("vm1", "cat", "/sys/class/net/eth0/address").stdout.strip()
    assert mac == record["ports"][0]["mac"]
    assert "default via 169.254.1.1 dev eth0 onlink" in lab.exec("vm1", "ip", "route").stdout
    assert "from 203.0.113.10 lookup 100" in lab.exec("vm1", "ip", "rule").stdout
    with lab.client() as client:
        port = client.get("ports", record["ports"][0]["id"])
        assert port["binding:host_id"] == "r1-h2" and port["device_id"] == "vm1"

    lab.delete("vm1")
    assert f"l3f-{lab.name}-vm-vm1" not in netns.lab_namespaces(lab.name)
    assert "tap" not in lab.exec("r1-h2", "ip", "-br", "link").stdout
    with lab.client() as client:
        assert client.list("ports", device_id="vm1") == []
