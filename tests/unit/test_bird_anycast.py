"""A host's anycast announcements in its BIRD config: tagged, exported to peers, never to the kernel."""

from __future__ import annotations

import re
import shutil
import subprocess
from ipaddress import ip_address, ip_network

import pytest

from l3fabric.agent.bird import host_bird_config
from l3fabric.client import HostState
from l3fabric.routing import anycast_marker
from l3fabric.routing.bird_config import AnycastRoute, BgpPeer, BirdConfig, render

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="bird not installed")

HOST = {"name": "h1", "router_id": "172.17.0.2", "address": "172.16.0.2", "asn": None, "peers": None}  # fmt: skip
GW = {"name": "gw", "router_id": "172.17.0.1", "asn": None, "fabric_addresses": ["172.16.0.0"]}


def _config(anycast: dict[str, int] | None = None) -> BirdConfig:
    return host_bird_config(
        HostState(fabric={"asn": 65000}, host=HOST, gateways={"gw": GW}), anycast
    )


def _protocol(text: str, name: str) -> str:
    match = re.search(rf"^protocol static {name} \{{\n(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    assert match, f"no protocol {name} in:\n{text}"
    return match.group(1)


def test_each_prefix_is_a_blackhole_tagged_with_its_healthy_members() -> None:
    text = render(_config({"10.1.0.80/32": 2, "10.1.0.81/32": 1, "2001:db8::80/128": 3}))
    admin, kind = anycast_marker.ANYCAST_ADMIN, anycast_marker.HEALTHY_MEMBERS
    assert _protocol(text, "anycast4").split("\n")[1:3] == [
        f"\troute 10.1.0.80/32 blackhole {{ bgp_large_community.add(({admin}, {kind}, 2)); }};",
        f"\troute 10.1.0.81/32 blackhole {{ bgp_large_community.add(({admin}, {kind}, 1)); }};",
    ]
    assert "route 2001:db8::80/128 blackhole" in _protocol(text, "anycast6")
    assert "(4200000000, 1, 3)" in _protocol(text, "anycast6")


def test_no_anycast_no_protocol() -> None:
    assert "anycast4 {" not in render(_config())


def test_peers_get_the_announcements_and_the_kernel_does_not() -> None:
    text = render(_config())
    kernel = re.findall(r"^\t\texport where (.*);$", text, re.MULTILINE)
    assert kernel == [
        'source = RTS_BGP || (source = RTS_STATIC && proto != "anycast4")',
        'source = RTS_BGP || (source = RTS_STATIC && proto != "anycast6")',
    ]
    export = re.search(r"export filter \{ (.*) \};", text)
    assert export and export.group(1) == (
        'if ((source = RTS_INHERIT && proto = "endpoints4")'
        ' || (source = RTS_STATIC && proto = "anycast4")) then accept; reject;'
    )


@pytest.mark.parametrize(
    ("prefix", "healthy", "message"),
    [
        (ip_network("10.1.0.0/24"), 1, "must be a /32 or /128"),
        (ip_network("10.1.0.80/32"), 0, "only with a healthy member"),
        ("10.1.0.80/32", 1, "must be an ipaddress network"),
        (ip_network("fe80::1%x/128"), 1, "zone IDs are not allowed"),
    ],
)
def test_bad_announcements_are_refused(prefix: object, healthy: int, message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        AnycastRoute(prefix, healthy)  # type: ignore[arg-type]


@needs_bird
def test_bird_parses_announcements(tmp_path) -> None:
    config = BirdConfig(
        router_id=ip_address("10.0.0.1"),
        local_as=65001,
        peers=(BgpPeer("gw", ip_address("10.0.0.2"), 65000),),
        anycast_routes=(
            AnycastRoute(ip_network("10.1.0.80/32"), 2),
            AnycastRoute(ip_network("2001:db8::80/128"), 1),
        ),
    )
    path = tmp_path / "bird.conf"
    path.write_text(render(config))
    done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True, timeout=10)  # fmt: skip
    assert done.returncode == 0, done.stderr
