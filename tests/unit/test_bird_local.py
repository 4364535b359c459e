"""Local addresses of BGP sessions: chosen where BIRD needs one, or the session is skipped."""

from __future__ import annotations

import shutil
import subprocess
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from l3fabric.agent.bird import host_bird_config
from l3fabric.agent.loop import ReconcileAgent
from l3fabric.client import HostState
from l3fabric.gateway.bird import GatewayRouting, PeerSpec, gateway_config
from l3fabric.gateway.desired import GatewayDesired
from l3fabric.routing.bird_config import BgpPeer, BirdConfig, local_address, render

from .test_fabric_api import api, store  # noqa: F401  (fixtures)

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="bird not installed")

FABRIC = {"asn": 65000, "peering": "gateway", "host_asn": "same", "bfd": {"enabled": True}}
GW = {
    "name": "gw1",
    "router_id": "172.17.0.1",
    "fabric_addresses": ["172.16.0.0", "2001:db8:ff00::"],
}
HOST = {"name": "h1", "router_id": "172.17.0.2", "address": "172.16.0.1", "peers": None}


def _host(fabric: dict[str, Any] | None = None, **host: Any) -> BirdConfig:
    state = HostState(
        fabric={**FABRIC, **(fabric or {})}, host={**HOST, **host}, gateways={"gw1": GW}
    )
    return host_bird_config(state)


def _bird_p(config: BirdConfig, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bird.conf"
    path.write_text(render(config))
    return subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=10)  # fmt: skip


def test_the_address_on_the_peers_link_is_chosen() -> None:
    mine = [ip_address(a) for a in ("172.16.0.0", "2001:db8:ff00::", "172.16.0.4", "2001:db8:ff00::4")]  # fmt: skip
    assert local_address(ip_address("172.16.0.5"), mine) == ip_address("172.16.0.4")
    assert local_address(ip_address("172.16.0.1"), mine) == ip_address("172.16.0.0")
    assert local_address(ip_address("2001:db8:ff00::5"), mine) == ip_address("2001:db8:ff00::4")
    assert local_address(ip_address("2001:db8:ff00::5"), [ip_address("172.16.0.0")]) is None


@needs_bird
def test_default_fabric_host_speaks_from_its_address_and_skips_the_other_family(
    tmp_path: Path,
) -> None:
    config = _host()
    [v4] = config.peers
    assert (str(v4.address), str(v4.source_address), v4.bfd) == ("172.16.0.0", "172.16.0.1", True)
    [skipped] = config.skipped_peers
    assert str(skipped.address) == "2001:db8:ff00::" and "local IPv6 address" in skipped.reason
    text = render(config)
    assert "local 172.16.0.1 as 65000;" in text
    assert "# Skipped session g:gw1:1 (2001:db8:ff00::): multihop BGP with BFD" in text
    done = _bird_p(config, tmp_path)
    assert done.returncode == 0, done.stderr


def test_a_peers_own_local_address_wins() -> None:
    peers = [
        {"name": "gw6", "address": "2001:db8:ff00::", "asn": 65000, "local": "2001:db8:ff00::1"}
    ]
    config = _host(peers=peers)
    assert [(str(p.address), str(p.source_address)) for p in config.peers] == [
        ("2001:db8:ff00::", "2001:db8:ff00::1")
    ]
    assert config.skipped_peers == ()


def test_ebgp_direct_sessions_need_no_local_address() -> None:
    config = _host({"host_asn": "per-host"})
    assert {str(p.address) for p in config.peers} == {"172.16.0.0", "2001:db8:ff00::"}
    assert config.skipped_peers == ()
    assert all(p.source_address is None for p in config.peers if p.version == 6)


def test_gateway_speaks_to_each_host_from_that_hosts_link() -> None:
    routing = GatewayRouting(
        router_id=ip_address("172.17.0.1"),
        local_as=65000,
        fabric_peers=(
            PeerSpec("h1", ip_address("172.16.0.1"), 65000),
            PeerSpec("h2", ip_address("172.16.0.3"), 65000),
        ),
        upstream=(),
        desired=GatewayDesired(public=(), private=(), fabric_import=()),
        fabric_addresses=(ip_address("172.16.0.0"), ip_address("172.16.0.2")),
    )
    config = gateway_config(routing)
    assert [(p.name, str(p.source_address)) for p in config.peers] == [
        ("h1", "172.16.0.0"),
        ("h2", "172.16.0.2"),
    ]


def test_a_model_that_bird_would_reject_is_refused() -> None:
    with pytest.raises(ValueError, match="family"):
        BgpPeer(
            name="x",
            address=ip_address("2001:db8::1"),
            asn=65000,
            source_address=ip_address("10.0.0.1"),
        )
    needy = BgpPeer(name="x", address=ip_address("10.0.0.1"), asn=65000, bfd=True)
    with pytest.raises(ValueError, match="needs a local address"):
        BirdConfig(router_id=ip_address("10.0.0.2"), local_as=65000, peers=(needy,))


@needs_bird
def test_hold_time_zero_renders_a_config_bird_accepts(tmp_path: Path) -> None:
    done = _bird_p(_host({"hold_s": 0}), tmp_path)
    assert done.returncode == 0, done.stderr


class _Agent(ReconcileAgent):
    def pass_once(self, timed: bool) -> list[str]:
        return []

    def send_heartbeat(self) -> None:
        pass


def test_skipped_sessions_are_reported_in_the_heartbeat(tmp_path: Path) -> None:
    agent = _Agent("h1", "http://127.0.0.1:9", tmp_path)
    try:
        agent.note_skipped(_host())
        [entry] = agent.bgp_sessions()  # BIRD is not running: only the skipped one
        assert entry["state"] == "skipped" and entry["peer"] == "2001:db8:ff00::"
        # Under the name BIRD would give it: the gateway's second fabric address.
        assert entry["name"] == "g:gw1:1"
        assert "local IPv6 address" in entry["info"]
    finally:
        agent.client.close()


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/v1/hosts/h1", {"router_id": "10.0.0.1", "address": "fe80::1"}, "link-local"),
        ("/v1/hosts/h1", {"router_id": "10.0.0.1", "address": "::"}, "unspecified"),
        ("/v1/fabric", {"peering": "reflectors", "route_reflectors": ["224.0.0.5"]}, "multicast"),
        (
            "/v1/hosts/h1",
            {
                "router_id": "10.0.0.1",
                "address": "10.0.0.1",
                "peers": [
                    {"name": "t", "address": "10.0.0.0", "asn": 65001, "local": "2001:db8::1"}
                ],
            },
            "differ in family",
        ),
        (
            "/v1/gateways/g",
            {"router_id": "10.0.0.1", "fabric_addresses": ["fe80::2"]},
            "link-local",
        ),
    ],
)
def test_addresses_bird_cannot_use_are_a_clear_400(
    api: TestClient,  # noqa: F811  (the fixture)
    path: str,
    body: dict[str, Any],
    words: str,
) -> None:
    answer = api.put(path, json=body)
    assert answer.status_code == 400
    assert words in answer.json()["NeutronError"]["message"]
