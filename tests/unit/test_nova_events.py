"""Nova's external events: a port of a Nova server that turns ACTIVE (DOWN)
after a host's heartbeat is posted to Nova as network-vif-plugged
(network-vif-unplugged), authenticated, retried on a 5xx; other ports and a
controller without Nova send nothing."""

from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path

import httpx
import pytest

from l3fabric.api.app import create_app
from l3fabric.nova.events import NovaNotifier, NovaTarget, event_for
from l3fabric.nova.target import NovaConfigError, nova_target
from l3fabric.store.sqlite import SqliteStore
from tests.unit.api_helpers import make
from tests.unit.nova_receiver import NovaReceiver
from tests.unit.test_server_process import server_command, start_server  # noqa: F401

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

HOST = {"router_id": "10.0.0.11", "address": "10.0.0.11"}
SERVER = "4f6a1c2e-0000-4000-8000-000000000001"


def _ports(client):
    client.put("/v1/hosts/h1", json=HOST)
    net = make(client, "networks", "network", name="n")
    make(client, "subnets", "subnet", network_id=net["id"], cidr="10.0.0.0/24")
    vm = make(
        client, "ports", "port", network_id=net["id"], device_owner="compute:nova",
        device_id=SERVER, **{"binding:host_id": "h1"},
    )  # fmt: skip
    router = make(
        client, "ports", "port", network_id=net["id"], device_owner="network:dhcp",
        device_id="x", **{"binding:host_id": "h1"},
    )  # fmt: skip
    return vm, router


def _beat(client, **ports):
    r = client.post("/v1/hosts/h1/heartbeat", json={"ports": ports})
    assert r.status_code == 200, r.text


@pytest.fixture
def store(tmp_path: Path):
    s = SqliteStore(tmp_path / "db")
    yield s
    s.close()


def test_plugged_and_unplugged_reach_nova_as_its_api_documents(store) -> None:
    with NovaReceiver(token="secret") as nova:
        notifier = NovaNotifier(NovaTarget(url=nova.url, token="secret"))
        try:
            with TestClient(create_app(store, nova=notifier)) as client:
                vm, other = _ports(client)
                _beat(client, **{vm["id"]: "ACTIVE", other["id"]: "ACTIVE"})
                assert nova.wait_for(1) == [
                    {
                        "name": "network-vif-plugged",
                        "server_uuid": SERVER,
                        "tag": vm["id"],
                        "status": "completed",
                    }
                ]
                _beat(client, **{vm["id"]: "ACTIVE"})  # no change: no event
                _beat(client, **{vm["id"]: "DOWN", other["id"]: "DOWN"})
                nova.wait_for(2)
                assert client.delete(f"/v2.0/ports/{other['id']}").status_code == 204
                assert client.delete(f"/v2.0/ports/{vm['id']}").status_code == 204
                events = nova.wait_for(3)
        finally:
            notifier.close()
    assert [e["name"] for e in events] == [
        "network-vif-plugged",
        "network-vif-unplugged",
        "network-vif-deleted",
    ]
    assert events[2]["tag"] == vm["id"] and events[2]["server_uuid"] == SERVER
    assert nova.errors == [] and set(nova.tokens) == {"secret"}
    assert notifier.sent == 3 and notifier.failed == 0


def test_events_are_retried_when_nova_fails(store) -> None:
    with NovaReceiver(fail_first=2) as nova:
        notifier = NovaNotifier(NovaTarget(url=nova.url), backoff=0.01)
        try:
            with TestClient(create_app(store, nova=notifier)) as client:
                vm, _ = _ports(client)
                _beat(client, **{vm["id"]: "ACTIVE"})
                assert [e["tag"] for e in nova.wait_for(1)] == [vm["id"]]
        finally:
            notifier.close()
    assert len(nova.tokens) == 3  # two 503s, then accepted


def test_a_bounded_queue_drops_rather_than_blocks() -> None:
    # Nothing listens on this port: every send fails, slowly retried.
    notifier = NovaNotifier(
        NovaTarget(url="http://127.0.0.1:9/v2.1"), queue_size=2, attempts=1, backoff=0
    )
    port = {"id": "p", "device_id": SERVER, "device_owner": "compute:x", "status": "ACTIVE"}
    started = time.monotonic()
    for _ in range(50):
        notifier.port_status(port)
    assert time.monotonic() - started < 1.0
    assert notifier.dropped > 0
    notifier.close()


def test_only_compute_ports_with_a_server_make_events() -> None:
    compute = {"id": "p", "device_id": SERVER, "device_owner": "compute:nova"}
    assert event_for(compute, "ERROR") == {
        "name": "network-vif-plugged",
        "server_uuid": SERVER,
        "tag": "p",
        "status": "failed",
    }
    assert event_for({**compute, "device_id": ""}, "ACTIVE") is None
    assert event_for({**compute, "device_owner": "network:router_interface"}, "ACTIVE") is None
    assert event_for(compute, "BUILD") is None


def test_nova_options(tmp_path: Path) -> None:
    assert nova_target(None, None, None) is None
    token = tmp_path / "token"
    token.write_text("t0k\n")
    assert nova_target("http://n:8774/v2.1", str(token), None) == NovaTarget(
        url="http://n:8774/v2.1", token="t0k"
    )
    for args in [
        ("ftp://n", None, None),
        (None, str(token), None),
        ("http://n", str(tmp_path / "missing"), None),
        (None, None, str(tmp_path / "missing.ini")),
        ("http://n", str(token), str(token)),
    ]:
        with pytest.raises(NovaConfigError):
            nova_target(*args)
    ini = tmp_path / "nova.ini"
    ini.write_text("[nova]\nauth_url = http://127.0.0.1:5000/v3\nusername = neutron\n")
    with pytest.raises(NovaConfigError, match="password, project_name"):
        nova_target(None, None, str(ini))
    ini.write_text(ini.read_text() + "password = p\nproject_name = service\n")
    target = nova_target(None, None, str(ini))
    assert target is not None and target.session is not None


def test_the_server_process_sends_events_to_the_nova_it_is_given(
    start_server,  # noqa: F811  (the fixture)
    tmp_path: Path,
) -> None:
    token = tmp_path / "nova.token"
    token.write_text("t0k\n")
    with NovaReceiver(token="t0k") as nova:
        _, url = start_server("s.db", "--nova-url", nova.url, "--nova-token-file", str(token))
        with httpx.Client(base_url=url) as client:
            vm, _ = _ports(client)
            _beat(client, **{vm["id"]: "ACTIVE"})
            assert [(e["name"], e["tag"]) for e in nova.wait_for(1)] == [
                ("network-vif-plugged", vm["id"])
            ]


def test_bad_nova_options_are_readable_errors(tmp_path: Path) -> None:
    args = ["--store", f"sqlite:///{tmp_path / 's.db'}", "--nova-url", "nova:8774"]
    done = subprocess.run(server_command(*args), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "expected http(s)://" in done.stderr


def test_a_migrated_port_is_plugged_again_when_its_new_host_reports_it(store) -> None:
    with NovaReceiver() as nova:
        notifier = NovaNotifier(NovaTarget(url=nova.url))
        try:
            with TestClient(create_app(store, nova=notifier)) as client:
                client.put("/v1/hosts/h2", json={**HOST, "router_id": "10.0.0.12"})
                vm, _ = _ports(client)
                _beat(client, **{vm["id"]: "ACTIVE"})
                nova.wait_for(1)
                path = f"/v2.0/ports/{vm['id']}/bindings"
                assert client.post(path, json={"binding": {"host": "h2"}}).status_code == 201
                assert client.put(f"{path}/h2/activate").status_code == 200
                r = client.post("/v1/hosts/h2/heartbeat", json={"ports": {vm["id"]: "ACTIVE"}})
                assert r.json()["ports_changed"] == [vm["id"]]
                events = nova.wait_for(2)
        finally:
            notifier.close()
    assert [(e["name"], e["tag"]) for e in events] == [("network-vif-plugged", vm["id"])] * 2
