"""Two ``l3fabric server`` processes on one etcd: one IPAM, kill -9 of one, etcd down and back."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from l3fabric.loopback import free_port
from l3fabric.store.etcd_local import LocalEtcd

from .test_server_process import server_command, wait_ready

PORTS = 90  # creates in all, spread over both controllers
WORKERS = 3  # client threads per controller


@pytest.fixture
def etcd() -> Iterator[LocalEtcd]:
    with LocalEtcd(1, name="l3f-test-ctl-etcd", election_ms=100) as cluster:
        yield cluster


@pytest.fixture
def controllers(etcd: LocalEtcd) -> Iterator[list[tuple[subprocess.Popen, str]]]:
    started = []
    for _ in range(2):
        port = free_port()
        proc = subprocess.Popen(
            server_command("--store", etcd.url, "--listen", f"127.0.0.1:{port}"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append((proc, f"http://127.0.0.1:{port}"))
    try:
        for proc, url in started:
            wait_ready(url, proc)
        yield started
    finally:
        for proc, _ in started:
            proc.kill()
            proc.wait(10)


def _create_ports(
    url: str, network_id: str, todo: list[int], acked: dict[str, str], statuses: list[int]
) -> None:
    """Create ports while ``todo`` has numbers; record each acknowledged port's address."""
    with httpx.Client(base_url=url, timeout=10) as client:
        while todo:
            try:
                todo.pop()
            except IndexError:
                return
            try:
                r = client.post("/v2.0/ports", json={"port": {"network_id": network_id}})
            except httpx.TransportError:
                return  # this controller is gone: its in-flight create was never acknowledged
            statuses.append(r.status_code)
            if r.status_code == 201:
                port = r.json()["port"]
                acked[port["id"]] = port["fixed_ips"][0]["ip_address"]


def test_two_controllers_one_ipam_and_a_kill9(
    etcd: LocalEtcd, controllers: list[tuple[subprocess.Popen, str]]
) -> None:
    (proc_a, url_a), (_, url_b) = controllers
    with httpx.Client(base_url=url_a, timeout=10) as a:
        network = a.post("/v2.0/networks", json={"network": {"name": "n"}}).json()["network"]
        subnet = {"network_id": network["id"], "cidr": "10.9.0.0/24", "ip_version": 4}
        assert a.post("/v2.0/subnets", json={"subnet": subnet}).status_code == 201
    todo = list(range(PORTS))
    acked: dict[str, str] = {}
    statuses: list[int] = []
    threads = [
        threading.Thread(target=_create_ports, args=(url, network["id"], todo, acked, statuses))
        for url in (url_a, url_b)
        for _ in range(WORKERS)
    ]
    for t in threads:
        t.start()
    while len(todo) > PORTS * 2 // 3:
        time.sleep(0.02)
    proc_a.kill()  # kill -9 mid-load
    for t in threads:
        t.join(60)
    assert not todo and len(acked) > PORTS // 2
    # Address races between the controllers are retried inside each create, never refused.
    assert set(statuses) == {201}, statuses

    with httpx.Client(base_url=url_b, timeout=10) as b:
        stored = {
            p["id"]: p["fixed_ips"][0]["ip_address"] for p in b.get("/v2.0/ports").json()["ports"]
        }
        # Every acknowledged port is there with its address; no address is held twice.
        assert {pid: stored.get(pid) for pid in acked} == acked
        assert len(set(stored.values())) == len(stored)

        # The whole etcd cluster down: quick 503s, never a 500 or a hang; then it all resumes.
        etcd.kill(0)
        started = time.monotonic()
        down = b.post("/v2.0/ports", json={"port": {"network_id": network["id"]}})
        assert down.status_code == 503 and time.monotonic() - started < 5
        assert down.json()["NeutronError"]["type"] == "ServiceUnavailable"
        etcd.restart(0)
        assert (
            b.post("/v2.0/ports", json={"port": {"network_id": network["id"]}}).status_code == 201
        )
        assert len(b.get("/v2.0/ports").json()["ports"]) == len(stored) + 1
