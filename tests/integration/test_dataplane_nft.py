"""Anti-spoofing with real nftables: spoofed sources never arrive, own sources do."""

from __future__ import annotations

import json

import pytest

from l3fabric.dataplane.links import Links
from l3fabric.dataplane.nft import AntiSpoofing, NftError
from l3fabric.dataplane.routes import EndpointRoutes, ensure_link_local_gateway

from .conftest import in_ns, ip

TAP = "tap0123456789a"


def _drops(host: str) -> int:
    listing = json.loads(
        in_ns(host, "nft", "-j", "list", "chain", "inet", "l3fabric", "prerouting").stdout
    )
    for item in listing["nftables"]:
        rule = item.get("rule")
        if rule and any("drop" in e for e in rule["expr"]):
            return next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
    raise AssertionError("no drop rule")


@pytest.fixture
def wired(netns, veth):
    host, vm = netns("host"), netns("vm")
    veth(host, TAP, vm, "eth0")
    ip("-n", host, "addr", "add", "10.0.0.1/32", "dev", "lo")
    for addr in ("10.1.0.5/32", "10.1.0.6/32", "10.7.0.9/32"):
        ip("-n", vm, "addr", "add", addr, "dev", "eth0")
    ip("-n", vm, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    ip("-n", vm, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    with Links(host) as links:
        links.ensure_host()
        links.ensure_tap(TAP)
    ensure_link_local_gateway(host)
    with EndpointRoutes(host) as routes:
        routes.converge({"10.1.0.5/32": TAP, "10.7.0.9/32": TAP})
    return host, vm


def test_only_allowed_sources_pass(wired) -> None:
    host, vm = wired
    table = AntiSpoofing(host)
    assert table.apply({TAP: ["10.1.0.5/32", "10.7.0.0/24", "2001:db8::5/128"]}) is True
    in_ns(vm, "ping", "-c1", "-W2", "-I", "10.1.0.5", "10.0.0.1")
    in_ns(vm, "ping", "-c1", "-W2", "-I", "10.7.0.9", "10.0.0.1")  # an allowed address pair
    before = _drops(host)
    assert (
        in_ns(vm, "ping", "-c1", "-W1", "-I", "10.1.0.6", "10.0.0.1", check=False).returncode != 0
    )
    assert _drops(host) == before + 1

    # The port loses its pair: one transaction, and that source is now dropped.
    assert table.apply({TAP: ["10.1.0.5/32"]}) is True
    assert (
        in_ns(vm, "ping", "-c1", "-W1", "-I", "10.7.0.9", "10.0.0.1", check=False).returncode != 0
    )


def test_unchanged_state_runs_no_transaction_even_after_restart(wired) -> None:
    host, _ = wired
    state = {TAP: ["10.1.0.5/32"], "tapother000000": ["10.1.0.9/32", "2001:db8::9/128"]}
    assert AntiSpoofing(host).apply(state) is True
    handle = in_ns(host, "nft", "-a", "list", "table", "inet", "l3fabric").stdout
    # A new instance (an agent restart) finds the same table and leaves it.
    assert AntiSpoofing(host).apply(state) is False
    assert in_ns(host, "nft", "-a", "list", "table", "inet", "l3fabric").stdout == handle


def test_nft_errors_carry_nfts_message(wired, monkeypatch) -> None:
    host, _ = wired
    table = AntiSpoofing(host)
    monkeypatch.setattr(
        "l3fabric.dataplane.nft.render", lambda *_: "table inet l3fabric { bogus }\n"
    )
    with pytest.raises(NftError, match="syntax error"):
        table.apply({}, force=True)
