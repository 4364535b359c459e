"""IPAM pool arithmetic and the allocator over a real (in-memory SQLite) store."""

from __future__ import annotations

import ipaddress

import pytest

from l3fabric.ipam import Allocator, default_pools, parse_pools, pools_to_api, subtract, walk
from l3fabric.keys import ipam_key
from l3fabric.store.sqlite import SqliteStore


def net(text: str):
    return ipaddress.ip_network(text)


def api(pools, version=4):
    return [(p["start"], p["end"]) for p in pools_to_api(pools, version)]


def test_default_v4_pool_skips_network_gateway_and_broadcast() -> None:
    pools = default_pools(net("10.0.0.0/27"), ipaddress.ip_address("10.0.0.1"))
    assert api(pools) == [("10.0.0.2", "10.0.0.30")]


def test_gateway_in_the_middle_splits_the_pool() -> None:
    pools = default_pools(net("10.0.0.0/29"), ipaddress.ip_address("10.0.0.3"))
    assert api(pools) == [("10.0.0.1", "10.0.0.2"), ("10.0.0.4", "10.0.0.6")]


def test_default_v6_pool_keeps_the_last_address() -> None:
    pools = default_pools(net("2001:db8::/124"), ipaddress.ip_address("2001:db8::1"))
    assert api(pools, 6) == [("2001:db8::2", "2001:db8::f")]


def test_tiny_subnets() -> None:
    assert default_pools(net("10.0.0.0/31"), None) == []
    assert api(default_pools(net("10.0.0.7/32"), None)) == [("10.0.0.7", "10.0.0.7")]


def test_subtract_at_the_edges() -> None:
    assert subtract([(1, 5)], 1) == [(2, 5)]
    assert subtract([(1, 5)], 5) == [(1, 4)]
    assert subtract([(1, 1)], 1) == []


@pytest.mark.parametrize(
    ("pools", "why"),
    [
        ([{"start": "10.0.1.1", "end": "10.0.1.5"}], "not inside"),
        ([{"start": "10.0.0.9", "end": "10.0.0.5"}], "start is after end"),
        ([{"start": "10.0.0.0", "end": "10.0.0.5"}], "network or broadcast"),
        (
            [{"start": "10.0.0.2", "end": "10.0.0.9"}, {"start": "10.0.0.9", "end": "10.0.0.20"}],
            "overlap",
        ),
    ],
)
def test_bad_pools_say_why(pools, why) -> None:
    with pytest.raises(ValueError, match=why):
        parse_pools(net("10.0.0.0/24"), pools)


def test_walk_starts_at_the_cursor_and_wraps_once() -> None:
    assert list(walk([(1, 3), (10, 11)], 3)) == [3, 10, 11, 1, 2]
    assert list(walk([(1, 3)], 99)) == [1, 2, 3]


def _subnet(cidr="10.0.0.0/29", pools=(("10.0.0.2", "10.0.0.6"),)):
    return {
        "id": "s1",
        "ip_version": ipaddress.ip_network(cidr).version,
        "allocation_pools": [{"start": a, "end": b} for a, b in pools],
    }


def _claim(store, address, port="p"):
    store.create(
        ipam_key("s1", address), {"port_id": port, "subnet_id": "s1", "ip_address": address}
    )


def test_allocator_picks_in_order_and_skips_what_the_store_holds() -> None:
    store = SqliteStore(":memory:")
    _claim(store, "10.0.0.2")
    _claim(store, "10.0.0.4")
    allocator = Allocator(store)
    picks = [allocator.pick(_subnet()) for _ in range(3)]
    assert picks == ["10.0.0.3", "10.0.0.5", "10.0.0.6"]


def test_allocator_reports_full_only_when_the_store_is_full() -> None:
    store = SqliteStore(":memory:")
    allocator = Allocator(store)
    subnet = _subnet(pools=(("10.0.0.2", "10.0.0.3"),))
    first, second = allocator.pick(subnet), allocator.pick(subnet)
    _claim(store, first)
    # The second pick was never claimed: once the cursor has wrapped, a re-read finds it free.
    assert allocator.pick(subnet) == second
    _claim(store, second)
    assert allocator.pick(subnet) is None


def test_allocator_reuses_an_address_another_process_released() -> None:
    store = SqliteStore(":memory:")
    allocator = Allocator(store)
    subnet = _subnet(pools=(("10.0.0.2", "10.0.0.3"),))
    for _ in range(2):
        _claim(store, allocator.pick(subnet))
    assert allocator.pick(subnet) is None
    store.delete(ipam_key("s1", "10.0.0.2"))  # as if released by another server
    assert allocator.pick(subnet) == "10.0.0.2"


def test_collision_makes_the_next_pick_reread() -> None:
    store = SqliteStore(":memory:")
    allocator = Allocator(store)
    subnet = _subnet()
    assert allocator.pick(subnet) == "10.0.0.2"
    _claim(store, "10.0.0.3", port="other")  # behind this allocator's back
    assert allocator.pick(subnet) == "10.0.0.3"  # so it offers it, and the Create fails
    allocator.collided("s1", "10.0.0.3")
    assert allocator.pick(subnet) == "10.0.0.4"


def test_exclude_keeps_one_request_from_picking_twice() -> None:
    allocator = Allocator(SqliteStore(":memory:"))
    v6 = _subnet("2001:db8::/64", (("2001:db8::2", "2001:db8::ffff"),))
    first = allocator.pick(v6)
    assert allocator.pick(v6, {first, "2001:db8::3"}) == "2001:db8::4"
