"""The gateway believes no host: origin checks, passwords, import limits, rejections shown.

Pure: the gateway's routing from a hand-written cache, rendered and parsed
by ``bird -p``; the watch rules with a real SQLite store; BIRD's status text.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from l3fabric import keys
from l3fabric.agent.bird import host_bird_config
from l3fabric.client import HostState
from l3fabric.gateway.appliers import GatewayBirdApplier
from l3fabric.gateway.bird import gateway_config, routing_from_state
from l3fabric.gateway.ops import GatewayBirdConfigure
from l3fabric.gateway.origins import origins
from l3fabric.model.fabric import FabricConfig
from l3fabric.routing.bird_config import BirdConfig, render
from l3fabric.routing.bird_control import parse_protocols
from l3fabric.service.watch import relevant_event, snapshot
from l3fabric.store import Event
from l3fabric.store.sqlite import SqliteStore

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="bird not installed")

H1_AS, H2_AS = 4200000011, 4200000012


def _port(pid: str, host: str, *ips: str) -> dict[str, Any]:
    return {"id": pid, "binding:host_id": host, "fixed_ips": [{"ip_address": ip} for ip in ips]}


def _state(host_asn: str = "per-host", tor: bool = False) -> HostState:
    fabric = FabricConfig.model_validate(
        {"host_asn": host_asn, "bgp_password": "s3cret!", "bgp_import_limit": 500}
    ).model_dump(mode="json")
    hosts = {
        "h1": {"name": "h1", "router_id": "172.17.0.11", "address": "172.16.0.1", "asn": H1_AS},
        "h2": {"name": "h2", "router_id": "172.17.0.12", "address": "172.16.0.3", "asn": H2_AS},
    }
    gw: dict[str, Any] = {
        "name": "gw1",
        "router_id": "172.17.0.1",
        "fabric_addresses": ["172.16.0.0", "172.16.0.2"],
        "infrastructure": ["172.17.0.0/16"],
        "upstream": [{"name": "isp", "address": "192.0.2.1", "asn": 64496}],
    }
    if tor:  # the hosts behind a ToR: the gateway's only fabric peer
        gw["fabric_peers"] = [
            {"name": "tor", "address": "172.16.0.9", "asn": 65101},
            {"name": "tor6", "address": "2001:db8:ff00::9", "asn": 65101},
        ]
        gw["fabric_addresses"].append("2001:db8:ff00::8")
    ports = {
        "p1": _port("p1", "h1", "10.1.0.5", "2001:db8:1::5"),
        "p2": _port("p2", "h2", "10.1.0.6"),
        "p3": _port("p3", "unregistered", "10.1.0.7"),
    }
    anycast = {"a": {"id": "a", "address": "10.1.0.100", "members": ["p1", "p2", "p3"]}}
    return HostState(fabric=fabric, hosts=hosts, gateways={"gw1": gw}, ports=ports, anycast=anycast)


def _filters(config: BirdConfig) -> dict[str, str]:
    return {p.protocol: p.import_policy.filter_body(p.version) for p in config.peers}


def test_each_address_belongs_to_the_host_it_is_bound_to_and_anycast_to_its_members() -> None:
    known = origins(_state())
    assert known.prefixes == {
        "h1": ("10.1.0.100/32", "10.1.0.5/32", "2001:db8:1::5/128"),
        "h2": ("10.1.0.100/32", "10.1.0.6/32"),
    }
    assert known.host_at("172.16.0.3") == "h2" and known.host_at("172.16.0.9") is None


def test_host_length_address_pairs_belong_to_the_ports_host_wider_ones_to_no_one() -> None:
    """Anycast by allowed address pairs: each member's host announces the shared /32."""
    state = _state()
    state.ports["p1"]["allowed_address_pairs"] = [{"ip_address": "10.1.0.9"}]
    state.ports["p2"]["allowed_address_pairs"] = [
        {"ip_address": "10.1.0.9/32"},
        {"ip_address": "10.9.0.0/24"},
    ]
    known = origins(state)
    assert "10.1.0.9/32" in known.prefixes["h1"] and "10.1.0.9/32" in known.prefixes["h2"]
    assert not any(p.startswith("10.9.") for p in known.prefixes["h2"])


def test_a_hosts_other_session_addresses_are_its_own_too() -> None:
    """A dual-stack host registers one address; its IPv6 session is its peers' ``local``."""
    state = _state("same")
    peer = {
        "name": "gw1-v6",
        "address": "2001:db8:ff00::",
        "asn": 65000,
        "local": "2001:db8:ff00::1",
    }
    state.hosts["h1"]["peers"] = [peer]
    state.gateways["gw1"]["fabric_peers"] = [
        {"name": "r1-h1-v6", "address": "2001:db8:ff00:0::1", "asn": 65000}
    ]
    state.gateways["gw1"]["fabric_addresses"].append("2001:db8:ff00::")
    assert origins(state).host_at("2001:db8:ff00::1") == "h1"
    config = gateway_config(routing_from_state(state, "gw1"))
    assert _filters(config)["p:r1-h1-v6"] == "if net ~ [ 2001:db8:1::5/128 ] then accept; reject;"


@pytest.mark.parametrize("host_asn", ["same", "per-host"])
def test_a_host_session_imports_only_that_hosts_addresses(host_asn: str) -> None:
    filters = _filters(gateway_config(routing_from_state(_state(host_asn), "gw1")))
    assert filters["h:h1"] == "if net ~ [ 10.1.0.100/32, 10.1.0.5/32 ] then accept; reject;"
    assert filters["h:h2"] == "if net ~ [ 10.1.0.100/32, 10.1.0.6/32 ] then accept; reject;"


def test_a_tor_session_passes_only_what_origin_validation_and_infrastructure_allow() -> None:
    config = gateway_config(routing_from_state(_state(tor=True), "gw1"))
    assert _filters(config)["p:tor"] == (
        "if roa_check(roas4, net, bgp_path.last) = ROA_VALID || net ~ [ 172.17.0.0/16+ ]"
        " then accept; reject;"
    )
    text = render(config)
    assert "roa4 table roas4;" in text
    for entry in (
        f"10.1.0.5/32 max 32 as {H1_AS}",
        f"10.1.0.6/32 max 32 as {H2_AS}",
        f"10.1.0.100/32 max 32 as {H1_AS}",
        f"10.1.0.100/32 max 32 as {H2_AS}",
    ):
        assert f"\troute {entry};\n" in text
    assert f"\troute 2001:db8:1::5/128 max 128 as {H1_AS};\n" in text
    assert "roa6 table roas6;" in text
    assert "10.1.0.7" not in text  # bound to a host the controller does not know


def test_fabric_sessions_carry_password_and_import_limit_upstream_neither() -> None:
    config = gateway_config(routing_from_state(_state(), "gw1"))
    by_name = {p.protocol: p for p in config.peers}
    assert by_name["h:h1"].password == "s3cret!" and by_name["h:h1"].import_limit == 500
    assert by_name["up:isp"].password is None and by_name["up:isp"].import_limit is None
    text = render(config)
    assert text.count('password "s3cret!";') == 2
    assert text.count("import limit 500 action restart;") == 2
    assert text.count("import keep filtered on;") == 2
    assert text.count("import table on;") == 2  # fabric sessions only
    state = _state()
    state.host, state.gateways = state.hosts.pop("h1"), state.gateways
    host = host_bird_config(state)
    assert host.peers and all(p.password == "s3cret!" for p in host.peers)


@needs_bird
@pytest.mark.parametrize("host_asn", ["same", "per-host"])
@pytest.mark.parametrize("tor", [False, True])
def test_trust_configs_parse(host_asn: str, tor: bool, tmp_path: Path) -> None:
    path = tmp_path / "gw.conf"
    path.write_text(render(gateway_config(routing_from_state(_state(host_asn, tor), "gw1"))))
    done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("password", ['a"b', "a\\b", "a\nb", "", "x" * 81, "é"])
def test_a_password_bird_cannot_quote_is_refused(password: str) -> None:
    with pytest.raises(ValidationError):
        FabricConfig(bgp_password=password)


def test_a_gateway_watch_holds_every_bound_port(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "watch.db")
    try:
        store.put(keys.gateway_key("gw1"), {"name": "gw1"})
        store.put(keys.neutron_key("ports", "p1"), _port("p1", "h1"))
        store.put(keys.neutron_key("ports", "p2"), _port("p2", ""))
        assert [p["id"] for p in snapshot(store, "gw1")["ports"]] == ["p1"]
        assert snapshot(store, "h2")["ports"] == []
    finally:
        store.close()
    key = keys.neutron_key("ports", "p1")
    moved = Event("put", key, 7, _port("p1", "h2"), _port("p1", "h1"))
    assert relevant_event(moved, "gw1", everything=True)["type"] == "put"  # type: ignore[index]
    assert relevant_event(moved, "h3") is None
    unbound = Event("put", key, 8, _port("p1", ""), _port("p1", "h2"))
    assert relevant_event(unbound, "gw1", everything=True)["type"] == "delete"  # type: ignore[index]


SHOW_PROTOCOLS = [
    (1002, "h:h1       BGP        ---        up     2026-12-02 10:00:00.000  Established"),
    (1006, "  BGP state:          Established"),
    (1006, "    Neighbor address: 172.16.0.1"),
    (1006, "  Channel ipv4"),
    (1006, "    Routes:         1 imported, 3 filtered, 1 exported, 1 preferred"),
    (1006, "  Channel ipv6"),
    (1006, "    Routes:         0 imported, 2 filtered, 1 exported, 0 preferred"),
]


def test_refused_routes_are_counted_per_session() -> None:
    (status,) = parse_protocols(SHOW_PROTOCOLS)
    assert status.filtered == 5
    assert status.routes["ipv4"]["imported"] == 1


def test_reflectors_in_one_as_pass_each_address_only_with_its_hosts_next_hop(
    tmp_path: Path,
) -> None:
    state = _state("same")
    state.fabric = {**state.fabric, "peering": "reflectors", "route_reflectors": ["172.16.9.1"]}
    config = gateway_config(routing_from_state(state, "gw1"))
    assert _filters(config)["rr:0"] == (
        "if net ~ [ 10.1.0.100/32, 10.1.0.5/32 ] && bgp_next_hop = 172.16.0.1 then accept; "
        "if net ~ [ 10.1.0.100/32, 10.1.0.6/32 ] && bgp_next_hop = 172.16.0.3 then accept; "
        "if net ~ [ 172.17.0.0/16+ ] then accept; reject;"
    )
    if shutil.which("bird"):
        path = tmp_path / "gw.conf"
        path.write_text(render(config))
        done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


class _Control:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def request(self, command: str) -> list[tuple[int, str]]:
        self.commands.append(command)
        return []


def test_origin_checked_sessions_are_reloaded_when_the_roas_change() -> None:
    """BIRD 2.0.12 checks a route's origin once: a ROA that comes later needs ``reload in``."""
    control = _Control()
    applier = GatewayBirdApplier(lambda text: True, control)  # type: ignore[arg-type]
    state = _state(tor=True)
    first = gateway_config(routing_from_state(state, "gw1"))
    applier.apply(GatewayBirdConfigure(config=first))
    assert control.commands == ["reload in 'p:tor'", "reload in 'p:tor6'"]
    applier.apply(GatewayBirdConfigure(config=first))  # nothing new: no reload
    assert len(control.commands) == 2
    state.ports["p4"] = _port("p4", "h2", "10.1.0.8")
    applier.apply(GatewayBirdConfigure(config=gateway_config(routing_from_state(state, "gw1"))))
    assert control.commands[2:] == ["reload in 'p:tor'", "reload in 'p:tor6'"]
