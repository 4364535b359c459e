"""The host's BIRD config follows its registration and the fabric config."""

from __future__ import annotations

import pytest

from l3fabric.agent.bird import NotRegistered, host_bird_config
from l3fabric.client import HostState
from l3fabric.routing.bird_config import render

FABRIC = {
    "asn": 65000,
    "peering": "gateway",
    "host_asn": "same",
    "route_reflectors": [],
    "bfd": {"enabled": True, "interval_ms": 100, "multiplier": 3},
    "graceful_restart": {"enabled": True, "restart_time_s": 120},
    "keepalive_s": 3,
    "hold_s": 9,
}
GW = {"name": "gw", "router_id": "172.17.0.1", "asn": None, "fabric_addresses": ["172.16.0.0"]}


def _state(host: dict | None, **fabric: object) -> HostState:
    other = {"name": "h2", "router_id": "172.17.0.3", "address": "172.16.0.4", "asn": None}
    return HostState(
        fabric={**FABRIC, **fabric}, host=host, gateways={"gw": GW}, hosts={"h2": other}
    )


HOST = {
    "name": "h1",
    "router_id": "172.17.0.2",
    "address": "172.16.0.2",
    "asn": None,
    "peers": None,
}


def test_unregistered_host_has_no_config() -> None:
    with pytest.raises(NotRegistered):
        host_bird_config(_state(None))


def test_gateway_peering_ibgp_by_default() -> None:
    config = host_bird_config(_state(HOST))
    assert config.local_as == 65000
    assert [(str(p.address), p.asn, p.bfd) for p in config.peers] == [("172.16.0.0", 65000, True)]
    assert all(p.export_policy.kind == "endpoints" for p in config.peers)
    assert (config.hold_time, config.keepalive_time) == (9, 3)


def test_mesh_peers_with_other_hosts_too() -> None:
    config = host_bird_config(_state(HOST, peering="mesh"))
    assert sorted(str(p.address) for p in config.peers) == ["172.16.0.0", "172.16.0.4"]


def test_per_host_asn_and_explicit_peers_win() -> None:
    host = {
        **HOST,
        "asn": 4200000001,
        "peers": [{"name": "tor", "address": "172.16.0.3", "asn": 65101}],
    }
    config = host_bird_config(_state(host, host_asn="per-host"))
    assert config.local_as == 4200000001
    assert [(p.name, p.asn) for p in config.peers] == [("tor", 65101)]


def test_bfd_off_and_rendered_config_names_every_peer() -> None:
    config = host_bird_config(
        _state(HOST, bfd={"enabled": False, "interval_ms": 100, "multiplier": 3})
    )
    assert not any(p.bfd for p in config.peers)
    text = render(config)
    assert "172.16.0.0" in text
    assert "router id 172.17.0.2" in text
