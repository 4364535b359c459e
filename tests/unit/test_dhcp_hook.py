"""The lab VM's DHCP client hook (lab/dhcp_hook.py): leases of dhclient and udhcpc."""

from __future__ import annotations

from pathlib import Path

import pytest

from l3fabric.lab import dhcp_hook
from l3fabric.lab.dhcp_hook import lease_v4, rfc3442_routes, udhcpc_routes, v4_commands

ROUTES = [
    ("169.254.1.1/32", "0.0.0.0"),
    ("198.51.100.0/24", "10.1.0.9"),
    ("0.0.0.0/0", "169.254.1.1"),
]


def test_dhclient_option_121_is_decoded() -> None:
    text = "32 169 254 1 1 0 0 0 0 24 198 51 100 10 1 0 9 0 169 254 1 1"
    assert rfc3442_routes(text) == ROUTES


def test_truncated_option_121_is_refused() -> None:
    with pytest.raises(ValueError):
        rfc3442_routes("32 169 254 1 1 0 0 0")


def test_udhcpc_staticroutes() -> None:
    text = "169.254.1.1/32 0.0.0.0 198.51.100.0/24 10.1.0.9 0.0.0.0/0 169.254.1.1"
    assert udhcpc_routes(text) == ROUTES


def test_both_clients_give_the_same_lease() -> None:
    dhclient = lease_v4(
        {
            "new_ip_address": "10.1.0.5",
            "new_subnet_mask": "255.255.255.0",
            "new_rfc3442_classless_static_routes": "32 169 254 1 1 0 0 0 0 24 198 51 100 10 1 0 9 0 169 254 1 1",
            "new_domain_name_servers": "192.0.2.53",
            "new_interface_mtu": "1400",
            "new_host_name": "host-10-1-0-5",
        }
    )
    udhcpc = lease_v4(
        {
            "ip": "10.1.0.5",
            "subnet": "255.255.255.0",
            "staticroutes": "169.254.1.1/32 0.0.0.0 198.51.100.0/24 10.1.0.9 0.0.0.0/0 169.254.1.1",
            "dns": "192.0.2.53",
            "mtu": "1400",
            "hostname": "host-10-1-0-5",
        }
    )
    assert dhclient == udhcpc
    assert dhclient == {
        "address": "10.1.0.5/24",
        "routes": ROUTES,
        "dns": ["192.0.2.53"],
        "mtu": 1400,
        "hostname": "host-10-1-0-5",
    }


def test_router_only_lease_routes_on_link_then_default() -> None:
    lease = lease_v4({"ip": "10.1.0.5", "mask": "24", "router": "169.254.1.1"})
    assert lease is not None
    assert v4_commands("eth0", lease) == [
        "addr replace 10.1.0.5/24 dev eth0",
        "route replace 169.254.1.1/32 dev eth0 scope link",
        "route replace 0.0.0.0/0 via 169.254.1.1 dev eth0",
    ]


def test_dns_goes_only_to_the_given_resolv_conf(tmp_path: Path, monkeypatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(dhcp_hook, "_run", ran.extend)
    resolv, info = tmp_path / "resolv.conf", tmp_path / "eth0.json"
    env = {"interface": "eth0", "ip": "10.1.0.5", "mask": "24", "dns": "192.0.2.53 192.0.2.54"}
    assert (
        dhcp_hook.main(
            ["hook", "bound"], {**env, "L3F_RESOLV": str(resolv), "L3F_LEASE_INFO": str(info)}
        )
        == 0
    )
    assert resolv.read_text() == "nameserver 192.0.2.53\nnameserver 192.0.2.54\n"
    assert "addr replace 10.1.0.5/24 dev eth0" in ran
    # Without the variables it writes no file (never the machine's /etc/resolv.conf).
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    assert dhcp_hook.main(["hook", "bound"], env) == 0
    assert set(tmp_path.iterdir()) == before
