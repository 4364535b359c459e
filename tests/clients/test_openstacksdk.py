"""openstacksdk (``auth_type='none'``) against the server."""

from __future__ import annotations

import openstack
import pytest
from openstack import exceptions

pytestmark = pytest.mark.clients


@pytest.fixture
def conn(neutron_url: str):
    connection = openstack.connect(auth_type="none", network_endpoint_override=neutron_url)
    yield connection
    connection.close()


def test_resources_round_trip(conn) -> None:
    net = conn.network.create_network(name="private", is_router_external=False)
    v4 = conn.network.create_subnet(network_id=net.id, cidr="10.20.0.0/24", ip_version=4)
    v6 = conn.network.create_subnet(
        network_id=net.id, cidr="2001:db8:20::/64", ip_version=6, gateway_ip=None
    )
    assert v6.gateway_ip is None
    assert conn.network.find_network("private").id == net.id
    assert conn.network.get_network(net.id).subnet_ids == [v4.id, v6.id]

    port = conn.network.create_port(network_id=net.id, name="vm1", binding_host_id="h1")
    assert {ip["ip_address"] for ip in port.fixed_ips} == {
        "10.20.0.2",
        "2001:db8:20::1",
    }  # no v6 gateway: ::1 is in the pool
    assert port.status == "DOWN"
    port = conn.network.update_port(port, fixed_ips=[{"ip_address": "10.20.0.77"}])
    assert port.fixed_ips == [{"subnet_id": v4.id, "ip_address": "10.20.0.77"}]
    assert [p.id for p in conn.network.ports(binding_host_id="h1")] == [port.id]
    assert [p.id for p in conn.network.ports(fixed_ips="ip_address=10.20.0.77")] == [port.id]

    with pytest.raises(exceptions.ConflictException, match="already allocated"):
        conn.network.create_port(network_id=net.id, fixed_ips=[{"ip_address": "10.20.0.77"}])
    with pytest.raises(exceptions.BadRequestException, match="overlaps"):
        conn.network.create_subnet(network_id=net.id, cidr="10.20.0.0/16", ip_version=4)
    with pytest.raises(exceptions.NotFoundException):
        conn.network.get_port("no-such-port")

    conn.network.delete_port(port)
    conn.network.delete_network(net)
    assert list(conn.network.subnets()) == []


def test_external_filter_and_security_group(conn) -> None:
    public = conn.network.create_network(name="public", is_router_external=True)
    conn.network.create_network(name="private")
    assert [n.id for n in conn.network.networks(is_router_external=True)] == [public.id]
    group = conn.network.create_security_group(name="ssh")
    rule = conn.network.create_security_group_rule(
        security_group_id=group.id, direction="ingress", protocol="tcp",
        port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0",
    )  # fmt: skip
    found = conn.network.find_security_group("ssh")
    assert rule.id in {r["id"] for r in found.security_group_rules}
    conn.network.delete_security_group(group)
    assert conn.network.find_security_group("ssh") is None


def test_quotas_through_the_sdk(conn) -> None:
    """What ``openstack quota show/set --network`` send, without the Keystone
    project lookup the CLI needs (there is none with auth_type none)."""
    quota = conn.network.get_quota("proj-a")
    assert (quota.networks, quota.ports, quota.security_groups) == (100, 500, 10)
    conn.network.update_quota("proj-a", networks=1)
    assert conn.network.get_quota("proj-a").networks == 1
    details = conn.network.get_quota("proj-a", details=True)
    assert details.networks == {"limit": 1, "used": 0, "reserved": 0}
    assert conn.network.get_quota_default("proj-a").networks == 100
    conn.network.create_network(name="one", project_id="proj-a")
    with pytest.raises(exceptions.ConflictException, match="Quota exceeded"):
        conn.network.create_network(name="two", project_id="proj-a")
    conn.network.delete_quota("proj-a")
    assert conn.network.get_quota("proj-a").networks == 100
