"""The host's metadata service: which VM asks (source address and tap), the
answers l3fabric gives itself in Nova's formats, and the proxy to Nova's
metadata API with the headers Nova checks (signature included)."""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from l3fabric.dataplane.links import tap_name
from l3fabric.nova.metadata import MetadataConfig, MetadataServer, find_port, nova_headers
from tests.unit.nova_receiver import answer_json

PORT_ID = "6b1c1f5e-2a4b-4c3d-9e8f-0123456789ab"
PORT = {
    "id": PORT_ID,
    "device_id": "vm1",
    "project_id": "p1",
    "network_id": "n1",
    "fixed_ips": [
        {"subnet_id": "s", "ip_address": "10.0.0.5"},
        {"subnet_id": "t", "ip_address": "fd00::5"},
    ],
}


class FakeRoutes:
    """Unit tests only: the kernel's route lookup, as a table."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    def interface(self, address: str) -> str | None:
        return self.table.get(address)

    def close(self) -> None:
        pass


@pytest.fixture
def serve():
    servers = []

    def start(config: MetadataConfig, ports, routes, public=lambda p: False) -> str:
        server = MetadataServer(config, lambda: ports, public, routes).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.httpd.server_address[1]}"

    yield start
    for s in servers:
        s.close()


LOCAL = MetadataConfig(address="127.0.0.1", port=0)


def test_a_vm_is_known_by_its_address_and_its_tap() -> None:
    tap = tap_name(PORT_ID)
    assert find_port([PORT], "10.0.0.5", tap) is PORT
    assert find_port([PORT], "fd00::5", tap) is PORT
    assert find_port([PORT], "10.0.0.5", "tapother") is None  # came in elsewhere
    assert find_port([PORT], "10.0.0.6", tap) is None
    assert find_port([{**PORT, "device_id": ""}], "10.0.0.5", tap) is None  # no instance
    assert find_port([PORT], "garbage", tap) is None


def test_local_answers_in_novas_formats(serve) -> None:
    # The connection comes from 127.0.0.1: the VM's address here.
    port = {**PORT, "fixed_ips": [{"subnet_id": "s", "ip_address": "127.0.0.1"}]}
    url = serve(LOCAL, [port], FakeRoutes({"127.0.0.1": tap_name(PORT_ID)}), lambda p: True)
    meta = httpx.get(f"{url}/openstack/latest/meta_data.json").json()
    assert meta["uuid"] == "vm1" and meta["hostname"] == "vm1" and meta["name"] == "vm1"
    assert meta["project_id"] == "p1" and meta["availability_zone"] == "nova"
    assert meta["launch_index"] == 0
    assert "latest" in httpx.get(f"{url}/openstack").text.split("\n")
    assert httpx.get(f"{url}/openstack/2018-08-27/meta_data.json").json() == meta
    listing = httpx.get(f"{url}/latest/meta-data/").text.split("\n")
    assert {"instance-id", "hostname", "local-ipv4", "public-ipv4", "placement/"} <= set(listing)
    assert httpx.get(f"{url}/latest/meta-data/instance-id").text == "vm1"
    assert httpx.get(f"{url}/latest/meta-data/local-ipv4").text == "127.0.0.1"
    assert httpx.get(f"{url}/2009-04-04/meta-data/placement/availability-zone").text == "nova"
    assert httpx.get(f"{url}/latest/user-data").status_code == 404
    assert httpx.get(f"{url}/openstack/latest/nothing").status_code == 404


def test_an_unknown_source_gets_404(serve) -> None:
    url = serve(LOCAL, [PORT], FakeRoutes({"127.0.0.1": tap_name(PORT_ID)}))
    assert httpx.get(f"{url}/openstack/latest/meta_data.json").status_code == 404


def test_nova_gets_the_headers_it_checks(serve) -> None:
    seen: list[dict[str, str]] = []

    class Nova(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
            answer_json(self, 200, {"uuid": "from-nova"})

        def log_message(self, *args: object) -> None:
            pass

    nova = ThreadingHTTPServer(("127.0.0.1", 0), Nova)
    threading.Thread(target=nova.serve_forever, daemon=True).start()
    try:
        config = MetadataConfig(
            nova_host="127.0.0.1",
            nova_port=nova.server_address[1],
            shared_secret="s3cret",
            address="127.0.0.1",
            port=0,
        )
        port = {**PORT, "fixed_ips": [{"subnet_id": "s", "ip_address": "127.0.0.1"}]}
        url = serve(config, [port], FakeRoutes({"127.0.0.1": tap_name(PORT_ID)}))
        r = httpx.get(f"{url}/openstack/latest/meta_data.json")
    finally:
        nova.shutdown()
        nova.server_close()
    assert r.status_code == 200 and r.json() == {"uuid": "from-nova"}
    (h,) = seen
    assert h["path"] == "/openstack/latest/meta_data.json"
    assert h["x-instance-id"] == "vm1" and h["x-tenant-id"] == "p1"
    assert h["x-forwarded-for"] == "127.0.0.1"
    expected = hmac.new(b"s3cret", b"vm1", hashlib.sha256).hexdigest()
    assert h["x-instance-id-signature"] == expected
    assert nova_headers(PORT, "10.0.0.5", "s3cret")["X-Instance-ID-Signature"] == expected


def test_nova_down_is_503_not_a_hang(serve) -> None:
    config = MetadataConfig(
        nova_host="127.0.0.1", nova_port=9, shared_secret="x", address="127.0.0.1", port=0
    )
    port = {**PORT, "fixed_ips": [{"subnet_id": "s", "ip_address": "127.0.0.1"}]}
    url = serve(config, [port], FakeRoutes({"127.0.0.1": tap_name(PORT_ID)}))
    assert httpx.get(f"{url}/openstack").status_code == 503


def test_connections_are_bounded_so_vms_cannot_exhaust_the_agent(serve) -> None:
    config = MetadataConfig(address="127.0.0.1", port=0, max_connections=2)
    port = {**PORT, "fixed_ips": [{"subnet_id": "s", "ip_address": "127.0.0.1"}]}
    url = serve(config, [port], FakeRoutes({"127.0.0.1": tap_name(PORT_ID)}))
    host, _, number = url.removeprefix("http://").partition(":")
    idle = [socket.create_connection((host, int(number))) for _ in range(2)]
    try:
        time.sleep(0.2)  # both taken in service
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/openstack", timeout=2)
    finally:
        for s in idle:
            s.close()
    # Their slots come back.
    deadline = time.monotonic() + 5
    while True:
        try:
            assert httpx.get(f"{url}/openstack", timeout=2).status_code == 200
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
