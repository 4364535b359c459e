"""The announcement messages: a blackhole per endpoint in table 150, protocol 96, no device."""

from __future__ import annotations

import socket
import struct

import pytest

from l3fabric.dataplane.announce import ENDPOINTS_TABLE, RTN_BLACKHOLE, encode
from l3fabric.dataplane.netlink_batch import NLM_F_REPLACE, RTM_DELROUTE, RTM_NEWROUTE
from l3fabric.dataplane.routes import RTPROT_L3FABRIC

_HEAD = struct.Struct("=IHHII BBBBBBBBI HH")


@pytest.mark.parametrize(
    ("prefix", "family", "length", "dst"),
    [
        ("10.1.0.5/32", socket.AF_INET, 32, bytes([10, 1, 0, 5])),
        ("2001:db8::5/128", socket.AF_INET6, 128, socket.inet_pton(socket.AF_INET6, "2001:db8::5")),
    ],
)
def test_an_announcement_is_a_blackhole_of_ours_in_its_table(prefix, family, length, dst) -> None:
    for add, kind in ((True, RTM_NEWROUTE), (False, RTM_DELROUTE)):
        message = encode(prefix, add)
        size, mkind, flags, *_, fam, dst_len, _s, _t, table, proto, _sc, rtype, _f, _al, _at = (
            _HEAD.unpack_from(message)
        )
        assert (size, mkind, fam, dst_len) == (len(message), kind, family, length)
        assert (table, proto, rtype) == (ENDPOINTS_TABLE, RTPROT_L3FABRIC, RTN_BLACKHOLE)
        assert bool(flags & NLM_F_REPLACE) == add
        assert message.endswith(dst)


@pytest.mark.parametrize("prefix", ["10.1.0.0/24", "10.1.0.5", "2001:db8::/64", "x/32"])
def test_only_host_prefixes_are_announced(prefix: str) -> None:
    with pytest.raises((ValueError, OSError)):
        encode(prefix, True)
