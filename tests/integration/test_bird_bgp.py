"""BIRD 2 between two namespaces: eBGP + BFD, the host export policy, reconfigure.

One BIRD pair serves the whole module (a BGP session takes seconds to come
up): ``h`` is a compute host (AS 4200000001, exports its endpoints), ``g`` a
gateway-like router (AS 65000) that imports everything.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.announce import ENDPOINTS_TABLE, Announcements
from l3fabric.dataplane.routes import EndpointRoutes
from l3fabric.routing.bird_config import BgpPeer, BirdConfig, Policy, StaticRoute, render
from l3fabric.routing.bird_control import BirdError, parse_protocols
from l3fabric.routing.bird_process import ROUTING_NICE, BirdConfigError, BirdProcess

from .bgp_sessions import established_since, same_sessions
from .conftest import ip


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``check`` until true; return the seconds it took, fail after ``timeout_s``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - start


LONG = "isp-" + "6" * 59


def host_config() -> BirdConfig:
    return BirdConfig(
        router_id=ip_address("10.255.0.1"),
        local_as=4200000001,
        peers=(
            # Session names as agents make them: a gateway's first address, and
            # one over BIRD's 64 characters (cut, with a digest).
            BgpPeer("gw1:0", ip_address("10.255.0.2"), 65000, role="g", bfd=True),
            BgpPeer(LONG, ip_address("fd00:255::2"), 65000, role="up"),
        ),
        hold_time=3,
        keepalive_time=1,
    )


def router_config() -> BirdConfig:
    everything = Policy("all")
    return BirdConfig(
        router_id=ip_address("10.255.0.2"),
        local_as=65000,
        peers=(
            # As the gateway's fabric sessions: refused routes kept, and the routes as received.
            BgpPeer("host1", ip_address("10.255.0.1"), 4200000001, role="h", bfd=True, export_policy=Policy("none"), import_policy=everything, keep_filtered=True),
            BgpPeer("host1-v6", ip_address("fd00:255::1"), 4200000001, role="h", export_policy=Policy("none"), import_policy=everything, keep_filtered=True),
        ),
        hold_time=3,
        keepalive_time=1,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fabric(tmp_path_factory) -> Iterator[tuple[str, str, BirdProcess, BirdProcess]]:
    tag = "t" + secrets.token_hex(2)
    h, g = f"l3f-{tag}-h", f"l3f-{tag}-g"
    run_dir = str(tmp_path_factory.mktemp("bird"))
    birds: list[BirdProcess] = []
    try:
        netns_mod.create(h)
        netns_mod.create(g)
        ip("-n", h, "link", "add", "l3fbh", "type", "veth", "peer", "name", "l3fbg", "netns", g)
        for ns, dev, v4, v6 in (
            (h, "l3fbh", "10.255.0.1", "fd00:255::1"),
            (g, "l3fbg", "10.255.0.2", "fd00:255::2"),
        ):
            ip("-n", ns, "addr", "add", f"{v4}/30", "dev", dev)
            ip("-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", h, "link", "add", "tap1", "type", "veth", "peer", "name", "l3fvm1")
        ip("-n", h, "link", "set", "tap1", "up")
        birds = [BirdProcess("h", h, run_dir, nice=ROUTING_NICE), BirdProcess("g", g, run_dir)]
        birds[0].start(render(host_config()))
        birds[1].start(render(router_config()))
        yield h, g, birds[0], birds[1]
    finally:
        for bird in birds:
            bird.stop()
        netns_mod.delete(h)
        netns_mod.delete(g)


def established(bird: BirdProcess) -> dict[str, datetime]:
    return established_since(bird.control.protocols())


def test_sessions_and_bfd_come_up(fabric) -> None:
    _, _, host, _ = fabric
    wait_for("both sessions Established", lambda: len(established(host)) == 2, 30)
    wait_for(
        "BFD session Up",
        lambda: any(" Up " in t for _, t in host.control.request("show bfd sessions")),
        10,
    )


def test_bird_runs_at_the_priority_it_was_started_with(fabric) -> None:
    _, _, host, router = fabric
    # /proc/PID/stat: the 19th field is the nice value (after the ")" of the name: the 17th).
    nice = [int(Path(f"/proc/{b.pid()}/stat").read_text().rsplit(")", 1)[1].split()[16]) for b in (host, router)]  # fmt: skip
    assert nice == [ROUTING_NICE, 0]


def test_endpoint_routes_propagate_and_nothing_else(fabric) -> None:
    h, g, host, _ = fabric
    wait_for("sessions", lambda: len(established(host)) == 2, 30)
    # Things the export policy must keep home: main-table routes of any
    # protocol (BIRD learns only the announcement table), a default route, a
    # /32 of another static protocol of this BIRD, and in the announcement
    # table anything but a host-length blackhole.
    ip("-n", h, "route", "add", "10.66.0.1/32", "dev", "tap1", "proto", "static")
    ip("-n", h, "route", "add", "default", "via", "10.255.0.2", "proto", "static")
    ip("-n", h, "route", "add", "10.77.0.0/24", "dev", "tap1", "proto", "96")
    ip("-n", h, "-6", "route", "add", "default", "via", "fd00:255::2", "proto", "96")
    table = str(ENDPOINTS_TABLE)
    ip("-n", h, "route", "add", "blackhole", "10.99.0.0/24", "table", table, "proto", "static")
    ip("-n", h, "route", "add", "10.99.1.1/32", "dev", "tap1", "table", table, "proto", "static")
    endpoints = ("10.1.0.5/32", "2001:db8::5/128")
    announcing = replace(
        host_config(),
        endpoints_table=ENDPOINTS_TABLE,
        static_routes=(StaticRoute(ip_network("10.88.0.1/32")),),
    )
    try:
        with EndpointRoutes(h) as routes, Announcements(h) as announcements:
            host.apply(render(announcing))
            routes.converge(dict.fromkeys(endpoints, "tap1"))  # what the agent does first
            assert announcements.apply(endpoints, ()) == []  # no configure: BIRD learns them
            assert announcements.read() == set(endpoints)
            took = wait_for(
                "endpoints in the peer's kernel",
                lambda: (
                    "10.1.0.5 via 10.255.0.1" in ip("-n", g, "route")
                    and "2001:db8::5 via fd00:255::1" in ip("-n", g, "-6", "route")
                ),
                2,
            )
            time.sleep(0.5)  # give anything wrongly exported time to arrive
            v4, v6 = ip("-n", g, "route"), ip("-n", g, "-6", "route")
            for stray in ("10.66.0.1", "10.77.0.0", "10.88.0.1", "10.99.", "default"):
                assert stray not in v4
            assert "default" not in v6
            # BIRD never writes the announcements into the host's main table.
            main = ip("-n", h, "route") + ip("-n", h, "-6", "route")
            assert "blackhole 10.1.0.5" not in main and "blackhole 2001:db8::5" not in main
            print(f"propagation {took:.3f} s")

            assert announcements.apply((), endpoints) == []  # withdraw first
            wait_for(
                "withdrawal in the peer's kernel",
                lambda: (
                    "10.1.0.5" not in ip("-n", g, "route")
                    and "2001:db8::5" not in ip("-n", g, "-6", "route")
                ),
                2,
            )
            routes.converge({})
    finally:
        ip("-n", h, "route", "flush", "table", table)
        ip("-n", h, "-6", "route", "flush", "table", table)
        host.apply(render(host_config()))  # the module's other tests start from it


def exported_updates(bird: BirdProcess, session: str) -> int:
    """Route updates ``bird`` has sent on ``session`` (``Export updates``, received column)."""
    for _, text in bird.control.request(f"show protocols all '{session}'"):
        if text.strip().startswith("Export updates:"):
            return int(text.split(":")[1].split()[0])
    raise AssertionError(f"no export statistics for {session}")


def test_a_filter_change_refilters_the_held_routes_without_asking_the_host(fabric) -> None:
    """The gateway's filters change with every port: the routes a session holds as
    received are filtered anew there, without a route refresh from the host (which
    the lab's hosts answered 0.1-1.3 s late: anycast moves missed their second)."""
    h, g, host, router = fabric
    wait_for("sessions", lambda: len(established(host)) == 2, 30)
    endpoint = "10.1.0.7/32"
    v4 = host_config().peers[0]

    def router_importing(prefixes: tuple[str, ...]) -> str:
        first, *others = router_config().peers
        only = replace(first, import_policy=Policy("prefixes", prefixes))
        return render(replace(router_config(), peers=(only, *others)))

    def held(filtered: bool) -> bool:
        [row] = parse_protocols(router.control.request("show protocols all 'h:host1'"))
        return (
            row.filtered == int(filtered)
            and (endpoint.split("/")[0] in ip("-n", g, "route")) != filtered
        )

    announcing = replace(host_config(), endpoints_table=ENDPOINTS_TABLE)
    host_text = host.config_path.read_text()
    try:
        router.apply(router_importing(()))
        with EndpointRoutes(h) as routes, Announcements(h) as announcements:
            host.apply(render(announcing))
            routes.converge({endpoint: "tap1"})
            assert announcements.apply((endpoint,), ()) == []
            wait_for("the endpoint held, refused", lambda: held(filtered=True), 5)
            sent = exported_updates(host, v4.protocol)
            router.apply(router_importing((endpoint,)))
            took = wait_for("the endpoint accepted", lambda: held(filtered=False), 5)
            print(f"accepted {took:.3f} s after the filter changed")
            assert took < 1.0
            assert exported_updates(host, v4.protocol) == sent  # not sent again: no refresh
            assert announcements.apply((), (endpoint,)) == []
            routes.converge({})
    finally:
        router.apply(render(router_config()))
        host.apply(host_text)
        ip("-n", h, "route", "flush", "table", str(ENDPOINTS_TABLE))


def test_reconfigure_keeps_sessions_and_refuses_bad_config(fabric) -> None:
    _, _, host, _ = fabric
    wait_for("sessions", lambda: len(established(host)) == 2, 30)
    before = established(host)
    config = host_config()
    assert host.apply(render(config)) is False  # unchanged: nothing to do
    changed = replace(
        config, static_routes=(StaticRoute(ip_network("192.0.2.0/24")),), scan_time=20
    )
    assert host.apply(render(changed)) is True
    text = host.config_path.read_text()
    with pytest.raises(BirdConfigError, match="syntax error"):
        host.apply(render(changed) + "\nprotocol bgp gw {}\n")
    assert host.config_path.read_text() == text
    time.sleep(1.5)
    assert same_sessions(established(host), before), before
    assert "static4" in {p.name for p in host.control.protocols()}


def test_quoted_session_names_work_in_birdc_and_the_status_parser(fabric) -> None:
    _, _, host, router = fabric
    wait_for("sessions", lambda: len(established(host)) == 2, 30)
    v4, v6 = host_config().peers
    assert len(v6.protocol) == 64 and "::" in v6.protocol  # cut to BIRD's limit
    # show protocols: the names as rendered, unquoted, with the neighbour's address.
    assert established(host).keys() == {v4.protocol, v6.protocol}
    [row] = parse_protocols(host.control.request(f"show protocols all '{v6.protocol}'"))
    assert (row.name, row.neighbor, row.established) == (v6.protocol, "fd00:255::2", True)
    for command in ("show route protocol", "show route export", "show route count protocol"):
        host.control.request(f"{command} '{v4.protocol}'")  # BirdError if BIRD refused it
        router.control.request(f"{command} 'h:host1'")
    with pytest.raises(BirdError, match="syntax error"):
        host.control.request(f"show protocols {v4.protocol}")  # unquoted: not a symbol
    # The BFD session of the quoted protocol is up.
    assert any(" Up " in t for _, t in host.control.request("show bfd sessions"))
    # disable/enable by name; the last test of the module, so no wait to re-establish.
    host.control.request(f"disable '{v6.protocol}'")
    [row] = parse_protocols(host.control.request(f"show protocols all '{v6.protocol}'"))
    assert row.state in ("stop", "flush", "down") and not row.established  # on its way down
    host.control.request(f"enable '{v6.protocol}'")
    [row] = parse_protocols(host.control.request(f"show protocols all '{v6.protocol}'"))
    assert row.state != "down"
