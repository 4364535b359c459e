"""Resilient anycast routes in real namespaces: flows keep their member; the kernel is the state."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from l3fabric.bench import anycast
from l3fabric.dataplane.nexthops import (
    RTPROT_L3FABRIC_ANYCAST,
    NexthopProgrammingError,
    ResilientRoutes,
)

from .conftest import ip

CONNECTIONS = 200


@pytest.fixture
def topo() -> Iterator[anycast.Topology]:
    with anycast.topology(members=4) as t:
        yield t


def ours(netns: str) -> list[dict[str, object]]:
    shown = json.loads(ip("-n", netns, "-j", "nexthop", "show") or "[]")
    return [nh for nh in shown if nh.get("protocol") == str(RTPROT_L3FABRIC_ANYCAST)]


def test_removing_a_member_keeps_every_surviving_flow_only_with_the_resilient_group(
    topo: anycast.Topology,
) -> None:
    names = list(topo.members)
    res, mp = anycast.RESILIENT_ADDRESS, anycast.MULTIPATH_ADDRESS
    with ResilientRoutes(topo.router) as routes:
        routes.converge(anycast.anycast_desired(topo, res, names))
        anycast.set_multipath(topo, mp, names)
        group = routes.group_id(f"{res}/32")
        with anycast.member_servers(topo, (res, mp)):
            flows = {a: anycast.open_flows(topo.client, a, CONNECTIONS) for a in (res, mp)}
            try:
                before = {a: [anycast.ask(s) for s in f] for a, f in flows.items()}
                # L4 hashing spreads one client's connections over every member.
                for answers in before.values():
                    assert set(answers) == set(names)
                routes.converge(anycast.anycast_desired(topo, res, names[:-1]))
                anycast.set_multipath(topo, mp, names[:-1])
                after = {a: [anycast.ask(s) for s in f] for a, f in flows.items()}
                # The member left in place: same group, the route was not rewritten.
                assert routes.group_id(f"{res}/32") == group
                # New connections no longer reach the member that left.
                fresh = anycast.open_flows(topo.client, res, 50)
                flows["fresh"] = fresh
                assert names[-1] not in {anycast.ask(s) for s in fresh}
            finally:
                for f in flows.values():
                    anycast.close_flows(f)
    total, moved = anycast.moved_share(before[res], after[res], names[-1])
    assert total > CONNECTIONS // 2 and moved == 0
    total, moved = anycast.moved_share(before[mp], after[mp], names[-1])
    assert moved > 0, "hash-threshold multipath should have moved some surviving flows"


def test_converge_reads_the_kernel_changes_only_differences_and_cleans_up(
    netns: Callable[[str], str], veth: Callable[[str, str, str, str], None]
) -> None:
    router, peer = netns("router"), netns("peer")
    veth(router, "l3fnh1", peer, "l3fnh1p")
    veth(router, "l3fnh2", peer, "l3fnh2p")
    ip("-n", router, "addr", "add", "10.203.0.1/24", "dev", "l3fnh1")
    ip("-n", router, "addr", "add", "2001:db8:203::1/64", "dev", "l3fnh2", "nodad")
    # An endpoint route of protocol 96 is somebody else's: it must survive.
    ip("-n", router, "route", "add", "10.203.9.9/32", "dev", "l3fnh1", "proto", "96")
    desired = {
        "203.0.113.20/32": [("10.203.0.2", "l3fnh1", 3), (None, "l3fnh2", 1)],
        "2001:db8:aa::1/128": [("2001:db8:203::2", "l3fnh2", 1), (None, "l3fnh1", 2)],
    }
    with ResilientRoutes(router) as routes:
        plan = routes.converge(desired)
        assert len(plan.hops_create) == 4 and len(plan.groups_create) == 2
    shown = ip("-n", router, "route", "show", "203.0.113.20/32")
    assert "nhid" in shown and "weight 3" in shown
    assert "nhid" in ip("-n", router, "-6", "route", "show", "2001:db8:aa::1/128")
    groups = [nh for nh in ours(router) if "group" in nh]
    assert {g["type"] for g in groups} == {"resilient"}
    assert {g["resilient_args"]["buckets"] for g in groups} == {128}  # type: ignore[index]

    # A new instance (an agent restart) finds everything right and writes nothing.
    with ResilientRoutes(router) as routes:
        again = routes.converge(desired)
        assert again.empty and again.unchanged == 2
        # A member on a missing interface is reported; the rest is applied.
        with pytest.raises(NexthopProgrammingError, match="no such interface"):
            routes.converge({"203.0.113.20/32": [("10.203.0.2", "l3fnh1", 1), (None, "nope0", 1)]})
        assert routes.read() and "2001:db8:aa::1/128" not in {str(n) for n in routes.read()}
        routes.converge({})
    assert ours(router) == []
    assert "203.0.113.20" not in ip("-n", router, "route", "show")
    assert "10.203.9.9" in ip("-n", router, "route", "show", "proto", "96")
