"""What a booted VM's interfaces look like (the cloud-image configuration)."""

from __future__ import annotations

import pytest

from l3fabric.dataplane.links import tap_name
from l3fabric.lab.boot import anycast_addresses, vm_lines
from l3fabric.lab.errors import LabError


def port(*ips: str) -> dict:
    return {"fixed_ips": [{"ip_address": ip} for ip in ips]}


def test_single_interface_vm() -> None:
    lines = vm_lines([port("10.1.0.5", "2001:db8:1::5")])
    assert "addr add 10.1.0.5/32 dev eth0" in lines
    assert "addr add 2001:db8:1::5/128 dev eth0 nodad" in lines
    assert "route add default via 169.254.1.1 dev eth0 onlink" in lines
    assert not any(line.startswith("rule") for line in lines)


def test_two_interfaces_get_source_routing() -> None:
    lines = vm_lines([port("10.1.0.5"), port("203.0.113.7")])
    assert [x for x in lines if x.startswith("route add default") and "table" not in x] == [
        "route add default via 169.254.1.1 dev eth0 onlink"
    ]
    assert "route add default via 169.254.1.1 dev eth1 onlink table 101" in lines
    assert "rule add from 203.0.113.7 table 101" in lines
    assert "rule add from 10.1.0.5 table 100" in lines


def test_tap_name_fits_the_kernel() -> None:
    assert tap_name("0123456789abcdef-0000") == "tap0123456789a"
    assert len(tap_name("0123456789abcdef")) <= 15


def test_anycast_addresses_go_on_loopback() -> None:
    lines = vm_lines([port("10.1.0.5")], anycast_addresses(["203.0.113.80", "2001:db8:100::80"]))
    assert "addr add 203.0.113.80/32 dev lo" in lines
    assert "addr add 2001:db8:100::80/128 dev lo" in lines
    # Not on eth0: the VM answers for them but does not claim them on the wire.
    assert not any("203.0.113.80" in line and "eth0" in line for line in lines)


def test_bad_anycast_addresses_are_named() -> None:
    with pytest.raises(LabError, match=r"'10\.0\.0\.300'"):
        anycast_addresses(["10.0.0.300"])
    with pytest.raises(LabError, match="given twice"):
        anycast_addresses(["10.0.0.1", "10.0.0.1"])
