"""Endpoint routes in a real namespace: converge, idempotence, errors, proxy ARP."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from l3fabric.dataplane.links import Links, needs_ipv6_off
from l3fabric.dataplane.netlink_batch import RouteSocket
from l3fabric.dataplane.routes import (
    RTPROT_L3FABRIC,
    EndpointRoutes,
    RouteProgrammingError,
    ensure_link_local_gateway,
)

from .conftest import in_ns, ip

RTPROT_STATIC = 4


def _our_routes(ns: str) -> set[str]:
    out = ip("-n", ns, "route", "show", "proto", str(RTPROT_L3FABRIC))
    out += ip("-n", ns, "-6", "route", "show", "proto", str(RTPROT_L3FABRIC))
    return {line.split()[0] + " " + line.split()[2] for line in out.splitlines()}


def test_converge_installs_exactly_the_desired_routes(netns, veth) -> None:
    ns = netns("rt")
    veth(ns, "tapaaaaaaaaaaa", ns, "l3fpeera")
    veth(ns, "tapbbbbbbbbbbb", ns, "l3fpeerb")
    # A route of another protocol must survive untouched.
    ip("-n", ns, "route", "add", "10.9.0.1/32", "dev", "l3fpeera", "proto", "static")
    desired = {f"10.1.{i // 250}.{i % 250 + 1}/32": "tapaaaaaaaaaaa" for i in range(2000)}
    desired["2001:db8::5/128"] = "tapbbbbbbbbbbb"
    with EndpointRoutes(ns) as routes:
        plan = routes.converge(desired)
        assert len(plan.replace) == 2001
        expected = {f"{p.rsplit('/', 1)[0]} {d}" for p, d in desired.items()}
        assert _our_routes(ns) == expected
        with RouteSocket(ns) as sock:
            # The benchmark's cheap count agrees with the dump, per family and protocol.
            assert sock.count(socket.AF_INET, RTPROT_L3FABRIC) == 2000
            assert sock.count(socket.AF_INET6, RTPROT_L3FABRIC) == 1
            assert sock.count(socket.AF_INET, RTPROT_STATIC) == 1

        # Move one route, drop one, add one: only those change.
        desired["10.1.0.1/32"] = "tapbbbbbbbbbbb"
        del desired["10.1.0.2/32"]
        desired["10.2.0.1/32"] = "tapaaaaaaaaaaa"
        plan = routes.converge(desired)
        assert set(map(str, plan.replace)) == {"10.1.0.1/32", "10.2.0.1/32"}
        assert list(map(str, plan.delete)) == ["10.1.0.2/32"]
        assert "10.1.0.1 tapbbbbbbbbbbb" in _our_routes(ns)

        plan = routes.converge({})
        assert len(plan.delete) == 2001
    assert _our_routes(ns) == set()
    assert "10.9.0.1" in ip("-n", ns, "route", "show", "proto", "static")


def test_unchanged_routes_cause_no_netlink_events(netns, veth) -> None:
    ns = netns("ev")
    veth(ns, "tapccccccccccc", ns, "l3fpeerc")
    desired = {f"10.3.0.{i}/32": "tapccccccccccc" for i in range(1, 200)}
    desired["2001:db8::7/128"] = "tapccccccccccc"
    with EndpointRoutes(ns) as routes:
        routes.converge(desired)
    monitor = subprocess.Popen(
        ["ip", "-n", ns, "monitor", "route"], stdout=subprocess.PIPE, text=True
    )
    try:
        time.sleep(0.3)  # let the monitor subscribe
        # A fresh instance, as after an agent restart.
        with EndpointRoutes(ns) as routes:
            plan = routes.converge(desired)
        # A marker event proves the monitor was listening.
        ip("-n", ns, "route", "add", "10.250.0.1/32", "dev", "tapccccccccccc", "proto", "static")
        time.sleep(0.3)
    finally:
        monitor.terminate()
        out, _ = monitor.communicate(timeout=5)
    assert plan.empty and plan.unchanged == 200
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "10.250.0.1" in lines[0], lines


def test_failures_name_the_prefix_and_the_rest_is_applied(netns, veth) -> None:
    ns = netns("err")
    veth(ns, "tapddddddddddd", ns, "l3fpeerd")
    with EndpointRoutes(ns) as routes:
        with pytest.raises(RouteProgrammingError) as caught:
            routes.converge({"10.4.0.1/32": "tapddddddddddd", "10.4.0.2/32": "tapmissing1234"})
        assert [str(f.request.prefix) for f in caught.value.failures] == ["10.4.0.2/32"]
        assert "no interface tapmissing1234" in str(caught.value)
        with pytest.raises(ValueError, match=r"10\.4\.0\.0/8"):
            routes.converge({"10.4.0.0/8": "tapddddddddddd"})
    assert _our_routes(ns) == {"10.4.0.1 tapddddddddddd"}


def test_kernel_refusal_is_reported_with_its_reason(netns, veth) -> None:
    ns = netns("ker")
    veth(ns, "tapeeeeeeeeeee", ns, "l3fpeere")
    ip("-n", ns, "link", "set", "tapeeeeeeeeeee", "down")
    with EndpointRoutes(ns) as routes, pytest.raises(RouteProgrammingError) as caught:
        routes.converge({"10.5.0.1/32": "tapeeeeeeeeeee"})
    (failure,) = caught.value.failures
    assert str(failure.request.prefix) == "10.5.0.1/32"
    assert failure.errno == 100  # ENETDOWN, straight from the kernel's ack


def test_vm_reaches_host_through_proxy_arp_without_default_route(netns, veth) -> None:
    host, vm = netns("host"), netns("vm")
    veth(host, "tapfffffffffff", vm, "eth0")
    ip("-n", host, "addr", "add", "10.0.0.1/32", "dev", "lo")
    ip("-n", host, "addr", "add", "2001:db8:ff::1/128", "dev", "lo")
    ip("-n", vm, "addr", "add", "10.1.0.5/32", "dev", "eth0")
    ip("-n", vm, "addr", "add", "2001:db8::5/128", "dev", "eth0", "nodad")
    ip("-n", vm, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    ip("-n", vm, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    ip("-n", vm, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
    with Links(host) as links:
        links.ensure_host()
        links.ensure_tap("tapfffffffffff")
    with EndpointRoutes(host) as routes:
        routes.converge({"10.1.0.5/32": "tapfffffffffff", "2001:db8::5/128": "tapfffffffffff"})
    assert "default" not in ip("-n", host, "route")

    # Without the link-local route the host stays silent (docs/dataplane.md, Routes).
    assert in_ns(vm, "ping", "-c1", "-W1", "10.0.0.1", check=False).returncode != 0
    assert ensure_link_local_gateway(host) is True
    assert ensure_link_local_gateway(host) is False
    ip("-n", vm, "neigh", "flush", "dev", "eth0")
    in_ns(vm, "ping", "-c1", "-W2", "10.0.0.1")
    in_ns(vm, "ping", "-6", "-c1", "-W2", "2001:db8:ff::1")
    # Nothing in the host routes 169.254.1.1 anywhere but lo.
    assert ip("-n", host, "route", "get", "169.254.1.1").split()[2] == "lo"
    # Pointed elsewhere by hand, it is put back.
    ip("-n", host, "route", "replace", "169.254.1.1/32", "dev", "tapfffffffffff", "proto", "static")
    assert ensure_link_local_gateway(host) is True
    assert ip("-n", host, "route", "get", "169.254.1.1").split()[2] == "lo"


def _ipv6_off(ns: str, tap: str) -> str:
    return in_ns(ns, "cat", f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6").stdout.strip()


def test_a_tap_has_ipv6_only_for_a_port_that_may_send_it(netns, veth) -> None:
    host, vm4, vm6 = netns("host"), netns("vm4"), netns("vm6")
    veth(host, "tapaaaaaaaaaaa", vm4, "eth0")
    veth(host, "tapbbbbbbbbbbb", vm6, "eth0")
    ip("-n", host, "addr", "add", "2001:db8:ff::1/128", "dev", "lo")
    with Links(host) as links:
        links.ensure_host()
        report = links.prepare_taps(["tapaaaaaaaaaaa", "tapbbbbbbbbbbb"], ipv6=["tapbbbbbbbbbbb"])
        assert report.ready == {"tapaaaaaaaaaaa", "tapbbbbbbbbbbb"}
        gone = ("tapgone0000000", 999)
        assert links.ipv6_off([("tapaaaaaaaaaaa", links.link("tapaaaaaaaaaaa").index), gone]) == {}
        assert (_ipv6_off(host, "tapaaaaaaaaaaa"), _ipv6_off(host, "tapbbbbbbbbbbb")) == ("1", "0")
        # IPv6 off leaves the IPv4 tap no IPv6 route at all (not even ff00::/8)
        # and no fe80::1; the IPv6 port's tap has its gateway.
        assert ip("-n", host, "-6", "route", "show", "table", "all", "dev", "tapaaaaaaaaaaa") == ""
        assert links.with_gateway6() == {links.link("tapbbbbbbbbbbb").index}
        # The link dump shows the setting: ready taps need no write at all.
        listing = links.listing()
        taps = ["tapaaaaaaaaaaa", "tapbbbbbbbbbbb"]
        assert links.prepare_taps(taps, ipv6=["tapbbbbbbbbbbb"], listing=listing).changed == []
        assert not needs_ipv6_off("tapaaaaaaaaaaa", listing["tapaaaaaaaaaaa"])
        assert needs_ipv6_off("tapbbbbbbbbbbb", listing["tapbbbbbbbbbbb"])  # on, as it should be
        # The IPv4 port's VM cannot reach the host over IPv6; the other can.
        with EndpointRoutes(host) as routes:
            # The kernel would refuse an IPv6 route via the IPv4 tap; none is made.
            routes.converge({"2001:db8::6/128": "tapbbbbbbbbbbb"})
        for vm, address in ((vm4, "2001:db8::4"), (vm6, "2001:db8::6")):
            ip("-n", vm, "addr", "add", f"{address}/128", "dev", "eth0", "nodad")
            ip("-n", vm, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
        in_ns(vm6, "ping", "-6", "-c1", "-W2", "2001:db8:ff::1")
        assert in_ns(vm4, "ping", "-6", "-c1", "-W1", "2001:db8:ff::1", check=False).returncode != 0
        # The port gains IPv6: its tap is turned on and gets fe80::1.
        links.prepare_taps(["tapaaaaaaaaaaa"], ipv6=["tapaaaaaaaaaaa"])
        assert _ipv6_off(host, "tapaaaaaaaaaaa") == "0"
        assert links.link("tapaaaaaaaaaaa").index in links.with_gateway6()
