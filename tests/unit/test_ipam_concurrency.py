"""64 concurrent port creates on a /27 through a real HTTP server: distinct
addresses, exactly as many successes as free addresses, clean 409s for the rest."""

from __future__ import annotations

import ipaddress
import threading
from pathlib import Path

import httpx

from l3fabric.api.app import create_app
from l3fabric.store.sqlite import SqliteStore
from tests.clients.server import running_server

CLIENTS = 64


def test_64_concurrent_port_creates_on_a_27(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    with running_server(create_app(store)) as url, httpx.Client(base_url=url, timeout=30) as c:
        network = c.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]
        subnet = c.post(
            "/v2.0/subnets",
            json={"subnet": {"network_id": network["id"], "cidr": "10.9.0.0/27", "ip_version": 4}},
        ).json()["subnet"]
        free = sum(
            int(ipaddress.ip_address(p["end"])) - int(ipaddress.ip_address(p["start"])) + 1
            for p in subnet["allocation_pools"]
        )
        assert free == 29  # .1 is the gateway, .0 and .31 are not hosts

        start = threading.Barrier(CLIENTS)
        results: list[httpx.Response] = []
        lock = threading.Lock()

        def create(i: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as own:
                start.wait(timeout=30)
                r = own.post(
                    "/v2.0/ports", json={"port": {"network_id": network["id"], "name": f"p{i}"}}
                )
            with lock:
                results.append(r)

        threads = [threading.Thread(target=create, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert len(results) == CLIENTS

        ok = [r.json()["port"] for r in results if r.status_code == 201]
        failed = [r for r in results if r.status_code != 201]
        addresses = [p["fixed_ips"][0]["ip_address"] for p in ok]
        assert len(ok) == free
        assert len(set(addresses)) == free
        assert all(
            ipaddress.ip_address(a) in ipaddress.ip_network("10.9.0.0/27") for a in addresses
        )
        assert "10.9.0.1" not in addresses
        assert {r.status_code for r in failed} == {409}
        assert {r.json()["NeutronError"]["type"] for r in failed} == {"IpAddressGenerationFailure"}

        listed = c.get("/v2.0/ports", params={"network_id": network["id"]}).json()["ports"]
        assert sorted(p["id"] for p in listed) == sorted(p["id"] for p in ok)
    store.close()
