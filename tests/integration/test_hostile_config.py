"""The most hostile fabric the API accepts still renders configs BIRD and nftables accept.

A fabric is built through the real API (names at their 63-character limit,
IPv4 and IPv6 everywhere, odd but valid spellings that the API canonicalises,
every number at its limit); then the host agent's and the gateway agent's
inputs are taken from the watch snapshot exactly as the agents take them, and
every config they render is checked with ``bird -p`` and ``nft -c`` (in a
namespace of our own). The lab routers' configs are checked the same way.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from l3fabric.addresses import parse_address, parse_network
from l3fabric.agent.bird import host_bird_config
from l3fabric.agent.desired import tap_name
from l3fabric.agent.observed import Observed, TapState
from l3fabric.agent.plan import desired_state
from l3fabric.api.app import create_app
from l3fabric.client import HostState
from l3fabric.dataplane import nft
from l3fabric.dataplane.links import LinkInfo
from l3fabric.gateway import nat
from l3fabric.gateway.bird import gateway_config, routing_from_state
from l3fabric.lab import routers
from l3fabric.lab.plan import build_plan
from l3fabric.lab.topology import parse_topology
from l3fabric.routing.bird_config import render
from l3fabric.store.sqlite import SqliteStore

from .conftest import in_ns

# 63 characters, the longest name the API takes; two differ only at the end.
H1 = "h" * 61 + ".1"
H2 = "h" * 61 + "-2"
GW = "g" * 62 + "w"
UPSTREAM = "u" * 30 + "." + "p" * 32
# Hosts whose names once folded into one BIRD protocol name with another
# session's ("peer_a_b"; a host named like an upstream peer or a reflector).
LOOKALIKES = ("a.b", "a-b", "a_b", UPSTREAM, "rr0")
ASN = 4_294_967_294


def _put(api: TestClient, url: str, body: dict[str, Any]) -> None:
    r = api.put(url, json=body)
    assert r.status_code in (200, 201), r.text


def _make(api: TestClient, collection: str, key: str, **attrs: Any) -> dict[str, Any]:
    r = api.post(f"/v2.0/{collection}", json={key: attrs})
    assert r.status_code == 201, r.text
    return r.json()[key]


def _fabric(api: TestClient, fabric: dict[str, Any]) -> None:
    _put(api, "/v1/fabric", fabric)
    # Odd but valid spellings: the API stores them canonical.
    _put(
        api,
        f"/v1/hosts/{H1}",
        {
            "router_id": "255.255.255.254",
            "address": "2001:DB8:FFFF:FFFF:FFFF:FFFF:FFFF:0011",
            "asn": ASN,
            "rack": "r" * 63,
        },
    )
    _put(api, f"/v1/hosts/{H2}", {"router_id": "10.0.0.12", "address": "::ffff:10.0.0.12"})
    _put(
        api,
        f"/v1/gateways/{GW}",
        {
            "router_id": "10.0.0.1",
            "asn": 1,
            "fabric_addresses": ["10.0.0.1", "2001:db8:0:0::1"],
            "upstream": [
                {"name": UPSTREAM, "address": "192.0.2.1", "asn": ASN},
                {"name": UPSTREAM[:-1] + "6", "address": "2001:db8:ffff::1", "asn": ASN},
                {"name": "rr0", "address": "192.0.2.2", "asn": ASN},
            ],
            "snat_address": "2001:db8:ffff::2",
            "infrastructure": ["0.0.0.0/0", "::/0", "172.16.0.0/12", "2001:db8:ffff::/48"],
        },
    )
    for i, name in enumerate(LOOKALIKES):
        _put(api, f"/v1/hosts/{name}", {"router_id": f"10.0.1.{i}", "address": f"10.0.1.{i}"})
    public = _make(api, "networks", "network", name="n" * 255, **{"router:external": True})
    private = _make(api, "networks", "network", name="p")
    _make(api, "subnets", "subnet", network_id=public["id"], cidr="203.0.113.0/24")
    for network, cidr, version in (
        (private, "10.255.0.0/16", 4),
        (private, "2001:DB8:1::/64", 6),
        (public, "2001:db8:2::/64", 6),
    ):
        _make(api, "subnets", "subnet", network_id=network["id"], cidr=cidr, ip_version=version)
    for i in range(3):
        _make(
            api,
            "ports",
            "port",
            network_id=private["id"],
            fixed_ips=[{"ip_address": f"10.255.0.{10 + i}"}, {"ip_address": f"2001:db8:1::A{i}"}],
            allowed_address_pairs=[
                {"ip_address": "10.255.128.0/17"},
                {"ip_address": "2001:db8:1::/64"},
                {"ip_address": f"10.255.0.{10 + i}"},
            ],
            **{"binding:host_id": H1},
        )
    subnets = api.get("/v2.0/subnets").json()["subnets"]
    v6 = next(s for s in subnets if s["cidr"] == "2001:db8:1::/64")
    r = api.post("/v1/anycast", json={"name": "a" * 63, "subnet_id": v6["id"]})
    assert r.status_code == 201, r.text


FABRICS = {
    # BFD and every timer at its limit; per-host ASNs (eBGP) in a full mesh.
    "mesh": {
        "asn": ASN,
        "peering": "mesh",
        "host_asn": "per-host",
        "bfd": {"enabled": True, "interval_ms": 60_000, "multiplier": 255},
        "graceful_restart": {"enabled": True, "restart_time_s": 4095},
        "keepalive_s": 21_845,
        "hold_s": 65_535,
    },
    # Route reflectors of both families: iBGP with BFD (multihop, so local addresses).
    "reflectors": {
        "peering": "reflectors",
        "route_reflectors": ["10.0.0.200", "2001:DB8::C8", "::ffff:10.0.0.201"],
        "graceful_restart": {"enabled": False},
        "hold_s": 0,
    },
}


@pytest.fixture(scope="module", params=sorted(FABRICS))
def snapshots(request, tmp_path_factory) -> Iterator[dict[str, HostState]]:
    store = SqliteStore(tmp_path_factory.mktemp("store") / "db")
    try:
        with TestClient(create_app(store)) as api:
            _fabric(api, FABRICS[request.param])
            yield {
                name: HostState.from_snapshot(api.get("/v1/watch", params={"host": name}).json())
                for name in (H1, H2, GW)
            }
    finally:
        store.close()


def _bird_accepts(text: str, path: Path) -> None:
    path.write_text(text)
    done = subprocess.run(
        ["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, f"{done.stderr}\n{text}"


def _nft_accepts(netns: str, text: str, path: Path) -> None:
    path.write_text(text)
    done = in_ns(netns, "nft", "-c", "-f", str(path), check=False)
    assert done.returncode == 0, f"{done.stderr}\n{text}"


def test_host_configs_are_accepted(snapshots, netns, tmp_path) -> None:
    ns = netns("nft")
    for name in (H1, H2):
        state = snapshots[name]
        assert state.host is not None  # nothing the API accepted was left out
        # Every port plugged in: everything the agent would program is rendered.
        plugged = {tap_name(p): TapState(LinkInfo(i, 1, {})) for i, p in enumerate(state.ports)}
        wanted = desired_state(name, state, Observed(taps=plugged))
        assert not wanted.errors, wanted.errors
        anycast = {f"{g['address']}/128": 2 for g in state.anycast.values()}
        config = host_bird_config(state, anycast=anycast)  # endpoints: kernel table 150
        assert config.peers, "a host without peers proves nothing"
        _bird_accepts(render(config), tmp_path / f"{name}.conf")
        _nft_accepts(ns, nft.render(wanted.guard, isolated=["eth0"]), tmp_path / f"{name}.nft")
    assert len(snapshots[H1].ports) == 3


def test_gateway_configs_are_accepted(snapshots, netns, tmp_path) -> None:
    state = snapshots[GW]
    routing = routing_from_state(state, GW)
    _bird_accepts(render(gateway_config(routing)), tmp_path / "gw.conf")
    record = state.gateways[GW]
    policy = nat.policy(
        [parse_network(p) for p in routing.desired.private],
        ["l3f-up0", "e" * 15],
        parse_address(record["snat_address"]),
    )
    _nft_accepts(netns("nat"), nat.render(policy), tmp_path / "gw.nft")


def test_lab_router_configs_are_accepted(tmp_path) -> None:
    topology = (
        "name: l\nracks: [{name: " + "r" * 20 + ", hosts: 2}, {name: s, hosts: 1, tor: false}]"
    )
    plan = build_plan(parse_topology(topology))
    for node in ("r" * 20 + "-tor", "gw1", "internet"):
        _bird_accepts(routers.render(plan, node, str(tmp_path / "bird.log")), tmp_path / "r.conf")
