"""The host agent's policy: which routes, which sources, which port statuses (plan.desired_state)."""

from __future__ import annotations

import pytest

from l3fabric.agent.desired import host_prefix
from l3fabric.agent.observed import Observed, TapState
from l3fabric.agent.plan import DesiredHost, desired_state, statuses
from l3fabric.client import HostState
from l3fabric.dataplane.links import LinkInfo, tap_name

from .agent_ports import A, B, port


def compute(ports: list[dict], existing_taps: set[str]) -> DesiredHost:
    taps = {t: TapState(LinkInfo(i, 0, {})) for i, t in enumerate(sorted(existing_taps))}
    return desired_state("h1", HostState(ports={p["id"]: p for p in ports}), Observed(taps=taps))


def test_host_prefix_both_families() -> None:
    assert host_prefix("10.1.0.5") == "10.1.0.5/32"
    assert host_prefix("2001:db8::5") == "2001:db8::5/128"


def test_routes_only_for_plugged_taps() -> None:
    ports = [port(A, "10.1.0.2", "2001:db8::2"), port(B, "10.1.0.3")]
    desired = compute(ports, existing_taps={tap_name(A)})
    assert desired.routes == {"10.1.0.2/32": tap_name(A), "2001:db8::2/128": tap_name(A)}
    # Both ports are guarded, plugged or not: a tap is safe from its first packet.
    assert set(desired.guard) == {tap_name(A), tap_name(B)}


def test_admin_down_port_is_not_routed_and_reports_down() -> None:
    desired = compute([port(A, "10.1.0.2", up=False)], existing_taps={tap_name(A)})
    assert desired.routes == {}
    assert statuses(desired, set()) == {A: "DOWN"}


def test_allowed_sources_are_fixed_ips_and_address_pairs() -> None:
    one = port(A, "10.1.0.2", pairs=("10.1.0.100", "10.9.0.0/24", "not-an-ip"))
    desired = compute([one], existing_taps=set())
    assert desired.guard[tap_name(A)] == ("10.1.0.2/32", "10.1.0.100/32", "10.9.0.0/24")
    # Address pairs are sources only: they are not routed here.
    assert desired.routes == {}


def test_status_active_only_when_programmed() -> None:
    desired = compute([port(A, "10.1.0.2"), port(B, "10.1.0.3")], {tap_name(A), tap_name(B)})
    # B's tap could not be made ready (its guard or preparation failed).
    assert statuses(desired, {tap_name(B)}) == {A: "ACTIVE", B: "DOWN"}
    assert statuses(compute([port(A, "10.1.0.2")], set()), set()) == {A: "DOWN"}


def test_only_ipv6_ports_need_the_link_local_gateway() -> None:
    taps = {tap_name(A), tap_name(B)}
    desired = compute([port(A, "10.1.0.2", "2001:db8::2"), port(B, "10.1.0.3")], taps)
    assert desired.taps == {tap_name(A): True, tap_name(B): False}


def test_host_prefix_refuses_what_is_not_one_address() -> None:
    for bad in ("10.1.0", "010.1.0.5", "10.1.0.256", "10.1.0.5/32", "", "2001:db8::g"):
        with pytest.raises(ValueError):
            host_prefix(bad)


def test_port_security_off_lets_the_port_send_from_any_source() -> None:
    off = {**port(A, "10.1.0.2"), "port_security_enabled": False}
    desired = compute([off, port(B, "10.1.0.3")], existing_taps={tap_name(A), tap_name(B)})
    # Neutron: no anti-spoofing for it; every other port keeps its own sources.
    assert desired.guard[tap_name(A)] == ("0.0.0.0/0", "::/0")
    assert desired.guard[tap_name(B)] == ("10.1.0.3/32",)
    assert desired.routes["10.1.0.2/32"] == tap_name(A)  # still routed to its fixed IP
