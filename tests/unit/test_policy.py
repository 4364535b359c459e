"""Project isolation as Neutron's default policy has it: a member sees and
changes only its project's resources (plus shared and external networks and
their subnets, read-only); another project's resource is a 404, a visible one
it may not change a 403; binding:* is admin-only; admins act for anyone."""

from __future__ import annotations

from pathlib import Path

import pytest

from l3fabric.service import Context, NeutronService
from l3fabric.service.errors import NotFound
from l3fabric.store.sqlite import SqliteStore
from tests.unit.api_helpers import error
from tests.unit.policy_helpers import as_admin, as_member, policy_client

A, B = as_member("proj-a"), as_member("proj-b")
ADMIN = as_admin()
MEMBER = frozenset({"member"})


@pytest.fixture
def client(tmp_path: Path):
    with policy_client(tmp_path) as c:
        yield c


def make(client, headers, collection: str, key: str, **attrs):
    r = client.post(f"/v2.0/{collection}", json={key: attrs}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()[key]


def net_with_subnet(client, headers, cidr: str, **attrs):
    net = make(client, headers, "networks", "network", **attrs)
    subnet = make(client, headers, "subnets", "subnet", network_id=net["id"], cidr=cidr)
    return net, subnet


def listed(client, headers, collection: str, query: str = "") -> set[str]:
    r = client.get(f"/v2.0/{collection}{query}", headers=headers)
    assert r.status_code == 200, r.text
    return {o["id"] for o in r.json()[collection.replace("-", "_")]}


@pytest.fixture
def world(client):
    """Project A's private network and port, B's, and the admin's shared and external networks."""
    a_net, a_sub = net_with_subnet(client, A, "10.1.0.0/24")
    b_net, b_sub = net_with_subnet(client, B, "10.2.0.0/24")
    shared, shared_sub = net_with_subnet(client, ADMIN, "10.3.0.0/24", shared=True)
    public, public_sub = net_with_subnet(
        client, ADMIN, "203.0.113.0/24", **{"router:external": True}
    )
    a_port = make(client, A, "ports", "port", network_id=a_net["id"], device_id="vm-a")
    b_port = make(client, B, "ports", "port", network_id=b_net["id"], device_id="vm-b")
    return {
        "a_net": a_net, "a_sub": a_sub, "a_port": a_port,
        "b_net": b_net, "b_sub": b_sub, "b_port": b_port,
        "shared": shared, "shared_sub": shared_sub, "public": public, "public_sub": public_sub,
    }  # fmt: skip


def test_a_member_lists_its_own_and_shared_and_external_networks_and_their_subnets(
    client, world
) -> None:
    w = world
    assert listed(client, A, "networks") == {w["a_net"]["id"], w["shared"]["id"], w["public"]["id"]}
    assert listed(client, A, "subnets") == {
        w["a_sub"]["id"], w["shared_sub"]["id"], w["public_sub"]["id"]
    }  # fmt: skip
    assert listed(client, A, "ports") == {w["a_port"]["id"]}
    assert {w["a_net"]["id"], w["b_net"]["id"]} <= listed(client, ADMIN, "networks")
    assert {w["a_port"]["id"], w["b_port"]["id"]} <= listed(client, ADMIN, "ports")


@pytest.mark.parametrize(
    ("collection", "key"),
    [("networks", "b_net"), ("subnets", "b_sub"), ("ports", "b_port")],
)
def test_another_projects_resource_is_not_found_for_show_update_and_delete(
    client, world, collection, key
) -> None:
    path = f"/v2.0/{collection}/{world[key]['id']}"
    singular = collection[:-1]
    assert error(client.get(path, headers=A), 404).endswith("NotFound")
    r = client.put(path, json={singular: {"name": "mine"}}, headers=A)
    assert error(r, 404).endswith("NotFound")
    assert error(client.delete(path, headers=A), 404).endswith("NotFound")
    # Nothing was lost: B still has it, unchanged.
    assert client.get(path, headers=B).json()[singular]["name"] == ""


def test_a_shared_network_is_read_only_for_other_projects(client, world) -> None:
    path = f"/v2.0/networks/{world['shared']['id']}"
    assert client.get(path, headers=A).status_code == 200
    r = client.put(path, json={"network": {"name": "mine"}}, headers=A)
    assert error(r, 403) == "PolicyNotAuthorized"
    assert error(client.delete(path, headers=A), 403) == "PolicyNotAuthorized"
    r = client.post(
        "/v2.0/subnets",
        json={"subnet": {"network_id": world["shared"]["id"], "cidr": "10.3.1.0/24"}},
        headers=A,
    )
    assert error(r, 403) == "PolicyNotAuthorized"


def test_filters_do_not_reveal_other_projects_ports(client, world) -> None:
    address = world["b_port"]["fixed_ips"][0]["ip_address"]
    assert listed(client, A, "ports", f"?fixed_ips=ip_address={address}") == set()
    assert listed(client, A, "ports", "?device_id=vm-b") == set()
    assert listed(client, ADMIN, "ports", "?device_id=vm-b") == {world["b_port"]["id"]}


def test_a_member_may_not_create_for_another_project_but_an_admin_may(client) -> None:
    r = client.post("/v2.0/networks", json={"network": {"project_id": "proj-b"}}, headers=A)
    assert error(r, 400) == "InvalidInput"
    net = make(client, ADMIN, "networks", "network", project_id="proj-b")
    assert net["project_id"] == "proj-b"
    assert net["id"] in listed(client, B, "networks")


def test_ports_go_on_own_and_shared_networks_never_on_another_projects(client, world) -> None:
    shared_port = make(client, A, "ports", "port", network_id=world["shared"]["id"])
    assert shared_port["project_id"] == "proj-a"
    assert shared_port["fixed_ips"][0]["subnet_id"] == world["shared_sub"]["id"]
    r = client.post("/v2.0/ports", json={"port": {"network_id": world["b_net"]["id"]}}, headers=A)
    assert error(r, 404) == "NetworkNotFound"
    # Naming an address on someone else's shared network is the network owner's call.
    fixed = [{"subnet_id": world["shared_sub"]["id"], "ip_address": "10.3.0.50"}]
    r = client.post(
        "/v2.0/ports",
        json={"port": {"network_id": world["shared"]["id"], "fixed_ips": fixed}},
        headers=A,
    )
    assert error(r, 403) == "PolicyNotAuthorized"
    # The port's addresses stay visible only to its project.
    assert shared_port["id"] not in listed(client, B, "ports")


def test_binding_attributes_are_admin_only(client, world) -> None:
    r = client.post(
        "/v2.0/ports",
        json={"port": {"network_id": world["a_net"]["id"], "binding:host_id": "h1"}},
        headers=A,
    )
    assert error(r, 403) == "PolicyNotAuthorized"
    port_id = world["a_port"]["id"]
    r = client.put(f"/v2.0/ports/{port_id}", json={"port": {"binding:host_id": "h1"}}, headers=A)
    assert error(r, 403) == "PolicyNotAuthorized"
    r = client.put(
        f"/v2.0/ports/{port_id}", json={"port": {"binding:host_id": "h1"}}, headers=ADMIN
    )
    assert r.json()["port"]["binding:host_id"] == "h1"
    for seen in (
        client.get(f"/v2.0/ports/{port_id}", headers=A).json()["port"],
        client.get("/v2.0/ports", headers=A).json()["ports"][0],
        world["a_port"],
    ):
        assert not [k for k in seen if k.startswith("binding:")]
    assert (
        client.get(f"/v2.0/ports/{port_id}", headers=ADMIN).json()["port"]["binding:host_id"]
        == "h1"
    )


def test_security_groups_are_the_projects_own(client, world) -> None:
    b_group = make(client, B, "security-groups", "security_group", name="web")
    a_group = make(client, A, "security-groups", "security_group", name="web")
    assert b_group["id"] not in listed(client, A, "security-groups")
    r = client.post(
        "/v2.0/security-group-rules",
        json={
            "security_group_rule": {
                "security_group_id": a_group["id"],
                "direction": "ingress",
                "remote_group_id": b_group["id"],
            }
        },
        headers=A,
    )
    assert error(r, 404) == "SecurityGroupNotFound"
    r = client.post(
        "/v2.0/security-group-rules",
        json={"security_group_rule": {"security_group_id": b_group["id"], "direction": "ingress"}},
        headers=A,
    )
    assert error(r, 404) == "SecurityGroupNotFound"
    r = client.put(
        f"/v2.0/ports/{world['a_port']['id']}",
        json={"port": {"security_groups": [b_group["id"]]}},
        headers=A,
    )
    assert error(r, 404) == "SecurityGroupNotFound"


def test_quotas_have_neutrons_defaults_and_admins_set_them(client) -> None:
    quota = client.get("/v2.0/quotas/proj-a", headers=A).json()["quota"]
    assert quota == {
        "network": 100, "subnet": 100, "port": 500, "router": 10, "floatingip": 50,
        "security_group": 10, "security_group_rule": 100,
    }  # fmt: skip
    r = client.put("/v2.0/quotas/proj-a", json={"quota": {"network": 1}}, headers=A)
    assert error(r, 403) == "PolicyNotAuthorized"
    assert error(client.get("/v2.0/quotas/proj-b", headers=A), 403) == "PolicyNotAuthorized"
    r = client.put("/v2.0/quotas/proj-a", json={"quota": {"network": 1}}, headers=ADMIN)
    assert r.json()["quota"]["network"] == 1
    make(client, A, "networks", "network")
    r = client.post("/v2.0/networks", json={"network": {}}, headers=A)
    assert error(r, 409) == "OverQuota"
    assert r.json()["NeutronError"]["message"] == "Quota exceeded for resources: ['network']."
    # Another project is not affected; the list shows who has limits of their own.
    make(client, B, "networks", "network")
    listed_quotas = client.get("/v2.0/quotas", headers=ADMIN).json()["quotas"]
    assert [(q["project_id"], q["network"]) for q in listed_quotas] == [("proj-a", 1)]
    details = client.get("/v2.0/quotas/proj-a/details.json", headers=A).json()["quota"]
    assert details["network"] == {"limit": 1, "used": 1, "reserved": 0}
    assert client.delete("/v2.0/quotas/proj-a", headers=ADMIN).status_code == 204
    make(client, A, "networks", "network")


def test_the_quota_of_security_groups_counts_the_default_group(client) -> None:
    client.put("/v2.0/quotas/proj-a", json={"quota": {"security_group": 2}}, headers=ADMIN)
    make(client, A, "security-groups", "security_group", name="one")
    r = client.post("/v2.0/security-groups", json={"security_group": {"name": "two"}}, headers=A)
    assert error(r, 409) == "OverQuota"


def test_bad_quota_bodies_are_400(client) -> None:
    for body in ({"quota": {"network": "many"}}, {"quota": {"volumes": 1}}, {"network": 1}):
        r = client.put("/v2.0/quotas/proj-a", json=body, headers=ADMIN)
        assert error(r, 400), body
    assert "quotas" in {e["alias"] for e in client.get("/v2.0/extensions").json()["extensions"]}


def test_updates_do_not_use_quota_and_deletes_free_it(client) -> None:
    client.put("/v2.0/quotas/proj-a", json={"quota": {"network": 2}}, headers=ADMIN)
    first = make(client, A, "networks", "network")
    for name in ("x", "y", "z"):
        r = client.put(f"/v2.0/networks/{first['id']}", json={"network": {"name": name}}, headers=A)
        assert r.status_code == 200
    second = make(client, A, "networks", "network")
    assert error(client.post("/v2.0/networks", json={"network": {}}, headers=A), 409) == "OverQuota"
    assert client.delete(f"/v2.0/networks/{second['id']}", headers=A).status_code == 204
    make(client, A, "networks", "network")


def test_anycast_groups_are_per_project_and_take_only_the_projects_ports(tmp_path) -> None:
    """In the service (the API's authentication keeps /v1 for admins today)."""
    store = SqliteStore(tmp_path / "anycast.db")
    service = NeutronService(store)
    a, b, admin = Context("proj-a", MEMBER), Context("proj-b", MEMBER), Context()
    a_net = service.networks.create({}, a)
    a_sub = service.subnets.create({"network_id": a_net["id"], "cidr": "10.1.0.0/24"}, a)
    a_port = service.ports.create({"network_id": a_net["id"]}, a)
    b_net = service.networks.create({}, b)
    b_sub = service.subnets.create({"network_id": b_net["id"], "cidr": "10.2.0.0/24"}, b)
    b_port = service.ports.create({"network_id": b_net["id"]}, b)
    anycast = service.anycast
    group = anycast.create({"name": "dns", "subnet_id": a_sub["id"], "members": [a_port["id"]]}, a)
    assert group["project_id"] == "proj-a"
    assert anycast.list(b) == []
    assert [g["id"] for g in anycast.list(admin)] == [group["id"]]
    for call in (
        lambda: anycast.get(group["id"], b),
        lambda: anycast.delete(group["id"], b),
        lambda: anycast.add_member(group["id"], {"port_id": b_port["id"]}, b),
    ):
        with pytest.raises(NotFound, match="Anycast group"):
            call()
    with pytest.raises(NotFound, match="Port"):
        anycast.add_member(group["id"], {"port_id": b_port["id"]}, a)
    with pytest.raises(NotFound, match="Subnet"):
        anycast.create({"name": "x", "subnet_id": b_sub["id"], "members": []}, a)
    store.close()


@pytest.mark.parametrize(
    "attrs",
    [{"shared": True}, {"router:external": True}, {"provider:network_type": "vlan"}],
)
def test_only_admins_make_networks_shared_external_or_provider(client, attrs) -> None:
    # A member's network made external would have its subnets announced upstream.
    r = client.post("/v2.0/networks", json={"network": attrs}, headers=A)
    assert error(r, 403) == "PolicyNotAuthorized"
    net = make(client, A, "networks", "network", shared=False)  # the default is no change
    r = client.put(f"/v2.0/networks/{net['id']}", json={"network": attrs}, headers=A)
    assert error(r, 403) == "PolicyNotAuthorized"
    r = client.put(f"/v2.0/networks/{net['id']}", json={"network": attrs}, headers=ADMIN)
    assert r.status_code == 200, r.text


def test_a_reader_sees_its_project_but_changes_nothing(client, world) -> None:
    reader = {"X-Project-Id": "proj-a", "X-Test-Roles": "reader"}
    assert listed(client, reader, "networks") == listed(client, A, "networks")
    r = client.post("/v2.0/networks", json={"network": {}}, headers=reader)
    assert error(r, 403) == "PolicyNotAuthorized"
    path = f"/v2.0/ports/{world['a_port']['id']}"
    assert error(client.put(path, json={"port": {"name": "x"}}, headers=reader), 403)
    assert error(client.delete(path, headers=reader), 403) == "PolicyNotAuthorized"
    assert client.get(path, headers=A).status_code == 200
