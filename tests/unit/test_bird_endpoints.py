"""A host's endpoint announcements: static routes in its BIRD config, exported to peers only."""

from __future__ import annotations

import re
import shutil
import subprocess
from ipaddress import ip_address

import pytest

from l3fabric.agent.bird import host_bird_config
from l3fabric.client import HostState
from l3fabric.routing.bird_config import BgpPeer, BirdConfig, render

HOST = {"name": "h1", "router_id": "172.17.0.2", "address": "172.16.0.2", "asn": None, "peers": None}  # fmt: skip
GW = {"name": "gw", "router_id": "172.17.0.1", "asn": None, "fabric_addresses": ["172.16.0.0"]}
STATE = HostState(fabric={"asn": 65000}, host=HOST, gateways={"gw": GW})


def _protocol(text: str, name: str) -> list[str]:
    match = re.search(rf"^protocol static {name} \{{\n(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    assert match, f"no protocol {name} in:\n{text}"
    return match.group(1).splitlines()


def test_each_endpoint_is_a_blackhole_of_its_family_protocol_sorted() -> None:
    text = render(
        host_bird_config(STATE, endpoints={"10.1.0.9/32", "2001:db8::5/128", "10.1.0.10/32"})
    )
    assert _protocol(text, "endpoints4") == [
        "\tipv4;",
        "\troute 10.1.0.10/32 blackhole;",
        "\troute 10.1.0.9/32 blackhole;",
    ]
    assert _protocol(text, "endpoints6") == ["\tipv6;", "\troute 2001:db8::5/128 blackhole;"]


def test_same_set_same_text_and_none_no_protocol() -> None:
    # A restarted agent renders the same text from the same routes: no configure.
    a = render(host_bird_config(STATE, endpoints=["10.1.0.2/32", "10.1.0.1/32"]))
    b = render(host_bird_config(STATE, endpoints=("10.1.0.1/32", "10.1.0.2/32")))
    assert a == b
    assert "protocol static endpoints" not in render(host_bird_config(STATE))


@pytest.mark.parametrize(
    "prefix",
    ["10.1.0.0/24", "10.1.0.1", "10.1.0.01/32", "2001:DB8::1/128", "2001:db8::1/32", "x/32"],
)
def test_what_is_not_one_canonical_host_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="must be a /32 or /128"):
        BirdConfig(ip_address("10.0.0.1"), 65001, endpoint_routes=(prefix,))


def test_an_endpoint_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        BirdConfig(ip_address("10.0.0.1"), 65001, endpoint_routes=("10.1.0.1/32", "10.1.0.1/32"))


@pytest.mark.skipif(shutil.which("bird") is None, reason="bird not installed")
def test_bird_parses_10000_endpoints(tmp_path) -> None:
    endpoints = [f"10.1.{i // 256}.{i % 256}/32" for i in range(10_000)] + ["2001:db8::1/128"]
    path = tmp_path / "bird.conf"
    config = BirdConfig(
        ip_address("10.0.0.1"),
        65001,
        peers=(BgpPeer("gw", ip_address("10.0.0.2"), 65000),),
        endpoint_routes=tuple(endpoints),
    )
    path.write_text(render(config))
    done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=10)  # fmt: skip
    assert done.returncode == 0, done.stderr
