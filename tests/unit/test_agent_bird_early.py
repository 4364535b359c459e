"""BIRD's early start: the same configuration as the first pass computes, from small requests."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from l3fabric.agent.bird import NotRegistered, host_bird_config
from l3fabric.agent.bird_early import EarlyBird, bird_state
from l3fabric.api.app import create_app
from l3fabric.client import FabricClient, HostState
from l3fabric.routing.bird_config import render
from l3fabric.store.sqlite import SqliteStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

URL = "http://testserver"


@pytest.fixture
def api(tmp_path: Path):
    store = SqliteStore(tmp_path / "db")
    with (
        TestClient(create_app(store)) as test_client,
        FabricClient(URL, transport=test_client._transport) as client,
    ):
        yield client
    store.close()


def _snapshot_config(client: FabricClient, host: str) -> str:
    snap = client.request("GET", "/v1/watch", params={"host": host})
    return render(host_bird_config(HostState.from_snapshot(snap)))


def _fabric(client: FabricClient, peering: str) -> None:
    client.set_fabric({"asn": 65000, "peering": peering})
    client.register_gateway("gw1", router_id="10.255.0.1", fabric_addresses=["10.255.0.1"])
    client.register_host("h1", router_id="10.255.1.1", address="10.255.1.1")
    client.register_host("h2", router_id="10.255.1.2", address="10.255.1.2", asn=65002)


@pytest.mark.parametrize("peering", ["gateway", "mesh"])
def test_early_config_is_the_first_pass_config(api: FabricClient, peering: str) -> None:
    _fabric(api, peering)
    early = render(host_bird_config(bird_state(api, "h1")))
    # Equal text: the first pass does not reconfigure the BIRD started early.
    assert early == _snapshot_config(api, "h1")
    assert ("10.255.1.2" in early) == (peering == "mesh")


def test_unregistered_host_is_not_started(api: FabricClient) -> None:
    _fabric(api, "gateway")
    with pytest.raises(NotRegistered):
        bird_state(api, "nosuch")


def test_early_bird_starts_bird_once_and_leaves_a_running_one(api: FabricClient) -> None:
    _fabric(api, "gateway")
    transport = api._http._transport
    started: list[str] = []
    EarlyBird(URL, "h1", lambda: False, started.append, transport=transport).start().wait(10)
    assert started == [_snapshot_config(api, "h1")]
    EarlyBird(URL, "h1", lambda: True, started.append, transport=transport).start().wait(10)
    assert len(started) == 1


def test_early_bird_failure_leaves_it_to_the_first_pass(api: FabricClient) -> None:
    _fabric(api, "gateway")

    def refuse(text: str) -> None:
        raise RuntimeError("bird refused")

    early = EarlyBird(URL, "h1", lambda: False, refuse, transport=api._http._transport)
    early.start().wait(10)  # no exception escapes the thread
    assert not early.started
