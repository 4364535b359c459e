"""The gateway's anycast side without root: BIRD output parsed, weights computed, changes diffed.

The BIRD texts are real answers of BIRD 2.0.12 to ``show route all where
bgp_large_community ~ [(4200000000, 1, *)]`` in a lab (gateway with two
hosts; a host with a multipath static route), as BirdControl returns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

import pytest

from l3fabric.agent.ops import OK
from l3fabric.dataplane.nexthops import MAX_WEIGHT, Member, NexthopFailure, NexthopPlan
from l3fabric.dataplane.nexthops import NexthopProgrammingError as ProgrammingError
from l3fabric.gateway.anycast import AnycastSync, anycast_members, integer_weights
from l3fabric.gateway.ops import AnycastGroupsSet
from l3fabric.routing.anycast_routes import (
    LearnedPath,
    NextHop,
    parse_anycast_routes,
    show_anycast_command,
)
from l3fabric.routing.bird_control import BirdError

# The gateway: two hosts announce 10.1.0.100/32 (2 and 1 healthy members), one
# host 2001:db8:1::100/128 (BGP.next_hop with its link-local address too).
GATEWAY = [
    "Table master4:",
    "10.1.0.100/32        unicast [p:r1-h1 11:36:41.970] * (100) [AS4200000001i]",
    "\tvia 172.16.0.1 on l3f-f0",
    "\tType: BGP univ",
    "\tBGP.origin: IGP",
    "\tBGP.as_path: 4200000001",
    "\tBGP.next_hop: 172.16.0.1",
    "\tBGP.local_pref: 100",
    "\tBGP.large_community: (4200000000, 1, 2)",
    "                     unicast [p:r1-h2 11:36:40.892] (100) [AS4200000002i]",
    "\tvia 172.16.0.3 on l3f-f1",
    "\tType: BGP univ",
    "\tBGP.origin: IGP",
    "\tBGP.as_path: 4200000002",
    "\tBGP.next_hop: 172.16.0.3",
    "\tBGP.local_pref: 100",
    "\tBGP.large_community: (4200000000, 1, 1)",
    "",
    "Table master6:",
    "2001:db8:1::100/128  unicast [p:r1-h2-v6 11:37:01.544] * (100) [AS4200000002i]",
    "\tvia 2001:db8:ff00::3 on l3f-f1",
    "\tType: BGP univ",
    "\tBGP.origin: IGP",
    "\tBGP.as_path: 4200000002",
    "\tBGP.next_hop: 2001:db8:ff00::3 fe80::74fd:6aff:fea1:804",
    "\tBGP.local_pref: 100",
    "\tBGP.large_community: (4200000000, 1, 1)",
    "",
]
# A host's own BIRD: a blackhole (no next hop) and a multipath route with weights.
MULTIPATH = [
    "Table master4:",
    "10.1.0.100/32        blackhole [anycast4_0 11:36:38.461] * (200)",
    "\tType: static univ",
    "\tBGP.large_community: (4200000000, 1, 2)",
    "10.1.0.200/32        unicast [mp4 11:37:07.601] * (200)",
    "\tvia 172.31.254.1 on l3f-mgmt weight 2",
    "\tvia 172.16.0.0 on l3f-f0 weight 1",
    "\tType: static univ",
    "\tBGP.large_community: (4200000000, 1, 3)",
    "",
    "Table master6:",
    "2001:db8:1::100/128  blackhole [anycast6_0 11:36:38.461] * (200)",
    "\tType: static univ",
    "\tBGP.large_community: (4200000000, 1, 2)",
]


def path(proto: str, healthy: int | None, *hops: tuple[str | None, str, int]) -> LearnedPath:
    return LearnedPath(proto, healthy, [NextHop(*h) for h in hops])


# Parsing ---------------------------------------------------------------------------


def test_every_path_of_a_prefix_with_its_next_hop_and_count() -> None:
    routes = parse_anycast_routes(GATEWAY)
    assert set(routes) == {"10.1.0.100/32", "2001:db8:1::100/128"}
    first, second = routes["10.1.0.100/32"]
    assert (first.protocol, first.best, first.healthy) == ("p:r1-h1", True, 2)
    assert first.hops == [NextHop("172.16.0.1", "l3f-f0", 1)]
    assert (second.protocol, second.best, second.healthy) == ("p:r1-h2", False, 1)
    assert second.hops == [NextHop("172.16.0.3", "l3f-f1", 1)]
    (v6,) = routes["2001:db8:1::100/128"]
    assert v6.hops == [NextHop("2001:db8:ff00::3", "l3f-f1", 1)] and v6.healthy == 1


def test_multipath_via_lines_and_routes_without_next_hop() -> None:
    routes = parse_anycast_routes(MULTIPATH)
    (mp,) = routes["10.1.0.200/32"]
    assert mp.hops == [NextHop("172.31.254.1", "l3f-mgmt", 2), NextHop("172.16.0.0", "l3f-f0", 1)]
    assert mp.healthy == 3
    (blackhole,) = routes["2001:db8:1::100/128"]
    assert blackhole.hops == [] and blackhole.healthy == 2


def test_other_communities_and_unknown_lines_are_skipped() -> None:
    lines = [
        "Table master4:",
        "10.1.0.7/32          unicast [h:a.b 11:00:00.000 from 172.16.0.9] * (100/-) [AS65001i]",
        "\tvia 172.16.0.1 on eth0 mpls 100",
        "\tBGP.large_community: (65000, 1, 9) (4200000000, 2, 5) (4200000000, 1, 4)",
        "\tBGP.some_future_attribute: whatever",
        "                     unicast [up:isp1 11:00:00.000] (100) [AS65002i]",
        "\tvia 172.16.0.3 on eth1",
        "\tBGP.large_community: (65000, 1, 9)",
    ]
    a, b = parse_anycast_routes(lines)["10.1.0.7/32"]
    assert a.healthy == 4 and a.hops == [NextHop("172.16.0.1", "eth0", 1)]
    assert b.healthy is None  # no anycast count: not an announcement to weight


def test_prefixes_are_normalised_and_a_bad_one_is_an_error() -> None:
    assert list(parse_anycast_routes(["2001:DB8:0::1/128  unicast [p 1] * (100)"])) == [
        "2001:db8::1/128"
    ]
    with pytest.raises(ValueError, match="bad prefix"):
        parse_anycast_routes(["10.1.0.300/32        unicast [p 11:00] * (100)"])
    with pytest.raises(ValueError, match="without a prefix"):
        parse_anycast_routes(["                     unicast [p 11:00] (100)"])


def test_the_command_filters_on_the_shared_community() -> None:
    assert show_anycast_command() == (
        "show route all where bgp_large_community ~ [(4200000000, 1, *)]"
    )


# Weights ---------------------------------------------------------------------------


def test_each_member_vm_is_one_share() -> None:
    assert anycast_members(parse_anycast_routes(GATEWAY)) == {
        "10.1.0.100/32": [("172.16.0.1", "l3f-f0", 2), ("172.16.0.3", "l3f-f1", 1)],
        "2001:db8:1::100/128": [("2001:db8:ff00::3", "l3f-f1", 1)],
    }


def test_paths_through_one_next_hop_add_up() -> None:
    # Behind a ToR: two hosts' paths (3 and 1 members) arrive via the same ToR.
    learned = {
        "10.1.0.9/32": [
            path("h1", 3, ("172.16.0.1", "f0", 1)),
            path("h2", 1, ("172.16.0.1", "f0", 1)),
            path("h3", 2, ("172.16.0.3", "f1", 1)),
        ]
    }
    assert anycast_members(learned) == {
        "10.1.0.9/32": [("172.16.0.1", "f0", 4), ("172.16.0.3", "f1", 2)]
    }


def test_a_multipath_route_spreads_its_count_over_its_hops() -> None:
    learned = {
        "10.1.0.9/32": [
            path("h1", 1, ("172.16.0.1", "f0", 1), ("172.16.0.3", "f1", 1)),
            path("h2", 1, ("172.16.0.5", "f2", 1)),
        ]
    }
    # Half a member behind each of h1's hops: weights 1, 1, 2.
    assert anycast_members(learned)["10.1.0.9/32"] == [
        ("172.16.0.1", "f0", 1),
        ("172.16.0.3", "f1", 1),
        ("172.16.0.5", "f2", 2),
    ]


def test_paths_without_a_count_or_a_next_hop_are_ignored() -> None:
    learned = {
        "10.1.0.9/32": [path("h1", None, ("172.16.0.1", "f0", 1)), path("h2", 2)],
        "10.1.0.10/32": [path("h1", None, ("172.16.0.1", "f0", 1))],
    }
    assert anycast_members(learned) == {}


def test_weights_are_capped_in_ratio() -> None:
    weights = integer_weights({"a": Fraction(1000), "b": Fraction(10), "c": Fraction(1)})
    assert weights == {"a": MAX_WEIGHT, "b": 3, "c": 1}
    assert integer_weights({"a": Fraction(2, 3), "b": Fraction(1, 3)}) == {"a": 2, "b": 1}


# Diffing and the kernel side ---------------------------------------------------------


class FakeBird:
    """A BirdControl answering with fixed lines (or failing)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.fail: Exception | None = None
        self.commands: list[str] = []

    def request(self, command: str) -> list[tuple[int, str]]:
        self.commands.append(command)
        if self.fail:
            raise self.fail
        return [(1007, line) for line in self.lines] + [(0, "")]


class FakeRoutes:
    def __init__(self) -> None:
        self.calls: list[dict[str, list[Member]]] = []
        self.refuse: list[NexthopFailure] = []

    def converge(self, desired: Mapping[str, Sequence[Member]]) -> NexthopPlan:
        self.calls.append({k: list(v) for k, v in desired.items()})
        plan = NexthopPlan(groups_delete=[1])  # something changed
        if self.refuse:
            raise ProgrammingError(self.refuse, plan)
        return plan

    def close(self) -> None:
        pass


def make_sync(bird: FakeBird, routes: FakeRoutes, clock: list[float]) -> AnycastSync:
    return AnycastSync(bird, routes=lambda: routes, resync_s=10.0, clock=lambda: clock[0])  # type: ignore[arg-type]


def test_only_differences_reach_the_kernel() -> None:
    bird, routes, clock = FakeBird(GATEWAY), FakeRoutes(), [100.0]
    sync = make_sync(bird, routes, clock)
    assert sync.step() is True  # the first poll converges against the kernel
    clock[0] += 0.1
    assert sync.step() is False and len(routes.calls) == 1  # same answer: kernel untouched
    # A member of h1 turns unhealthy: its count drops from 2 to 1.
    bird.lines = [line.replace("(4200000000, 1, 2)", "(4200000000, 1, 1)") for line in GATEWAY]
    clock[0] += 0.1
    sync.step()
    assert routes.calls[-1]["10.1.0.100/32"] == [
        ("172.16.0.1", "l3f-f0", 1),
        ("172.16.0.3", "l3f-f1", 1),
    ]
    # h2 withdraws the IPv6 address: the prefix leaves the desired state.
    bird.lines = bird.lines[:18]
    clock[0] += 0.1
    sync.step()
    assert "2001:db8:1::100/128" not in routes.calls[-1]
    status = sync.status()
    assert [p["prefix"] for p in status["prefixes"]] == ["10.1.0.100/32"]
    assert status["prefixes"][0]["next_hops"][0] == {
        "via": "172.16.0.1",
        "dev": "l3f-f0",
        "weight": 1,
    }


def test_a_full_converge_every_resync_interval_repairs_drift() -> None:
    bird, routes, clock = FakeBird(GATEWAY), FakeRoutes(), [100.0]
    sync = make_sync(bird, routes, clock)
    sync.step()
    clock[0] += 9.9
    sync.step()
    assert len(routes.calls) == 1
    clock[0] += 0.2
    sync.step()
    assert len(routes.calls) == 2


def test_bird_not_answering_changes_nothing() -> None:
    bird, routes, clock = FakeBird(GATEWAY), FakeRoutes(), [100.0]
    sync = make_sync(bird, routes, clock)
    sync.step()
    for failure in (ConnectionRefusedError("no socket"), BirdError("show", 8001, "down")):
        bird.fail = failure
        clock[0] += 20.0
        assert sync.step() is False
    assert len(routes.calls) == 1  # no withdrawal because BIRD is away
    assert [p["prefix"] for p in sync.status()["prefixes"]] == [
        "10.1.0.100/32",
        "2001:db8:1::100/128",
    ]


def test_a_refused_change_is_reported_and_retried_soon() -> None:
    bird, routes, clock = FakeBird(GATEWAY), FakeRoutes(), [100.0]
    routes.refuse = [NexthopFailure("10.1.0.100/32 via 172.16.0.1 dev l3f-f0", 19, "no such interface")]  # fmt: skip
    sync = make_sync(bird, routes, clock)
    sync.step()
    assert "no such interface" in sync.status()["errors"][0]
    clock[0] += 0.5
    sync.step()
    assert len(routes.calls) == 1  # not at every poll
    clock[0] += 0.6
    routes.refuse = []
    sync.step()
    assert len(routes.calls) == 2 and sync.status()["errors"] == []


def test_one_slow_poll_does_not_put_the_next_one_far_away() -> None:
    """A poll that waited long for the kernel is followed by a short pause, not as long a one."""
    bird, clock = FakeBird(GATEWAY), [100.0]

    class SlowRoutes(FakeRoutes):
        def converge(self, desired: Mapping[str, Sequence[Member]]) -> NexthopPlan:
            clock[0] += 120.0  # rtnl held elsewhere for two minutes
            return super().converge(desired)

    sync = make_sync(bird, SlowRoutes(), clock)
    pauses: list[float] = []

    def wait(timeout: float) -> bool:
        pauses.append(timeout)
        sync._poller.stop(timeout=0)  # one round is enough
        return True

    sync._poller._wake.wait = wait  # type: ignore[method-assign]
    sync._poller._run()
    assert pauses and pauses[0] <= 0.5


def test_the_pass_and_the_poll_share_one_writer() -> None:
    bird, routes, clock = FakeBird(GATEWAY), FakeRoutes(), [100.0]
    sync = make_sync(bird, routes, clock)
    # The gateway pass repairs a group (gateway/ops.py AnycastGroupsSet) ...
    wanted = anycast_members(parse_anycast_routes(GATEWAY))
    op = AnycastGroupsSet(groups=tuple((p, tuple(m)) for p, m in sorted(wanted.items())))
    assert sync.apply(op) == OK and routes.calls == [wanted]
    assert [p["prefix"] for p in sync.status()["prefixes"]] == sorted(wanted)
    # ... and the poll that follows knows it: the same answer touches nothing.
    clock[0] += 0.1
    assert sync.step() is False and len(routes.calls) == 1
    # A refused change is the op's error, for the pass's metrics.
    routes.refuse = [NexthopFailure("group 7", 22)]
    assert sync.apply(op).errors == ("anycast: group 7: Invalid argument",)
