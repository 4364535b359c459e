"""Resilient anycast routes: input validation, the plan (kernel state in, changes out), encoding."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from l3fabric.dataplane.nexthops import (
    NEXTHOP_GRP_TYPE_MPATH,
    NEXTHOP_GRP_TYPE_RES,
    NH_ID_FIRST,
    RTPROT_L3FABRIC_ANYCAST,
    Hop,
    IdAllocator,
    KernelAnycastRoute,
    KernelNexthop,
    ResilientParams,
    encode_group,
    encode_hop,
    encode_route,
    parse_desired,
    parse_nexthop,
    parse_route,
    plan_groups,
    plan_hops,
)

P = RTPROT_L3FABRIC_ANYCAST
NET = ipaddress.ip_network("203.0.113.10/32")
A, B, C = (Hop(socket.AF_INET, f"10.0.0.{i}", 5) for i in (1, 2, 3))
PARAMS = ResilientParams()


def hops(*pairs: tuple[int, Hop]) -> dict[int, KernelNexthop]:
    return {i: KernelNexthop(i, P, hop=h) for i, h in pairs}


def group(gid: int, members: tuple[tuple[int, int], ...], **kw: object) -> KernelNexthop:
    kw.setdefault("group_type", NEXTHOP_GRP_TYPE_RES)
    kw.setdefault("res", PARAMS)
    return KernelNexthop(gid, P, members=members, **kw)  # type: ignore[arg-type]


def plan(wanted, ours, routes, params=PARAMS, metric=10):  # type: ignore[no-untyped-def]
    ids = IdAllocator(ours)
    hop_ids, create = plan_hops({h for hs in wanted.values() for h in hs}, ours, ids)
    result, members = plan_groups(wanted, hop_ids, ours, routes, params, metric, ids)
    return result, members, create


# parse_desired -------------------------------------------------------------------


def test_desired_is_validated_with_the_culprit_named() -> None:
    cases = [
        ({"203.0.113.1/24": []}, "bad anycast prefix"),
        ({"203.0.113.1/32": [("10.0.0.1", "eth0")]}, "a member is"),
        ({"203.0.113.1/32": [("2001:db8::1", "eth0", 1)]}, "is not IPv4"),
        ({"203.0.113.1/32": [("10.0.0.300", "eth0", 1)]}, "bad gateway"),
        ({"203.0.113.1/32": [(None, "a/b", 1)]}, "bad interface name"),
        ({"203.0.113.1/32": [(None, "eth0", 0)]}, "weight"),
        ({"203.0.113.1/32": [(None, "eth0", 257)]}, "weight"),
        ({"203.0.113.1/32": [(None, "eth0", 1), (None, "eth0", 2)]}, "given twice"),
    ]
    for desired, message in cases:
        with pytest.raises(ValueError, match=message):
            parse_desired(desired)


def test_desired_keeps_families_and_drops_empty_prefixes() -> None:
    wanted = parse_desired(
        {
            "2001:db8::a/128": [(None, "eth0", 3), ("2001:db8::0001", "eth1", 1)],
            "203.0.113.9/32": [],
        }
    )
    assert wanted == {
        ipaddress.ip_network("2001:db8::a/128"): {
            (socket.AF_INET6, None, "eth0"): 3,
            (socket.AF_INET6, "2001:db8::1", "eth1"): 1,
        }
    }


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="buckets"):
        ResilientParams(buckets=0)
    with pytest.raises(ValueError, match="idle_timer"):
        ResilientParams(idle_timer=-1)


# planning --------------------------------------------------------------------------


def test_fresh_prefix_creates_hops_group_and_route() -> None:
    result, members, create = plan({NET: {A: 1, B: 2}}, {}, {})
    assert create == {A: NH_ID_FIRST, B: NH_ID_FIRST + 1}
    assert result.groups_create == {NET: NH_ID_FIRST + 2}
    assert members[NH_ID_FIRST + 2] == ((NH_ID_FIRST, 1), (NH_ID_FIRST + 1, 2))
    assert result.routes_replace == {NET: NH_ID_FIRST + 2}
    assert not (result.routes_delete or result.groups_delete or result.hops_delete)


def test_ids_skip_those_in_use_by_anyone() -> None:
    ids = IdAllocator([NH_ID_FIRST, NH_ID_FIRST + 2])
    assert [ids.take(), ids.take()] == [NH_ID_FIRST + 1, NH_ID_FIRST + 3]


def test_unchanged_state_plans_nothing() -> None:
    ours = {**hops((1, A), (2, B)), 10: group(10, ((1, 1), (2, 2)))}
    result, _, create = plan({NET: {A: 1, B: 2}}, ours, {NET: KernelAnycastRoute(10, 10)})
    assert result.empty and not create
    assert result.unchanged == 1


def test_removing_a_member_replaces_the_group_in_place() -> None:
    ours = {**hops((1, A), (2, B), (3, C)), 10: group(10, ((1, 1), (2, 1), (3, 1)))}
    result, members, _ = plan({NET: {A: 1, B: 1}}, ours, {NET: KernelAnycastRoute(10, 10)})
    # Same group id: the kernel keeps A's and B's buckets; the route is not touched.
    assert result.groups_replace == {NET: 10}
    assert members[10] == ((1, 1), (2, 1))
    assert not result.groups_create and not result.routes_replace
    assert result.hops_delete == [3]


def test_adding_a_member_and_changing_a_weight_are_in_place() -> None:
    ours = {**hops((1, A)), 10: group(10, ((1, 1),))}
    result, members, create = plan({NET: {A: 2, B: 1}}, ours, {NET: KernelAnycastRoute(10, 10)})
    assert create == {B: NH_ID_FIRST}
    assert result.groups_replace == {NET: 10}
    assert members[10] == ((1, 2), (NH_ID_FIRST, 1))


def test_timers_change_in_place_but_buckets_need_a_new_group() -> None:
    ours = {**hops((1, A)), 10: group(10, ((1, 1),))}
    routes = {NET: KernelAnycastRoute(10, 10)}
    result, _, _ = plan({NET: {A: 1}}, ours, routes, params=ResilientParams(idle_timer=30))
    assert result.groups_replace == {NET: 10}
    result, _, _ = plan({NET: {A: 1}}, ours, routes, params=ResilientParams(buckets=64))
    assert result.groups_create == {NET: NH_ID_FIRST}
    assert result.routes_replace == {NET: NH_ID_FIRST}
    assert result.groups_delete == [10]
    assert result.hops_delete == []


def test_a_route_on_a_plain_group_moves_to_a_resilient_one() -> None:
    ours = {**hops((1, A)), 10: group(10, ((1, 1),), group_type=NEXTHOP_GRP_TYPE_MPATH, res=None)}
    result, _, _ = plan({NET: {A: 1}}, ours, {NET: KernelAnycastRoute(10, 10)})
    assert result.groups_create == {NET: NH_ID_FIRST}
    assert result.groups_delete == [10]


def test_last_member_gone_removes_route_group_and_hops() -> None:
    ours = {**hops((1, A), (2, B)), 10: group(10, ((1, 1), (2, 1)))}
    result, _, _ = plan({}, ours, {NET: KernelAnycastRoute(10, 10)})
    assert result.routes_delete == [(NET, 10)]
    assert result.groups_delete == [10]
    assert result.hops_delete == [1, 2]


def test_wrong_metric_is_deleted_then_replaced() -> None:
    ours = {**hops((1, A)), 10: group(10, ((1, 1),))}
    result, _, _ = plan({NET: {A: 1}}, ours, {NET: KernelAnycastRoute(10, 1024)})
    assert result.routes_delete == [(NET, 1024)]
    assert result.routes_replace == {NET: 10}


def test_two_prefixes_never_share_a_group_and_hops_are_shared() -> None:
    other = ipaddress.ip_network("203.0.113.11/32")
    ours = {**hops((1, A)), 10: group(10, ((1, 1),))}
    routes = {NET: KernelAnycastRoute(10, 10), other: KernelAnycastRoute(10, 10)}
    result, _, create = plan({NET: {A: 1}, other: {A: 1}}, ours, routes)
    assert not create
    assert result.groups_create == {other: NH_ID_FIRST}
    assert result.routes_replace == {other: NH_ID_FIRST}
    assert result.unchanged == 1


def test_duplicate_and_orphan_objects_are_removed() -> None:
    # Left over by a crash: two objects for hop A, a group no route uses.
    ours = {**hops((1, A), (2, A)), 10: group(10, ((1, 1),)), 11: group(11, ((2, 1),))}
    result, _, _ = plan({NET: {A: 1}}, ours, {NET: KernelAnycastRoute(10, 10)})
    assert result.unchanged == 1
    assert result.groups_delete == [11]
    assert result.hops_delete == [2]


def test_a_hop_without_id_is_left_out_and_an_empty_prefix_loses_its_route() -> None:
    ours = {**hops((1, A)), 10: group(10, ((1, 1),))}
    ids = IdAllocator(ours)
    wanted = {NET: {A: 1}}
    result, _ = plan_groups(wanted, {}, ours, {NET: KernelAnycastRoute(10, 10)}, PARAMS, 10, ids)
    assert result.routes_delete == [(NET, 10)]
    assert result.groups_delete == [10] and result.hops_delete == [1]


# encoding --------------------------------------------------------------------------


def test_group_round_trips_through_the_parser() -> None:
    params = ResilientParams(buckets=64, idle_timer=30, unbalanced_timer=600)
    data = encode_group(77, [(1, 1), (2, 256)], params, P)
    nh = parse_nexthop(data, 0, len(data))
    assert nh == KernelNexthop(77, P, members=((1, 1), (2, 256)), group_type=NEXTHOP_GRP_TYPE_RES, res=params)  # fmt: skip


@pytest.mark.parametrize(
    "hop",
    [Hop(socket.AF_INET, None, 7), Hop(socket.AF_INET6, "2001:db8::1", 3), A],
)
def test_hop_round_trips_through_the_parser(hop: Hop) -> None:
    data = encode_hop(5, hop, P)
    assert parse_nexthop(data, 0, len(data)) == KernelNexthop(5, P, hop=hop)


def test_route_round_trips_and_other_protocols_are_ignored() -> None:
    net6 = ipaddress.ip_network("2001:db8::a/128")
    data = encode_route(net6, 42, 10, P)
    assert parse_route(data, 0, len(data), P) == (net6, KernelAnycastRoute(42, 10))
    assert parse_route(data, 0, len(data), 96) is None
