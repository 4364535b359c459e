"""The gateway's anycast groups follow BGP: real BIRDs, real kernel, sub-second failover.

One lab for the module (examples/small.yaml's shape: two hosts peering
straight with the gateway). Both hosts announce one IPv4 and one IPv6 anycast
address with the healthy-member community, r1-h1 with 2 members, r1-h2 with 1.
The gateway agent must hold a resilient group per address with both next
hops weighted 2 and 1, edit it in place when a count changes, and drop a
host's next hop within 1 s when the host dies (BFD; its link stays up) or
its uplink goes down.

Until the host agent announces anycast addresses itself, ``announce`` stands
in for it: it stops the host's agent and gives the host's own BIRD (the one
the agent started) a small config with a static route per address, tagged
with ``anycast_marker.community(n)``, exported to the gateway with BFD on.
With the real host side, ``announce`` becomes an anycast group with members
on the hosts (``/v1/anycast``) and nothing else here changes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from l3fabric.dataplane.nexthops import ResilientRoutes
from l3fabric.lab import processes, routers
from l3fabric.lab.faults import host_silenced
from l3fabric.routing.anycast_marker import community
from l3fabric.routing.bird_control import BirdControl

from .lab_fixtures import Lab, module_lab_factory, needs_root, wait_until  # noqa: F401

pytestmark = [pytest.mark.integration, needs_root]

TOPOLOGY = """
racks:
  - {name: r1, hosts: 2, tor: false}
internet: {clients: 0}
"""
ADDR4, ADDR6 = "10.1.0.100/32", "2001:db8:1::100/128"
FAILOVER_S = 1.0


def announce(lab: Lab, host: str, counts: dict[str, int]) -> None:
    """Make ``host`` announce each address with its healthy-member count (stand-in, see above)."""
    pid = lab.state.pids().get(f"agent-{host}")
    if pid and processes.alive(pid):
        os.kill(pid, signal.SIGTERM)  # the agent would put its own BIRD config back
        wait_until(lambda: not processes.alive(pid), 10, f"{host} agent stopped")
    node = lab.plan.node(host)
    text = [
        f"router id {node.router_id};",
        "protocol device {}",
        'protocol bfd { interface "*" { interval 100 ms; multiplier 3; }; }',
    ]
    for i, (prefix, count) in enumerate(sorted(counts.items())):
        v = ipaddress.ip_network(prefix).version
        tag = f"bgp_large_community.add({community(count)}); accept;"
        text.append(
            f"protocol static anycast_{i} {{ ipv{v} {{ import filter {{ {tag} }}; }}; "
            f"route {prefix} blackhole; }}"
        )
    for s in lab.plan.sessions(host):
        v = ipaddress.ip_address(s.remote).version
        text.append(
            f"protocol bgp '{routers.session_name(s)}' {{ local {s.local} as {node.asn}; "
            f"neighbor {s.remote} as {s.peer_asn}; bfd on; hold time 9; keepalive time 3; "
            f'password "{routers.PASSWORD}"; '
            "connect delay time 0; connect retry time 1; error wait time 1, 10; "
            f'ipv{v} {{ import none; export where proto ~ "anycast_*"; }}; }}'
        )
    path = lab.state.agent_dir(host) / "bird" / "anycast-standin.conf"
    path.write_text("\n".join(text) + "\n")
    BirdControl(str(lab.state.agent_bird_ctl(host))).configure(str(path))


def next_hops(lab: Lab, host: str) -> dict[int, str]:
    """The gateway's next hop towards ``host`` per IP version (its link addresses)."""
    return {
        ipaddress.ip_address(s.remote).version: s.remote
        for s in lab.plan.sessions("gw1")
        if s.peer == host
    }


def groups(lab: Lab) -> dict[str, set[tuple[str | None, int]]]:
    """The gateway kernel's anycast groups: ``{prefix: {(next hop, weight)}}``."""
    with ResilientRoutes(lab.ns("gw1")) as routes:
        return {str(net): {(gw, w) for gw, _, w in hops} for net, hops in routes.read().items()}


def wait_groups(
    lab: Lab, want: dict[str, set[tuple[str | None, int]]], timeout: float, what: str
) -> float:
    """Seconds until the gateway's groups are ``want``; the groups last seen if they never are."""
    seen: list[dict[str, set[tuple[str | None, int]]]] = []

    def reached() -> bool:
        seen[:] = [groups(lab)]
        return seen[0] == want

    try:
        return wait_until(reached, timeout, what)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; last seen {seen[0] if seen else None}, wanted {want}"
        ) from None


def group_ids(lab: Lab) -> dict[str, int | None]:
    with ResilientRoutes(lab.ns("gw1")) as routes:
        return {p: routes.group_id(p) for p in (ADDR4, ADDR6)}


def expected(lab: Lab, weights: dict[str, int]) -> dict[str, set[tuple[str | None, int]]]:
    return {
        prefix: {(next_hops(lab, h)[v], w) for h, w in weights.items()}
        for prefix, v in ((ADDR4, 4), (ADDR6, 6))
    }


@pytest.fixture(scope="module")
def lab(module_lab_factory) -> Iterator[Lab]:  # noqa: F811
    lab = module_lab_factory(TOPOLOGY)
    lab.create_network("priv")
    # The gateway accepts an anycast address only from the hosts of its
    # members: a group per address with a member VM on each host.
    for vm, host in (("m1", "r1-h1"), ("m2", "r1-h2")):
        lab.boot(vm, ["priv"], host)
    members = [lab.state.vms()[vm]["ports"][0]["id"] for vm in ("m1", "m2")]
    with lab.client() as api:
        for i, prefix in enumerate((ADDR4, ADDR6)):
            address = prefix.split("/")[0]
            version = 6 if ":" in address else 4
            (subnet,) = [s for s in api.list("subnets") if s["ip_version"] == version]
            api.create_anycast(
                name=f"g{i}", subnet_id=subnet["id"], address=address, members=members
            )
    announce(lab, "r1-h1", {ADDR4: 2, ADDR6: 2})
    announce(lab, "r1-h2", {ADDR4: 1, ADDR6: 1})
    yield lab


def test_groups_hold_every_host_weighted_by_its_members(lab: Lab) -> None:
    want = expected(lab, {"r1-h1": 2, "r1-h2": 1})
    wait_groups(lab, want, 20, "gateway groups")
    sysctls = lab.exec("gw1", "sysctl", "-n", "net.ipv4.fib_multipath_hash_policy", "net.ipv6.fib_multipath_hash_policy").stdout.split()  # fmt: skip
    assert sysctls == ["1", "1"]

    def reported() -> bool:  # the next heartbeat (every 2 s) carries the groups
        with lab.client() as client:
            beat = client.request("GET", "/v1/gateways/gw1")["anycast"]
        return {p["prefix"] for p in beat.get("prefixes", [])} == {ADDR4, ADDR6}

    wait_until(reported, 5, "anycast groups in the gateway's heartbeat")


def test_a_count_change_edits_the_group_in_place(lab: Lab) -> None:
    wait_groups(lab, expected(lab, {"r1-h1": 2, "r1-h2": 1}), 20, "start")
    before = group_ids(lab)
    started = time.monotonic()
    try:
        announce(lab, "r1-h1", {ADDR4: 1, ADDR6: 1})  # one of r1-h1's members turned unhealthy
        want = expected(lab, {"r1-h1": 1, "r1-h2": 1})
        wait_groups(lab, want, FAILOVER_S, "weights 1/1")
        print(f"\ncount change reached the gateway's group in {time.monotonic() - started:.3f} s")
        assert group_ids(lab) == before  # same group: the members' buckets stayed
    finally:  # the next tests start from 2/1, also after a failure here
        announce(lab, "r1-h1", {ADDR4: 2, ADDR6: 2})
    wait_groups(lab, expected(lab, {"r1-h1": 2, "r1-h2": 1}), 5, "back to 2/1")


@pytest.fixture
def silenced(lab: Lab) -> Iterator[list[str]]:
    """r1-h1 stops answering on its uplink (a dead host: the gateway's link stays up)."""
    with host_silenced(lab.plan, "r1-h1") as uplinks:
        yield uplinks


def test_a_dead_host_leaves_the_group_within_a_second(lab: Lab, request) -> None:
    want_before = expected(lab, {"r1-h1": 2, "r1-h2": 1})
    wait_groups(lab, want_before, 20, "start")
    before = group_ids(lab)
    started = time.monotonic()
    request.getfixturevalue("silenced")
    want = expected(lab, {"r1-h2": 1})
    took = wait_groups(lab, want, FAILOVER_S, "r1-h1 out of the groups")
    print(f"\ndead host (BFD) left the gateway's groups in {time.monotonic() - started:.3f} s")
    assert took < FAILOVER_S
    assert group_ids(lab) == before  # edited in place: r1-h2's flows keep their member


def test_an_uplink_down_leaves_the_group_within_a_second(lab: Lab) -> None:
    # r1-h1 is back from the previous test (its BGP session re-established).
    wait_groups(lab, expected(lab, {"r1-h1": 2, "r1-h2": 1}), 20, "r1-h1 back")
    (uplink,) = {s.ifname for s in lab.plan.sessions("r1-h2")}
    started = time.monotonic()
    lab.exec("r1-h2", "ip", "link", "set", uplink, "down")
    want = expected(lab, {"r1-h1": 2})
    wait_groups(lab, want, FAILOVER_S, "r1-h2 out of the groups")
    print(f"\nuplink down left the gateway's groups in {time.monotonic() - started:.3f} s")
    # The gateway logged the change (with its time, as every log line).
    h1 = next(s for s in lab.plan.sessions("gw1") if s.peer == "r1-h1" and ":" not in s.remote)
    change = f"anycast {ADDR4}: "
    after = f" -> {h1.remote}@{h1.ifname} x2"
    log = lab.state.log_file("agent-gw1")
    wait_until(
        lambda: any(
            change in line and line.endswith(after) for line in log.read_text().splitlines()
        ),
        2,
        "the change in the gateway's log",
    )
    # Nobody left: no group, no route.
    announce(lab, "r1-h1", {})
    wait_groups(lab, {}, FAILOVER_S * 2, "groups removed")
    out = lab.exec("gw1", "ip", "-j", "nexthop", "show", "protocol", "97").stdout
    assert json.loads(out or "[]") == []
