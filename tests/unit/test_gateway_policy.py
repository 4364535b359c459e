"""The gateway's desired policy and its BIRD config: what goes upstream, what is accepted, NATed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from l3fabric.client import HostState
from l3fabric.gateway.bird import gateway_config, routing_from_state
from l3fabric.gateway.desired import NotRegistered, compute
from l3fabric.routing.bird_config import render

NETWORKS = {"pub": {"id": "pub", "router:external": True}, "priv": {"id": "priv"}}
SUBNETS = {
    "s1": {"id": "s1", "network_id": "pub", "cidr": "203.0.113.0/25"},
    "s2": {"id": "s2", "network_id": "pub", "cidr": "203.0.113.128/25"},
    "s3": {"id": "s3", "network_id": "pub", "cidr": "2001:db8:100::/64"},
    "s4": {"id": "s4", "network_id": "priv", "cidr": "10.1.0.0/24"},
    "s5": {"id": "s5", "network_id": "gone", "cidr": "10.9.0.0/24"},
}
GATEWAY = {
    "name": "gw1",
    "router_id": "172.17.0.2",
    "fabric_addresses": ["172.16.0.0"],
    "upstream": [{"name": "internet", "address": "192.0.2.0", "asn": 64496}],
    "snat_address": "192.0.2.1",
    "infrastructure": ["172.17.0.0/16"],
}


def state(**gateway: object) -> HostState:
    hosts = {
        "h1": {"name": "h1", "router_id": "172.17.0.5", "address": "172.16.0.1", "asn": 4200000001}
    }
    return HostState(
        fabric={"asn": 65000, "peering": "gateway", "hold_s": 9, "keepalive_s": 3},
        gateways={"gw1": {**GATEWAY, **gateway}},
        hosts=hosts,
        networks=NETWORKS,
        subnets=SUBNETS,
    )


def session(conf: str, name: str) -> str:
    return conf.split(f"protocol bgp '{name}' {{")[1].split("\n}\n")[0]


def test_public_subnets_are_aggregated_and_private_ones_never_public() -> None:
    desired = compute(NETWORKS, SUBNETS)
    assert desired.public == ("203.0.113.0/24", "2001:db8:100::/64")
    # A subnet of an unknown network is private: NATed and never announced.
    assert desired.private == ("10.1.0.0/24", "10.9.0.0/24")


def test_fabric_import_is_known_subnets_and_infrastructure_never_a_default() -> None:
    subnets = {**SUBNETS, "bad": {"network_id": "priv", "cidr": "0.0.0.0/0"}}
    desired = compute(NETWORKS, subnets, ["172.17.0.0/16"])
    assert set(desired.fabric_import) == {
        "10.1.0.0/24+",
        "10.9.0.0/24+",
        "172.17.0.0/16+",
        "203.0.113.0/24+",
        "2001:db8:100::/64+",
    }


def test_upstream_gets_only_originated_public_aggregates_and_gives_only_a_default() -> None:
    conf = render(gateway_config(routing_from_state(state(), "gw1")))
    upstream = session(conf, "up:internet")
    assert "import filter { if net.len = 0 then accept; reject; };" in upstream
    assert (
        "export filter { if source = RTS_STATIC && net ~ [ 203.0.113.0/24 ] then accept;"
        " reject; };" in upstream
    )
    assert "10.1.0.0" not in upstream
    assert "route 203.0.113.0/24 unreachable;" in conf
    # The fallback default yields to the learned one.
    assert "protocol static static4_p50 {\n\tipv4 { preference 50; };" in conf


def test_fabric_peers_derived_from_hosts_or_explicit() -> None:
    conf = render(gateway_config(routing_from_state(state(), "gw1")))
    host = session(conf, "h:h1")
    assert "neighbor 172.16.0.1 as 4200000001;" in host
    # A host session imports only the host's bound addresses: h1 has none.
    assert "import filter { if false then accept; reject; };" in host
    assert "export filter { accept; };" in host
    explicit = [{"name": "r1-tor", "address": "172.16.0.3", "asn": 65000}]
    conf = render(gateway_config(routing_from_state(state(fabric_peers=explicit), "gw1")))
    assert "h:h1" not in conf
    # Same AS: the gateway reflects routes between clients with itself as next hop.
    tor = session(conf, "p:r1-tor")
    assert "rr client;" in tor and "next hop self;" in tor


def test_unregistered_gateway_has_no_config() -> None:
    with pytest.raises(NotRegistered):
        routing_from_state(state(), "gw2")


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird2 is not installed")
def test_bird_accepts_the_gateway_config(tmp_path: Path) -> None:
    conf = tmp_path / "bird.conf"
    routing = routing_from_state(state(), "gw1", log_file=str(tmp_path / "bird.log"))
    conf.write_text(render(gateway_config(routing)))
    done = subprocess.run(["bird", "-p", "-c", str(conf)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
