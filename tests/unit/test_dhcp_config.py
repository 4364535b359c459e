"""What the host's dnsmasq serves (agent/dhcp_config.py), from plain controller data."""

from __future__ import annotations

from typing import Any

from l3fabric.agent.dhcp_config import LEASE_S, desired_dhcp, render, render_main, subnet_tag

HOST = "h1"
S4 = "11111111-1111-1111-1111-111111111111"
S6 = "66666666-6666-6666-6666-666666666666"
NET = "nnnnnnnn-0000-0000-0000-000000000000"


def subnets(**over: Any) -> dict[str, dict[str, Any]]:
    s4 = {
        "id": S4,
        "network_id": NET,
        "cidr": "10.1.0.0/24",
        "gateway_ip": "10.1.0.1",
        "enable_dhcp": True,
        "dns_nameservers": ["192.0.2.53", "2001:db8::53"],
        "host_routes": [{"destination": "198.51.100.0/24", "nexthop": "10.1.0.9"}],
    }
    s6 = {
        "id": S6,
        "network_id": NET,
        "cidr": "2001:db8:1::/64",
        "gateway_ip": "2001:db8:1::1",
        "enable_dhcp": True,
        "dns_nameservers": ["2001:db8::53"],
        "host_routes": [],
        "ipv6_address_mode": "dhcpv6-stateful",
        "ipv6_ra_mode": "dhcpv6-stateful",
    }
    s4.update(over.get("s4", {}))
    s6.update(over.get("s6", {}))
    return {S4: s4, S6: s6}


def port(n: int, host: str = HOST, **over: Any) -> dict[str, Any]:
    p = {
        "id": f"{n:08d}-aaaa-bbbb-cccc-dddddddddddd",
        "mac_address": f"fa:16:3e:00:00:{n:02x}",
        "binding:host_id": host,
        "admin_state_up": True,
        "fixed_ips": [
            {"subnet_id": S4, "ip_address": f"10.1.0.{n}"},
            {"subnet_id": S6, "ip_address": f"2001:db8:1::{n}"},
        ],
    }
    p.update(over)
    return p


NETWORKS = {NET: {"id": NET, "mtu": 1400}}


def ports(*items: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in items}


def test_each_port_of_this_host_is_a_static_host_entry_by_mac() -> None:
    config = render(HOST, ports(port(5), port(6, host="h2")), subnets(), NETWORKS)
    assert config.hosts == f"fa:16:3e:00:00:05,10.1.0.5,[2001:db8:1::5],host-10-1-0-5,{LEASE_S}\n"


def test_ranges_are_static_only_and_ipv6_is_off_link_with_the_gateway_as_server() -> None:
    config = render(HOST, ports(port(5)), subnets(), NETWORKS)
    assert f"dhcp-range=set:{subnet_tag(S4)},10.1.0.0,static,255.255.255.0,{LEASE_S}" in config.main
    assert "shared-network=l3f-dhcp,10.1.0.0" in config.main
    assert (
        f"dhcp-range=set:{subnet_tag(S6)},2001:db8:1::,static,off-link,64,{LEASE_S}" in config.main
    )
    assert config.addresses == ("169.254.1.1/32", "2001:db8:1::1/64")
    text = render_main(config.main, "/run/x")
    for line in (
        "port=0",
        "dhcp-ignore=tag:!known",
        "interface=tap*",
        "bridge-interface=l3f-dhcp,tap*",
    ):
        assert line in text.splitlines()
    assert "dhcp-range" not in text.replace(config.main, "")  # no pool besides the static ranges


def test_options_route_via_169_254_1_1_with_host_routes_dns_and_mtu() -> None:
    config = render(HOST, ports(port(5)), subnets(), NETWORKS)
    tag = subnet_tag(S4)
    assert config.opts.splitlines()[:4] == [
        f"tag:{tag},option:classless-static-route,169.254.1.1/32,0.0.0.0,"
        "198.51.100.0/24,10.1.0.9,0.0.0.0/0,169.254.1.1",
        f"tag:{tag},option:router,169.254.1.1",
        f"tag:{tag},option:dns-server,192.0.2.53",  # the IPv6 server goes to DHCPv6
        f"tag:{tag},option:mtu,1400",
    ]
    assert f"tag:{subnet_tag(S6)},option6:dns-server,[2001:db8::53]" in config.opts


def test_nothing_for_dhcp_disabled_subnets_admin_down_ports_or_no_ports() -> None:
    assert render(HOST, {}, subnets(), NETWORKS).empty
    assert render(HOST, ports(port(5, admin_state_up=False)), subnets(), NETWORKS).empty
    off = subnets(s4={"enable_dhcp": False}, s6={"ipv6_address_mode": None, "ipv6_ra_mode": None})
    assert render(HOST, ports(port(5)), off, NETWORKS).empty


def test_a_subnet_not_used_by_a_port_here_is_not_served() -> None:
    only4 = port(5, fixed_ips=[{"subnet_id": S4, "ip_address": "10.1.0.5"}])
    config = render(HOST, ports(only4), subnets(), NETWORKS)
    assert S6.replace("-", "") not in config.main
    assert config.addresses == ("169.254.1.1/32",)


def test_hostile_values_never_reach_the_files() -> None:
    bad_mac = port(5, mac_address="fa:16:3e:00:00:05\ndhcp-range=0.0.0.0,0.0.0.0")
    named = port(6, dns_name="x,set:evil")
    config = render(HOST, ports(bad_mac, named), subnets(), NETWORKS)
    assert "evil" not in config.hosts and "dhcp-range" not in config.hosts
    assert (
        config.hosts.startswith("fa:16:3e:00:00:06,10.1.0.6,") and "host-10-1-0-6" in config.hosts
    )


def test_ipv6_without_gateway_is_reported_not_served() -> None:
    config = render(HOST, ports(port(5)), subnets(s6={"gateway_ip": None}), NETWORKS)
    assert S6.replace("-", "") not in config.main
    assert any("gateway_ip" in e for e in config.errors)


def test_dns_name_is_the_hostname() -> None:
    config = render(HOST, ports(port(5, dns_name="web-1")), subnets(), NETWORKS)
    assert ",web-1," in config.hosts


def test_only_changed_ports_are_converted_again_and_the_result_equals_a_fresh_render(
    monkeypatch,
) -> None:
    from l3fabric.agent import dhcp_config

    calls: list[str] = []
    real = dhcp_config._host_line
    monkeypatch.setattr(dhcp_config, "_host_line", lambda p, s: calls.append(p["id"]) or real(p, s))
    before = ports(port(5), port(6))
    last = desired_dhcp(HOST, before, subnets_ := subnets(), NETWORKS)
    assert len(calls) == 2
    moved = port(6, fixed_ips=[{"subnet_id": S4, "ip_address": "10.1.0.66"}])
    after = {**before, moved["id"]: moved}
    calls.clear()
    state = desired_dhcp(HOST, after, subnets_, NETWORKS, last)
    assert calls == [moved["id"]]  # the unchanged port object is not converted again
    assert state.config() == render(HOST, after, subnets_, NETWORKS)
    assert ",10.1.0.66," in state.config().hosts
    # A changed subnet (a new object) converts every port again.
    calls.clear()
    desired_dhcp(HOST, after, {**subnets_, S4: {**subnets_[S4]}}, NETWORKS, state)
    assert len(calls) == 2


def test_without_dnsmasq_the_server_logs_once_and_asks_no_retry(
    tmp_path, monkeypatch, caplog
) -> None:
    from l3fabric.agent import dhcp
    from l3fabric.agent.ops import OK, DhcpServe

    monkeypatch.setattr(dhcp.shutil, "which", lambda _name: None)
    server = dhcp.DhcpServer(tmp_path)
    state = desired_dhcp(HOST, ports(port(5)), subnets(), NETWORKS)
    op = DhcpServe(main=state.main, opts=state.opts, lines=state.lines, restart=True)
    with caplog.at_level("ERROR"):
        assert server.apply(op) == OK  # no retry loop every second
        assert server.apply(op) == OK
    assert [r.getMessage() for r in caplog.records].count(
        "DHCP: dnsmasq is not installed (Debian: dnsmasq-base)"
    ) == 1


def test_the_incremental_state_equals_a_fresh_render_over_random_changes() -> None:
    import random

    rng = random.Random(7)
    view = ports(*(port(n) for n in range(1, 40)))
    subnets_ = subnets()
    state = desired_dhcp(HOST, view, subnets_, NETWORKS)
    for step in range(300):
        n = rng.randrange(1, 60)
        pid = port(n)["id"]
        kind = rng.choice(["add", "delete", "down", "elsewhere", "bad", "status", "subnet"])
        if kind == "delete":  # a new mapping, as every pass's view is a copy
            view = {k: v for k, v in view.items() if k != pid}
        elif kind == "subnet":
            subnets_ = subnets(s4={"host_routes": []} if step % 2 else {})
        else:
            over = {
                "add": {},
                "down": {"admin_state_up": False},
                "elsewhere": {"binding:host_id": "h2"},
                "bad": {"fixed_ips": [{"subnet_id": S4, "ip_address": "10.1.0.999"}]},
                "status": {"status": "ACTIVE"},
            }[kind]
            view = {**view, pid: port(n, **over)}
        # What the watch tells the agent: the port it carried (now and then none).
        hint = None if kind == "subnet" or step % 7 == 0 else {pid}
        state = desired_dhcp(HOST, view, subnets_, NETWORKS, state, hint)
        fresh = render(HOST, view, subnets_, NETWORKS)
        assert state.config() == fresh and state.errors == fresh.errors, (step, kind)


def test_a_new_port_is_a_file_in_the_hosts_directory_other_changes_a_reload(
    tmp_path, monkeypatch
) -> None:
    """No SIGHUP (dnsmasq re-reads every host) and no netlink request for a new port; a
    removal rewrites the hosts file and reloads, and empties the directory."""
    import os

    from l3fabric.agent import dhcp
    from l3fabric.agent.ops import DhcpHostsAdd, DhcpServe

    signals: list[int] = []
    monkeypatch.setattr(dhcp.shutil, "which", lambda _name: "/usr/sbin/dnsmasq")
    monkeypatch.setattr(dhcp.os, "kill", lambda pid, sig: signals.append(sig))
    server = dhcp.DhcpServer(tmp_path)
    watched: list[bool] = []  # dnsmasq watches the hosts directory only if it exists at start

    def start(text: str) -> None:
        watched.append(server.hosts_dir.is_dir())
        server.pid_path.write_text(f"{os.getpid()}\n")

    monkeypatch.setattr(server, "_restart", start)
    state = desired_dhcp(HOST, ports(port(5)), subnets(), NETWORKS)

    def serve(restart: bool = False) -> DhcpServe:
        return DhcpServe(main=state.main, opts=state.opts, lines=state.lines, restart=restart)

    server.apply(serve(restart=True))  # started
    assert watched == [True]
    line = desired_dhcp(HOST, ports(port(6)), subnets(), NETWORKS).lines[port(6)["id"]]
    server.apply(DhcpHostsAdd(entries=((port(6)["id"], line),)))
    assert signals == []
    (added,) = server.hosts_dir.iterdir()
    assert ",10.1.0.6," in added.read_text() and ",10.1.0.6," not in server.hosts_path.read_text()
    assert server.observe().pending == {port(6)["id"]: line}
    state = desired_dhcp(HOST, ports(port(6), port(7)), subnets(), NETWORKS)
    server.apply(serve())
    assert len(signals) == 1 and not any(server.hosts_dir.iterdir())
    hosts = server.hosts_path.read_text()
    assert ",10.1.0.5," not in hosts and ",10.1.0.6," in hosts and ",10.1.0.7," in hosts
