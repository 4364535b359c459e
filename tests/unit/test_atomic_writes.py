"""Conditional and dependent writes are single store transactions, shown by
making another writer commit at the worst moment: right before the
transaction of the request under test (the real SQLite store, with a hook)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from l3fabric.api.app import create_app
from l3fabric.keys import anycast_key, ipam_prefix, neutron_key, neutron_prefix
from l3fabric.service import Context
from l3fabric.store import Create, Delete, Op
from l3fabric.store.sqlite import SqliteStore

from .api_helpers import error, make

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


class InterleavedStore(SqliteStore):
    """Runs ``cut_in`` once, just before the first transaction ``when`` picks."""

    when: Callable[[Sequence[Op]], bool] | None = None
    cut_in: Callable[[], object] | None = None

    def txn(self, ops: Sequence[Op]) -> int:
        if self.when is not None and self.cut_in is not None and self.when(ops):
            cut_in, self.when, self.cut_in = self.cut_in, None, None
            cut_in()
        return super().txn(ops)

    def before(self, when: Callable[[Sequence[Op]], bool], cut_in: Callable[[], object]) -> None:
        self.when, self.cut_in = when, cut_in


def deletes(key: str) -> Callable[[Sequence[Op]], bool]:
    return lambda ops: any(isinstance(op, Delete) and op.key == key for op in ops)


def creates_under(prefix: str) -> Callable[[Sequence[Op]], bool]:
    return lambda ops: any(isinstance(op, Create) and op.key.startswith(prefix) for op in ops)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[InterleavedStore]:
    s = InterleavedStore(tmp_path / "db")
    yield s
    s.close()


@pytest.fixture
def client(store: InterleavedStore) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


def _service(client: TestClient):
    return client.app.state.neutron


@pytest.fixture
def objects(client: TestClient) -> dict[str, dict]:
    """One object of each collection that supports a conditional update and delete."""
    net = make(client, "networks", "network", name="n")
    make(client, "subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24")
    bare = make(client, "networks", "network", name="no ports")
    public = make(client, "networks", "network", name="pub", **{"router:external": True})
    make(client, "subnets", "subnet", network_id=public["id"], cidr="203.0.113.0/24")
    return {
        "networks": make(client, "networks", "network", name="other"),
        "subnets": make(client, "subnets", "subnet", network_id=bare["id"], cidr="10.2.0.0/24"),
        "ports": make(client, "ports", "port", network_id=net["id"]),
        "security-groups": make(client, "security-groups", "security_group", name="g"),
        "routers": make(client, "routers", "router", name="r"),
        "floatingips": make(client, "floatingips", "floatingip", floating_network_id=public["id"]),
    }


@pytest.mark.parametrize(
    "collection", ["networks", "subnets", "ports", "security-groups", "routers", "floatingips"]
)
def test_conditional_delete_refuses_an_update_that_commits_first(
    client, store, objects, collection
) -> None:
    obj = objects[collection]
    assert obj["revision_number"] == 0
    resource = _service(client).resource(collection)
    change = {"description": "moved on"}
    store.before(
        deletes(neutron_key(collection, obj["id"])),
        lambda: resource.update(obj["id"], change, Context(), None),
    )
    r = client.delete(f"/v2.0/{collection}/{obj['id']}", headers={"If-Match": "revision_number=0"})
    assert error(r, 412) == "RevisionNumberConstraintFailed"
    kept = client.get(f"/v2.0/{collection}/{obj['id']}").json()[resource.singular]
    assert (kept["revision_number"], kept["description"]) == (1, "moved on")


# Subnet and network deletes against allocations ----------------------------------------


@pytest.fixture
def net(client: TestClient) -> dict:
    network = make(client, "networks", "network", name="n")
    subnet = make(client, "subnets", "subnet", network_id=network["id"], cidr="10.1.0.0/24")
    return {"network": network, "subnet": subnet}


def _port_body(net: dict) -> dict:
    return {"network_id": net["network"]["id"], "fixed_ips": [{"subnet_id": net["subnet"]["id"]}]}


def test_port_created_after_the_in_use_check_stops_the_subnet_delete(client, store, net) -> None:
    subnet = net["subnet"]
    store.before(
        deletes(neutron_key("subnets", subnet["id"])),
        lambda: _service(client).ports.create(_port_body(net), Context()),
    )
    assert error(client.delete(f"/v2.0/subnets/{subnet['id']}"), 409) == "SubnetInUse"
    assert client.get(f"/v2.0/subnets/{subnet['id']}").status_code == 200
    (port,) = client.get("/v2.0/ports").json()["ports"]
    assert port["fixed_ips"][0]["subnet_id"] == subnet["id"]


def test_subnet_deleted_before_the_port_commits_fails_the_port(client, store, net) -> None:
    subnet = net["subnet"]
    store.before(
        creates_under(neutron_prefix("ports")),
        lambda: _service(client).subnets.delete(subnet["id"], Context()),
    )
    r = client.post("/v2.0/ports", json={"port": _port_body(net)})
    assert error(r, 404) == "SubnetNotFound"
    assert client.get("/v2.0/ports").json()["ports"] == []
    assert store.range(ipam_prefix(subnet["id"]))[0] == []


def test_subnet_deleted_before_an_automatic_port_commits(client, store, net) -> None:
    """No subnet named: the port is made on what the network has now (nothing)."""
    store.before(
        creates_under(neutron_prefix("ports")),
        lambda: _service(client).subnets.delete(net["subnet"]["id"], Context()),
    )
    port = make(client, "ports", "port", network_id=net["network"]["id"])
    assert port["fixed_ips"] == []
    assert store.range(ipam_prefix(net["subnet"]["id"]))[0] == []


def test_port_created_after_the_check_stops_the_network_delete(client, store, net) -> None:
    network = net["network"]
    store.before(
        deletes(neutron_key("networks", network["id"])),
        lambda: _service(client).ports.create({"network_id": network["id"]}, Context()),
    )
    assert error(client.delete(f"/v2.0/networks/{network['id']}"), 409) == "NetworkInUse"
    assert len(client.get("/v2.0/ports").json()["ports"]) == 1


def test_network_deleted_before_the_port_commits_fails_the_port(client, store, net) -> None:
    network = net["network"]
    store.before(
        creates_under(neutron_prefix("ports")),
        lambda: _service(client).networks.delete(network["id"], Context()),
    )
    r = client.post("/v2.0/ports", json={"port": {"network_id": network["id"], "fixed_ips": []}})
    assert error(r, 404) == "NetworkNotFound"
    assert client.get("/v2.0/ports").json()["ports"] == []


def test_subnet_deleted_before_an_anycast_group_commits(client, store, net) -> None:
    subnet = net["subnet"]
    store.before(
        creates_under(anycast_key("")),
        lambda: _service(client).subnets.delete(subnet["id"], Context()),
    )
    r = client.post("/v1/anycast", json={"name": "svc", "subnet_id": subnet["id"], "members": []})
    assert error(r, 404) == "SubnetNotFound"
    assert client.get("/v1/anycast").json()["anycast"] == []
    assert store.range(ipam_prefix(subnet["id"]))[0] == []
