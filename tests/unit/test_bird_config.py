"""BIRD config rendering: validation of the model, and BIRD itself parses the output."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from ipaddress import ip_address, ip_network

import pytest

from l3fabric.routing.bird_config import (
    SESSION_ROLES,
    BgpPeer,
    BirdConfig,
    Policy,
    StaticRoute,
    protocol_name,
    render,
)

needs_bird = pytest.mark.skipif(shutil.which("bird") is None, reason="bird not installed")


def full_config() -> BirdConfig:
    return BirdConfig(
        router_id=ip_address("10.0.0.1"),
        local_as=4200000001,
        peers=(
            BgpPeer("gw", ip_address("10.0.0.2"), 65000, bfd=True, password="s3cret"),
            BgpPeer("gw6", ip_address("2001:db8::2"), 65000, export_policy=Policy.parse({"endpoints": ["2001:db8::/32"]})),
            BgpPeer(
                "upstream",
                ip_address("192.0.2.9"),
                64500,
                multihop=2,
                next_hop_self=True,
                import_policy=Policy("default-only"),
                export_policy=Policy.parse({"prefixes": ["203.0.113.0/24", "10.0.0.0/8+", "2001:db8::/32{48,64}"]}),
            ),
            BgpPeer("rr", ip_address("10.0.0.3"), 4200000001, rr_client=True, passive=True, export_policy=Policy("none")),
        ),
        static_routes=(StaticRoute(ip_network("0.0.0.0/0"), ip_address("192.0.2.9")), StaticRoute(ip_network("203.0.113.0/24"))),
        graceful_restart=False,
    )  # fmt: skip


@needs_bird
@pytest.mark.parametrize("config", [full_config(), BirdConfig(ip_address("10.0.0.9"), 65001)])
def test_bird_parses_the_rendering(tmp_path, config) -> None:
    path = tmp_path / "bird.conf"
    path.write_text(render(config))
    done = subprocess.run(["bird", "-p", "-c", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_protocol_names_are_quoted_role_and_name() -> None:
    text = render(full_config())
    # Quoted: never a keyword (``gw``) nor a built-in protocol's name.
    assert "protocol bgp 'p:gw' {" in text
    assert "protocol bgp gw" not in text
    assert protocol_name("h", "tor-1.rack2") == "h:tor-1.rack2"


def test_protocol_names_are_injective_and_fit_birds_64_characters() -> None:
    # Every name of up to 3 characters from a hostile alphabet, in every role.
    names = ["".join(c) for n in (1, 2, 3) for c in itertools.product("a.-_:0", repeat=n)]
    names = [n for n in names if all(n.split(":"))]  # parts joined by single ":"
    # Long ones: cut, sharing their first 62 characters, or cut exactly where they differ.
    names += ["x" * 62 + c for c in "ab.-_"] + [
        "x" * 61,
        "x" * 62,
        "x" * 63 + ":0",
        "x" * 63 + ":1",
    ]
    pairs = [(role, name) for role in SESSION_ROLES for name in names]
    symbols = [protocol_name(role, name) for role, name in pairs]  # type: ignore[arg-type]
    assert len(set(symbols)) == len(pairs)
    assert all(len(s) <= 64 and re.fullmatch(r"[A-Za-z0-9_.:-]+", s) for s in symbols)
    long = protocol_name("h", "x" * 62 + "a")
    assert long.startswith("h:xxx") and len(long) == 64 and re.search(r"::[0-9a-f]{32}$", long)


@pytest.mark.parametrize(("role", "name"), [("x", "a"), ("h", ""), ("h", "a b"), ("h", "a'b"), ("g", "gw::0"), ("h", ":a")])  # fmt: skip
def test_names_bird_cannot_take_are_refused(role: str, name: str) -> None:
    with pytest.raises(ValueError, match="session"):
        BgpPeer(name, ip_address("10.0.0.2"), 65000, role=role)  # type: ignore[arg-type]


def test_host_export_is_endpoints_only_and_families_split() -> None:
    text = render(
        BirdConfig(
            ip_address("10.0.0.1"),
            4200000001,
            peers=(BgpPeer("gw", ip_address("10.0.0.2"), 65000),),
        )
    )
    export = next(line for line in text.splitlines() if "export filter" in line)
    assert '(source = RTS_INHERIT && proto = "endpoints4")' in export
    assert '(source = RTS_STATIC && proto = "anycast4")' in export and "RTS_BGP" not in export
    # Nothing is learned from the main table (a host learns its endpoints from their own).
    assert "learn;" not in text and text.count("import none;") == 2
    prefixes = render(full_config()).split("protocol bgp 'p:upstream'")[1]
    # An IPv4 session carries only the IPv4 patterns.
    assert "2001:db8::/32{48,64}" not in prefixes and "10.0.0.0/8+" in prefixes


def test_graceful_restart_and_kernel_options() -> None:
    text = render(
        BirdConfig(
            ip_address("10.0.0.1"), 65001, peers=(BgpPeer("a", ip_address("10.0.0.2"), 65002),)
        )
    )
    assert "netlink rx buffer 8388608;" in text and "merge paths on;" in text
    assert "graceful restart on;" in text and "persist;" in text
    assert "graceful restart on;" not in render(full_config())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BirdConfig(ip_address("2001:db8::1"), 65000), "router id"),
        (lambda: BirdConfig(ip_address("10.0.0.1"), 0), "AS number"),
        (lambda: BgpPeer("a", ip_address("10.0.0.300"), 65000), "does not appear"),
        (lambda: BgpPeer("a", ip_address("10.0.0.2"), 65000, password='x"; }'), "quotes"),
        (lambda: Policy("everything"), "unknown policy"),
        (lambda: Policy("all", ("10.0.0.0/8",)), "takes no prefixes"),
        (lambda: Policy("prefixes", ("10.0.0.1/8",)), "host bits"),
        (lambda: Policy.parse({"prefixes": "10.0.0.0/8"}), "bad policy"),
        (
            lambda: BirdConfig(ip_address("10.0.0.1"), 65000, peers=(BgpPeer("a", ip_address("10.0.0.2"), 1), BgpPeer("a", ip_address("10.0.0.3"), 1))),
            "collide",
        ),
        (lambda: StaticRoute(ip_network("10.0.0.0/8"), ip_address("2001:db8::1")), "another family"),
        (lambda: StaticRoute(ip_network("10.0.0.0/8"), bfd=True), "BFD needs a next hop"),
        (lambda: BirdConfig(ip_address("10.0.0.1"), 65000, peer_routes=(StaticRoute(ip_network("10.0.0.0/8"), ip_address("10.0.0.2"), bfd=True),)), "kernel table"),
        (lambda: BirdConfig(ip_address("10.0.0.1"), 65000, peer_table=254), "peer table"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_with_a_clear_message(make, message) -> None:
    with pytest.raises(ValueError, match=message):
        make()
