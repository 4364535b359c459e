"""The add-one measurement's pure parts: route notifications parsed, samples summarised."""

from __future__ import annotations

import socket

from l3fabric.bench.routes_add_one import RTPROT_BIRD, new_routes, summary
from l3fabric.dataplane.netlink import NLMSGHDR, RTATTR, RTMSG, message
from l3fabric.dataplane.netlink_batch import RTA_DST, RTM_DELROUTE, RTM_NEWROUTE

_ROUTE = message(NLMSGHDR, RTMSG, RTATTR, "4s")


def _route(kind: int, address: str, plen: int, protocol: int) -> bytes:
    return _ROUTE.pack(
        _ROUTE.size, kind, 0, 0, 0,
        socket.AF_INET, plen, 0, 0, 254, protocol, 0, 1, 0,
        8, RTA_DST, socket.inet_aton(address),
    )  # fmt: skip


def test_new_routes_of_a_notification_with_several_messages() -> None:
    data = (
        _route(RTM_NEWROUTE, "10.1.0.5", 32, RTPROT_BIRD)
        + _route(RTM_DELROUTE, "10.1.0.6", 32, RTPROT_BIRD)
        + _route(RTM_NEWROUTE, "10.2.0.0", 24, 4)
    )
    assert list(new_routes(data)) == [
        (socket.inet_aton("10.1.0.5"), 32, RTPROT_BIRD),
        (socket.inet_aton("10.2.0.0"), 24, 4),
    ]
    assert list(new_routes(data[:10])) == []  # a truncated message is no route


def test_summary_takes_medians_and_says_if_any_sample_waited_behind_a_full_pass() -> None:
    samples = [
        {"s": 0.004, "pass_s": 0.002, "routes_s": 0.001, "behind_full": 0.0, "pass_incremental": 1.0},
        {"s": 0.300, "pass_s": 0.250, "behind_full": 1.0, "pass_incremental": 0.0},
        {"s": 0.006, "pass_s": 0.003, "routes_s": 0.002, "behind_full": 0.0, "pass_incremental": 1.0},
    ]  # fmt: skip
    found = summary(samples, "add_one")
    assert found["add_one_s"] == 0.006 and found["add_one_pass_s"] == 0.003
    assert found["add_one_routes_s"] == 0.001  # a step a pass did not have counts as 0
    assert found["add_one_min_s"] == 0.004 and found["add_one_max_s"] == 0.3
    assert found["add_one_behind_full"] == 1 and found["add_one_pass_incremental"] == 0
    assert found["add_one_samples"] == 3
