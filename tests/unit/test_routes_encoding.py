"""Hand-packed route messages must equal what pyroute2 encodes for the same route."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from l3fabric.dataplane.netlink_batch import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    RT_SCOPE_LINK,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RTM_DELROUTE,
    RTM_NEWROUTE,
    RouteRequest,
    encode_route,
)
from l3fabric.dataplane.routes import RTPROT_L3FABRIC, parse_desired


def pyroute2_encoding(kind, flags, seq, prefix, scope, oif):
    net = ipaddress.ip_network(prefix)
    msg = rtmsg()
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["family"] = socket.AF_INET if net.version == 4 else socket.AF_INET6
    msg["dst_len"] = net.prefixlen
    msg["table"] = 254
    msg["proto"] = RTPROT_L3FABRIC
    msg["scope"] = scope
    msg["type"] = 1
    msg["attrs"] = [["RTA_DST", str(net.network_address)]]
    if oif:
        msg["attrs"].append(["RTA_OIF", oif])
    msg.encode()
    return bytes(msg.data)


@pytest.mark.parametrize(
    ("prefix", "scope"), [("10.1.0.5/32", RT_SCOPE_LINK), ("2001:db8::5/128", RT_SCOPE_UNIVERSE)]
)
def test_replace_matches_pyroute2(prefix, scope) -> None:
    ours = encode_route(
        RouteRequest("replace", ipaddress.ip_network(prefix), 7), 42, RTPROT_L3FABRIC
    )
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    assert ours == pyroute2_encoding(RTM_NEWROUTE, flags, 42, prefix, scope, 7)


def test_delete_matches_pyroute2() -> None:
    net = ipaddress.ip_network("10.1.0.5/32")
    ours = encode_route(RouteRequest("delete", net), 9, RTPROT_L3FABRIC)
    expected = pyroute2_encoding(
        RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, 9, str(net), RT_SCOPE_NOWHERE, 0
    )
    assert ours == expected


@pytest.mark.parametrize(
    ("desired", "message"),
    [
        ({"10.1.0.5/24": "tap1"}, "host bits"),
        ({"nonsense": "tap1"}, "bad route prefix"),
        ({"10.1.0.5/32": "a-name-longer-than-15"}, "bad interface name"),
    ],
)
def test_bad_desired_state_is_refused(desired, message) -> None:
    with pytest.raises(ValueError, match=message):
        parse_desired(desired)
