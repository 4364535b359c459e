"""Strict address parsing, the renderers' typed guards, and what agents admit into their cache."""

from __future__ import annotations

import socket
from ipaddress import ip_address, ip_network

import pytest

from l3fabric import addresses
from l3fabric.client import HostState
from l3fabric.routing.bird_config import BgpPeer, BirdConfig, StaticRoute
from tests.unit.test_api_addresses import INJECTION

HOSTILE = [
    "fe80::1%lo",
    "2001:db8:1::5%dup",
    "10.0.0.1 ",
    " 10.0.0.1",
    "10.0.0.1\n",
    "\t2001:db8::1",
    '10.0.0.1"',
    '2001:db8:1::9%x"; }',
    "10.0.0.1;",
    "",
    INJECTION,
]


@pytest.mark.parametrize("text", HOSTILE)
def test_parsers_refuse_zone_ids_spaces_and_quotes(text: str) -> None:
    for parse in (
        addresses.parse_address,
        addresses.parse_network,
        addresses.address_text,
        addresses.prefix_text,
        addresses.address_or_network_text,
        addresses.peer_address_text,
    ):
        with pytest.raises(ValueError):
            parse(text)
    assert not addresses.is_canonical_address(text)
    assert not addresses.is_canonical_network(text)


def test_networks_with_zone_ids_are_refused() -> None:
    for text in ("fe80::%x/64", "2001:db8:1::5%dup/128", "10.0.0.0/24 "):
        with pytest.raises(ValueError):
            addresses.prefix_text(text)


@pytest.mark.parametrize("value", [167772161, b"\n\x00\x00\x01", None])
def test_only_text_is_parsed(value: object) -> None:
    # ipaddress itself takes integers and packed bytes.
    with pytest.raises(ValueError, match="must be a string"):
        addresses.parse_address(value)


def test_one_canonical_text() -> None:
    assert addresses.address_text("2001:DB8:1::0005") == "2001:db8:1::5"
    assert addresses.prefix_text("10.1.2.3/255.255.0.0") == "10.1.0.0/16"
    assert addresses.network_text("2001:DB8::/32") == "2001:db8::/32"
    assert addresses.address_or_network_text("10.0.0.0/8") == "10.0.0.0/8"
    with pytest.raises(ValueError):
        addresses.network_text("10.0.0.1/8")  # host bits
    with pytest.raises(ValueError, match="IPv4"):
        addresses.ipv4_address_text("2001:db8::1")
    assert addresses.is_canonical_address("10.0.0.1")
    assert addresses.is_canonical_address("2001:db8::1")
    for text in ("010.0.0.1", "2001:DB8::1", "2001:db8:0::1", "10.0.0.1/32"):
        assert not addresses.is_canonical_address(text)
    assert addresses.is_canonical_network("10.0.0.0/8")
    assert not addresses.is_canonical_network("10.0.0.1/8")


@pytest.mark.parametrize("text", ["::", "0.0.0.0", "fe80::1", "ff02::1", "224.0.0.5", "255.255.255.255"])  # fmt: skip
def test_bgp_neighbours_are_unicast(text: str) -> None:
    # BIRD refuses "neighbor ::" and a link-local neighbour without an interface.
    with pytest.raises(ValueError, match="BGP needs a unicast"):
        addresses.peer_address_text(text)
    assert addresses.peer_address_text("2001:db8::1") == "2001:db8::1"


def test_renderers_take_typed_addresses_without_zone_ids() -> None:
    with pytest.raises(TypeError):
        BgpPeer("a", "10.0.0.2", 65000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zone ID"):
        BgpPeer("a", ip_address("fe80::1%lo"), 65000)
    with pytest.raises(ValueError, match="zone ID"):
        BgpPeer("a", ip_address("2001:db8::2"), 65000, source_address=ip_address("2001:db8::1%x"))
    with pytest.raises(TypeError):
        BirdConfig("10.0.0.1", 65000)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        StaticRoute("10.0.0.0/8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zone ID"):
        StaticRoute(ip_network("fe80::%x/64"))
    with pytest.raises(ValueError, match="zone ID"):
        StaticRoute(ip_network("2001:db8::/32"), ip_address("2001:db8::1%x"))


@pytest.mark.parametrize("text", ["a\tb", "a\x00b", "a\rb", 'a"b', "a\\b", "a\x7fb"])
def test_text_in_bird_strings_has_no_quotes_or_control_characters(text: str) -> None:
    with pytest.raises(ValueError, match="control characters"):
        BgpPeer("a", ip_address("10.0.0.2"), 65000, password=text)


# What agents admit ---------------------------------------------------------------


def _snapshot(**overrides: object) -> dict:
    snap: dict = {
        "revision": 1,
        "fabric": {"peering": "reflectors", "route_reflectors": ["10.0.0.5", "fe80::1%lo"]},
        "host": {"name": "h1", "router_id": "10.0.0.11", "address": INJECTION},
        "gateways": [
            {"name": "gw", "router_id": "10.0.0.1", "fabric_addresses": ["10.0.0.1"]},
            {"name": "bad", "router_id": "10.0.0.2", "fabric_addresses": ["10.0.0.2%x"]},
            {"name": "nat", "router_id": "10.0.0.3", "fabric_addresses": ["10.0.0.3"],
             "snat_address": "192.0.2.1 "},
            {"name": "infra", "router_id": "10.0.0.4", "fabric_addresses": ["10.0.0.4"],
             "infrastructure": ["fe80::%x/64"]},
        ],
        "hosts": [{"name": "h2", "router_id": "10.0.0.12", "address": "2001:db8::12"}],
        "networks": [],
        "subnets": [
            {"id": "s1", "cidr": "2001:db8:1::/64", "gateway_ip": "2001:db8:1::1"},
            {"id": "s2", "cidr": "2001:db8:2::/64", "gateway_ip": "2001:db8:2::1%x"},
        ],
        "ports": [
            {"id": "p1", "fixed_ips": [{"ip_address": "2001:db8:1::5"}]},
            {"id": "p2", "fixed_ips": [{"ip_address": "2001:db8:1::5%dup"}]},
            {"id": "p3", "fixed_ips": [], "allowed_address_pairs": [{"ip_address": "10.0.0.9\""}]},
        ],
        "anycast": [{"id": "a1", "address": "10.1.0.80"}, {"id": "a2", "address": "10.1.0.81 "}],
    }  # fmt: skip
    snap.update(overrides)
    return snap


def test_agents_leave_out_cached_records_with_bad_addresses() -> None:
    state = HostState.from_snapshot(_snapshot())
    assert state.host is None  # its address is the injection
    assert list(state.gateways) == ["gw"]
    assert list(state.hosts) == ["h2"]
    assert list(state.subnets) == ["s1"]
    assert list(state.ports) == ["p1"]
    assert list(state.anycast) == ["a1"]
    assert state.fabric["route_reflectors"] == ["10.0.0.5"]


def test_a_bad_update_of_a_cached_record_removes_it() -> None:
    state = HostState.from_snapshot(_snapshot())
    bad = {"id": "p1", "fixed_ips": [{"ip_address": "2001:db8:1::5%x"}]}
    assert state.apply("h1", {"type": "put", "kind": "port", "id": "p1", "object": bad})
    assert state.ports == {}
    fabric = {"route_reflectors": ["10.0.0.5\n"]}
    state.apply("h1", {"type": "put", "kind": "fabric", "id": "fabric", "object": fabric})
    assert state.fabric["route_reflectors"] == []


@pytest.mark.parametrize(
    "prefix",
    ["10.1.0.5/32", "2001:db8::5/128", "::ffff:1.2.3.4/128", "::ffff:102:304/128", "10.1.0.0/24"],
)
def test_host_network_is_ip_network(prefix) -> None:
    found = addresses.host_network(prefix)
    assert found == ip_network(prefix) and str(found) == str(ip_network(prefix))


@pytest.mark.parametrize("prefix", ["10.1.0.5/33", "010.1.0.5/32", "10.1.0.5/24", "tap0/32"])
def test_host_network_refuses_what_ip_network_refuses(prefix) -> None:
    with pytest.raises(ValueError):
        addresses.host_network(prefix)


@pytest.mark.parametrize(
    ("prefix", "version", "parsed"),
    [
        ("10.1.0.5/32", 4, True),
        ("2001:db8::5/128", 6, True),
        ("::ffff:1.2.3.4/128", 6, True),  # glibc's spelling of a mapped address
        ("::ffff:102:304/128", 6, True),  # Python's
        ("2001:0db8::5/128", None, True),  # a host prefix, not in canonical form
        ("10.1.0.5/24", None, False),
        ("2001:db8::5/32", None, False),
        ("10.1.0.5", None, False),
        ("010.1.0.5/32", None, False),
        ("tap0/32", None, False),
    ],
)
def test_the_one_fast_host_prefix_parse(prefix: str, version: int | None, parsed: bool) -> None:
    assert addresses.host_prefix_version(prefix) == version
    if not parsed:
        with pytest.raises(ValueError):
            addresses.host_prefix_packed(prefix)
        return
    network = ip_network(prefix)
    family = socket.AF_INET if network.version == 4 else socket.AF_INET6
    assert addresses.host_prefix_packed(prefix) == (family, network.network_address.packed)
