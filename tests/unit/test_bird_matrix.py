"""Every fabric config the API accepts renders host and gateway configs that BIRD parses.

The matrix: peering (gateway, mesh, reflectors) x host_asn (same, per-host)
x BFD (on, off) x the address family of the fabric's addresses (IPv4 only,
IPv6 only, dual), each with a BGP password, an import limit and VMs bound to
the hosts (the gateway's per-host import filters). Each case goes through the API's own models (what
``PUT /v1/fabric``, ``/v1/hosts`` and ``/v1/gateways`` accept), then the
agents' renderers, then ``bird -p`` (it parses without privileges, so this is
a unit test). The route reflectors are external routers: the fabric renders
no BIRD for them.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from l3fabric.agent.bird import host_bird_config
from l3fabric.client import HostState
from l3fabric.gateway.bird import gateway_config, routing_from_state
from l3fabric.model.fabric import FabricConfig, GatewayRegistration, HostRegistration
from l3fabric.routing.bird_config import BirdConfig, render

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="bird not installed")

# Per family: the gateway's fabric addresses, this host's and another host's
# address, the route reflectors. "dual": a dual-stack gateway and reflectors,
# hosts with one address each (a host registers one).
FAMILIES: dict[str, dict[str, Any]] = {
    "v4": {
        "gw": ["172.16.0.0", "172.16.0.2"],
        "host": "172.16.0.1",
        "other": "172.16.0.3",
        "rr": ["172.16.9.1"],
    },
    "v6": {
        "gw": ["2001:db8:ff00::", "2001:db8:ff00::2"],
        "host": "2001:db8:ff00::1",
        "other": "2001:db8:ff00::3",
        "rr": ["2001:db8:ff09::1"],
    },
    "dual": {
        "gw": ["172.16.0.0", "2001:db8:ff00::", "172.16.0.2", "2001:db8:ff00::2"],
        "host": "172.16.0.1",
        "other": "2001:db8:ff00::3",
        "rr": ["172.16.9.1", "2001:db8:ff09::1"],
    },
}
CASES = list(
    itertools.product(
        ("gateway", "mesh", "reflectors"), ("same", "per-host"), (True, False), FAMILIES
    )
)


def _api(model: type, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the API stores it (validated, defaults filled in)."""
    return model.model_validate(body).model_dump(mode="json")


def _state(peering: str, host_asn: str, bfd: bool, family: str, me: str) -> HostState:
    f = FAMILIES[family]
    fabric = _api(
        FabricConfig,
        {
            "peering": peering,
            "host_asn": host_asn,
            "bfd": {"enabled": bfd},
            "route_reflectors": f["rr"],
            "bgp_password": "matrix-secret",
            "bgp_import_limit": 1000,
        },
    )
    gw = {
        **_api(GatewayRegistration, {"router_id": "172.17.0.1", "fabric_addresses": f["gw"]}),
        "name": "gw1",
    }
    hosts = {
        name: {**_api(HostRegistration, {"router_id": rid, "address": address}), "name": name}
        for name, rid, address in (
            ("h1", "172.17.0.2", f["host"]),
            ("h2", "172.17.0.3", f["other"]),
        )
    }
    # A VM on each host (both families) and an anycast address served by
    # both: the gateway's per-host filters and ROA entries have content.
    ports = {
        f"p{i}": {
            "id": f"p{i}",
            "binding:host_id": name,
            "fixed_ips": [{"ip_address": f"10.1.0.{i}"}, {"ip_address": f"2001:db8:1::{i}"}],
        }
        for i, name in enumerate(hosts, start=1)
    }
    anycast = {"a": {"id": "a", "address": "10.1.0.100", "members": list(ports)}}
    mine = hosts.pop(me) if me in hosts else None
    return HostState(
        fabric=fabric, host=mine, gateways={"gw1": gw}, hosts=hosts, ports=ports, anycast=anycast
    )


def _parse(config: BirdConfig, path: Path) -> None:
    path.write_text(render(config))
    done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=10)  # fmt: skip
    assert done.returncode == 0, done.stderr + "\n" + path.read_text()


def _accounted(config: BirdConfig, expected: int) -> None:
    """Every session is rendered or skipped with a reason; none lacks a local address BIRD needs."""
    assert len(config.peers) + len(config.skipped_peers) == expected
    assert all(s.reason for s in config.skipped_peers)
    assert all(p.source_address for p in config.peers if p.needs_local(config.local_as))


@needs_bird
@pytest.mark.parametrize(("peering", "host_asn", "bfd", "family"), CASES)
def test_host_config_parses(
    peering: str, host_asn: str, bfd: bool, family: str, tmp_path: Path
) -> None:
    config = host_bird_config(_state(peering, host_asn, bfd, family, "h1"))
    f = FAMILIES[family]
    expected = {"gateway": len(f["gw"]), "mesh": len(f["gw"]) + 1, "reflectors": len(f["rr"])}
    _parse(config, tmp_path / "host.conf")
    _accounted(config, expected[peering])
    assert config.peers, "a host must keep at least one session"


@needs_bird
@pytest.mark.parametrize(("peering", "host_asn", "bfd", "family"), CASES)
def test_gateway_config_parses(
    peering: str, host_asn: str, bfd: bool, family: str, tmp_path: Path
) -> None:
    routing = routing_from_state(_state(peering, host_asn, bfd, family, "gw1"), "gw1")
    config = gateway_config(routing)
    _parse(config, tmp_path / "gw.conf")
    _accounted(config, len(FAMILIES[family]["rr"]) if peering == "reflectors" else 2)
    assert config.peers, "a gateway must keep at least one session"


# Names that the old "peer_" + [A-Za-z0-9_] mapping folded together: hosts
# "a.b", "a-b" and "a_b"; a host named like the session a host derives for a
# gateway's first address ("gw1_0") or for a route reflector ("rr0"), or like
# a gateway's upstream peer ("isp1"); 63-character names (cut to fit BIRD's
# 64) that share their first 62 characters; a gateway with such a name.
HOSTILE_HOSTS = ("a.b", "a-b", "a_b", "gw1_0", "rr0", "0", "isp1", "x" * 62 + "a", "x" * 62 + "b")
HOSTILE_GATEWAYS = {"gw1": 2, "gw1_0": 1, "g" * 63: 2}  # name: fabric addresses


def _hostile_state(peering: str, me: str) -> HostState:
    fabric = _api(
        FabricConfig,
        {"peering": peering, "route_reflectors": ["172.16.9.1", "172.16.9.2"]},
    )
    gateways = {}
    for g, (name, count) in enumerate(HOSTILE_GATEWAYS.items()):
        addresses = [f"172.16.{g}.{2 * i}" for i in range(count)]
        # Upstream peers named like hosts, reflectors and derived sessions.
        upstream = [
            {"name": n, "address": f"192.0.2.{i + 1}", "asn": 64496}
            for i, n in enumerate(("isp1", "a.b", "rr0", "0", "gw1_0"))
        ]
        body = {"router_id": f"172.17.1.{g}", "fabric_addresses": addresses, "upstream": upstream}
        gateways[name] = {**_api(GatewayRegistration, body), "name": name}
    hosts = {
        name: {
            **_api(HostRegistration, {"router_id": f"172.17.2.{i}", "address": f"172.16.5.{i}"}),
            "name": name,
        }
        for i, name in enumerate(HOSTILE_HOSTS)
    }
    mine = hosts.pop(me, None)
    return HostState(fabric=fabric, host=mine, gateways=gateways, hosts=hosts)


@needs_bird
@pytest.mark.parametrize("peering", ["gateway", "mesh", "reflectors"])
@pytest.mark.parametrize("me", ["a.b", "gw1_0", "x" * 62 + "a"])
def test_hostile_host_names_never_collide_on_a_host(peering: str, me: str, tmp_path: Path) -> None:
    config = host_bird_config(_hostile_state(peering, me))
    gateway_sessions = sum(HOSTILE_GATEWAYS.values())
    expected = {
        "gateway": gateway_sessions,
        "mesh": gateway_sessions + len(HOSTILE_HOSTS) - 1,
        "reflectors": 2,
    }
    _parse(config, tmp_path / "host.conf")
    _accounted(config, expected[peering])
    assert not config.skipped_peers


@needs_bird
@pytest.mark.parametrize("peering", ["gateway", "mesh", "reflectors"])
@pytest.mark.parametrize("gateway", ["gw1", "gw1_0", "g" * 63])
def test_hostile_names_never_collide_on_a_gateway(
    peering: str, gateway: str, tmp_path: Path
) -> None:
    state = _hostile_state(peering, gateway)
    config = gateway_config(routing_from_state(state, gateway))
    fabric = 2 if peering == "reflectors" else len(state.hosts)
    _parse(config, tmp_path / "gw.conf")
    _accounted(config, fabric + 5)
    assert not config.skipped_peers


@needs_bird
def test_explicit_peers_named_like_upstream_peers_are_other_sessions(tmp_path: Path) -> None:
    state = _hostile_state("gateway", "gw1")
    record = state.gateways["gw1"]
    # Every upstream name again as a fabric peer, on the gateway's link.
    record["fabric_peers"] = [
        {**p, "address": f"172.16.0.{i + 1}", "asn": 65000}
        for i, p in enumerate(record["upstream"])
    ]
    config = gateway_config(routing_from_state(state, "gw1"))
    _parse(config, tmp_path / "gw.conf")
    _accounted(config, 10)
