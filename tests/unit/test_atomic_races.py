"""Races between writers through a real HTTP server over the real SQLite store:
a conditional delete never removes an object that moved on, and a subnet
delete never leaves a port holding an address on the deleted subnet."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from l3fabric.api.app import create_app
from l3fabric.keys import ipam_prefix
from l3fabric.store.sqlite import SqliteStore
from tests.clients.server import running_server

DELETE_RACES = 100
SUBNET_RACES = 25
# Port creates racing each subnet delete: more of them widen the window.
CREATORS = 3

# One request: method, path, and httpx keyword arguments.
Call = tuple[str, str, dict[str, Any]]


class Racers:
    """Sends several requests at the same instant, each on its own kept-alive connection."""

    def __init__(self, url: str, count: int, stack: ExitStack) -> None:
        self.clients = [
            stack.enter_context(httpx.Client(base_url=url, timeout=30)) for _ in range(count)
        ]
        self.pool = stack.enter_context(ThreadPoolExecutor(count))

    def run(self, calls: list[Call]) -> list[int]:
        start = threading.Barrier(len(calls))

        def send(client: httpx.Client, call: Call) -> int:
            method, path, kwargs = call
            start.wait(timeout=30)
            return client.request(method, path, **kwargs).status_code

        return list(self.pool.map(send, self.clients, calls))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SqliteStore]]:
    store = SqliteStore(Path(tmp_path_factory.mktemp("races")) / "db")
    with running_server(create_app(store)) as url:
        yield url, store
    store.close()


def _made(c: httpx.Client, collection: str, key: str, **attrs) -> dict:
    r = c.post(f"/v2.0/{collection}", json={key: attrs})
    assert r.status_code == 201, r.text
    return r.json()[key]


def test_conditional_delete_never_removes_a_newer_revision(server) -> None:
    url, _ = server
    wrong = []
    match = {"If-Match": "revision_number=0"}
    with ExitStack() as stack:
        c = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        racers = Racers(url, 2, stack)
        net = _made(c, "networks", "network", name="if-match")
        for i in range(DELETE_RACES):
            port = _made(c, "ports", "port", network_id=net["id"], fixed_ips=[])
            at = f"/v2.0/ports/{port['id']}"
            put, delete = racers.run(
                [
                    ("PUT", at, {"json": {"port": {"name": "moved"}}, "headers": match}),
                    ("DELETE", at, {"headers": match}),
                ]
            )
            # Exactly one of them may win revision 0; both winning means the
            # delete removed revision 1, which it was not meant to.
            if (put, delete) == (200, 204):
                wrong.append(i)
            else:
                assert (put, delete) in ((200, 412), (412, 204), (404, 204)), (put, delete)
            if put == 200 and delete == 412:
                assert c.get(at).json()["port"]["name"] == "moved"
                assert c.delete(at).status_code == 204
    assert not wrong, f"{len(wrong)} of {DELETE_RACES} deletes removed a newer revision"


def test_subnet_delete_never_strands_ports(server) -> None:
    url, store = server
    stranded = []
    with ExitStack() as stack:
        c = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        racers = Racers(url, 1 + CREATORS, stack)
        net = _made(c, "networks", "network", name="subnet-race")
        for i in range(SUBNET_RACES):
            subnet = _made(
                c, "subnets", "subnet", network_id=net["id"], cidr="10.77.0.0/24", ip_version=4
            )
            at = f"/v2.0/subnets/{subnet['id']}"
            create = {"port": {"network_id": net["id"], "fixed_ips": [{"subnet_id": subnet["id"]}]}}
            deleted, *created = racers.run(
                [("DELETE", at, {})] + [("POST", "/v2.0/ports", {"json": create})] * CREATORS
            )
            assert deleted in (204, 409), (deleted, created)
            # A create that lost to the delete finds the subnet gone.
            assert all(s in (201, 404) for s in created), (deleted, created)
            ports = c.get("/v2.0/ports", params={"network_id": net["id"]}).json()["ports"]
            on_subnet = [
                p for p in ports if any(f["subnet_id"] == subnet["id"] for f in p["fixed_ips"])
            ]
            gone = c.get(at).status_code == 404
            assert gone == (deleted == 204)
            if gone and (on_subnet or store.range(ipam_prefix(subnet["id"]))[0]):
                stranded.append(i)
            for p in ports:
                assert c.delete(f"/v2.0/ports/{p['id']}").status_code == 204
            if not gone:
                assert c.delete(at).status_code == 204
    assert not stranded, f"{len(stranded)} of {SUBNET_RACES} subnet deletes stranded ports"
