"""Which addresses are anycast on a host, who serves them, and what is announced."""

from __future__ import annotations

import pytest

from l3fabric.agent.anycast import Check, plan
from l3fabric.dataplane.links import tap_name

A = "aaaaaaaa-1111-2222-3333-444444444444"
B = "bbbbbbbb-1111-2222-3333-444444444444"
C = "cccccccc-1111-2222-3333-444444444444"
TCP = {"type": "tcp", "port": 80, "interval_s": 0.5, "timeout_s": 0.2, "rise": 2, "fall": 1}


def _port(pid: str, *ips: str, pairs: tuple[str, ...] = (), up: bool = True, host: str = "h1") -> dict:  # fmt: skip
    return {
        "id": pid,
        "fixed_ips": [{"subnet_id": "s", "ip_address": ip} for ip in ips],
        "allowed_address_pairs": [{"ip_address": p} for p in pairs],
        "admin_state_up": up,
        "binding:host_id": host,
    }


def _group(members: list[str], check: dict | None = TCP, address: str = "10.1.0.80") -> dict:
    return {"id": "g1", "address": address, "members": members, "health_check": check}


def _ports(*ports: dict) -> dict[str, dict]:
    return {p["id"]: p for p in ports}


ALL_READY = {tap_name(A), tap_name(B), tap_name(C)}


def test_native_members_are_probed_at_their_own_address_and_serve_when_healthy() -> None:
    ports = _ports(_port(A, "10.1.0.2", "2001:db8::2"), _port(B, "10.1.0.3"))
    result = plan("h1", ports, [_group([A, B])], ALL_READY, {("g1", A): True, ("g1", B): True})
    assert {k: t.address for k, t in result.probes.items()} == {
        ("g1", A): "10.1.0.2",
        ("g1", B): "10.1.0.3",
    }
    assert result.probes[("g1", A)].check == Check.from_api(TCP)
    assert result.serving == {"10.1.0.80/32": sorted([tap_name(A), tap_name(B)])}
    assert result.announce == {"10.1.0.80/32": 2}
    assert result.routes() == {"10.1.0.80/32": [(None, t, 1) for t in sorted([tap_name(A), tap_name(B)])]}  # fmt: skip


def test_unhealthy_or_unprobed_member_does_not_serve_and_none_left_means_no_route() -> None:
    ports = _ports(_port(A, "10.1.0.2"), _port(B, "10.1.0.3"))
    one = plan("h1", ports, [_group([A, B])], ALL_READY, {("g1", A): True, ("g1", B): False})
    assert one.announce == {"10.1.0.80/32": 1}
    # B has no verdict yet: it does not serve before its first good probe.
    assert plan("h1", ports, [_group([A, B])], ALL_READY, {("g1", A): True}).announce == {
        "10.1.0.80/32": 1
    }
    none = plan("h1", ports, [_group([A, B])], ALL_READY, {("g1", A): False})
    assert none.serving == {} and none.routes() == {} and none.announce == {}
    assert set(none.probes) == {("g1", A), ("g1", B)}  # still probed: it may come back


def test_presumed_members_serve_until_their_first_verdict() -> None:
    ports = _ports(_port(A, "10.1.0.2"), _port(B, "10.1.0.3"))
    presumed = {"10.1.0.80/32": [tap_name(A), tap_name(B)]}
    kept = plan("h1", ports, [_group([A, B])], ALL_READY, {("g1", B): False}, presumed)
    assert kept.serving == {"10.1.0.80/32": [tap_name(A)]}


def test_group_without_check_serves_every_ready_member_unprobed() -> None:
    ports = _ports(_port(A, "10.1.0.2"), _port(B, "10.1.0.3"))
    result = plan("h1", ports, [_group([A, B], check=None)], {tap_name(A)}, {})
    assert result.probes == {}
    assert result.announce == {"10.1.0.80/32": 1}


def test_only_local_up_ready_members_count() -> None:
    ports = _ports(
        _port(A, "10.1.0.2", up=False),
        _port(B, "10.1.0.3", host="h2"),
        _port(C, "10.1.0.4"),
    )
    health = {("g1", A): True, ("g1", B): True, ("g1", C): True}
    result = plan("h1", ports, [_group([A, B, C, "gone-port"])], ALL_READY - {tap_name(C)}, health)
    assert result.probes == {} and result.serving == {}
    # The local members may still send from the address, from their first packet.
    assert result.sources == {tap_name(A): ["10.1.0.80/32"], tap_name(C): ["10.1.0.80/32"]}


def test_ipv6_group_probes_the_members_ipv6_address() -> None:
    ports = _ports(_port(A, "10.1.0.2", "2001:db8::2"), _port(B, "10.1.0.3"))
    result = plan("h1", ports, [_group([A, B], address="2001:db8::80")], ALL_READY, {("g1", A): True})  # fmt: skip
    assert {k: t.address for k, t in result.probes.items()} == {("g1", A): "2001:db8::2"}
    assert result.announce == {"2001:db8::80/128": 1}
    assert any("has no IPv6 address" in e for e in result.errors)


def test_allowed_address_pairs_of_host_length_are_anycast_without_probe() -> None:
    ports = _ports(
        _port(A, "10.1.0.2", pairs=("10.1.0.100", "10.1.0.0/28", "10.1.0.2", "2001:db8::64/128")),
        _port(B, "10.1.0.3", pairs=("10.1.0.100/32",)),
        _port(C, "10.1.0.4", pairs=("10.1.0.100",)),  # not ready: no share
    )
    result = plan("h1", ports, [], {tap_name(A), tap_name(B)}, {})
    assert result.probes == {}
    assert result.announce == {"10.1.0.100/32": 2, "2001:db8::64/128": 1}
    assert result.sources == {}  # pairs are allowed sources already


def test_a_local_endpoint_address_is_never_anycast() -> None:
    # The keepalived pattern: one port holds the VIP as fixed IP, another allows it.
    ports = _ports(_port(A, "10.1.0.100"), _port(B, "10.1.0.3", pairs=("10.1.0.100",)))
    assert plan("h1", ports, [], ALL_READY, {}).serving == {}


def test_native_and_pair_holders_of_one_address_share_it_per_member() -> None:
    ports = _ports(_port(A, "10.1.0.2"), _port(B, "10.1.0.3", pairs=("10.1.0.80",)))
    result = plan("h1", ports, [_group([A, B])], ALL_READY, {("g1", A): True, ("g1", B): False})
    assert result.serving == {"10.1.0.80/32": sorted([tap_name(A), tap_name(B)])}


def test_bad_check_is_an_error_for_that_group_only() -> None:
    ports = _ports(_port(A, "10.1.0.2", pairs=("10.1.0.100",)))
    result = plan("h1", ports, [_group([A], check={"type": "tcp"})], ALL_READY, {})
    assert result.errors == ["anycast group g1: a tcp health check needs a port"]
    assert result.announce == {"10.1.0.100/32": 1}


@pytest.mark.parametrize(
    "spec",
    [{"type": "udp", "port": 1}, {"type": "http"}, {"type": "icmp", "rise": 0}, {"port": 80}],
)
def test_malformed_checks_are_refused(spec: dict) -> None:
    with pytest.raises(ValueError):
        Check.from_api(spec)
