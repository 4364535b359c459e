"""The host's BGP announcements of its endpoints: blackhole routes in a kernel table BIRD learns.

For each endpoint (a /32 or /128 whose real route is in the main table) the
agent writes ``blackhole PREFIX table 150 proto 96``; BIRD's kernel protocol
``endpoints4``/``endpoints6`` learns that table and announces what it finds
(routing/bird_config.py). No ip rule points at the table, so these routes
never forward anything. Announcing or withdrawing one endpoint is one netlink
message, whatever the host holds: no BIRD configure, which re-parses the
whole config (~50 ms with 10,000 endpoints in it).

Messages are packed here (blackhole: no device, universe scope) and sent
through ``netlink_batch.RouteSocket`` (one socket, every ack checked).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable

from l3fabric.addresses import host_prefix_packed
from l3fabric.dataplane.netlink import NLMSGHDR, RTATTR, RTMSG, message
from l3fabric.dataplane.netlink_batch import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    RT_SCOPE_UNIVERSE,
    RTA_DST,
    RTM_DELROUTE,
    RTM_NEWROUTE,
    RouteFailure,
    RouteRequest,
    RouteSocket,
)
from l3fabric.dataplane.routes import RTPROT_L3FABRIC

# The kernel table of the announcements (no ip rule uses it: never forwards).
ENDPOINTS_TABLE = 150
RTN_BLACKHOLE = 6
# nlmsghdr, rtmsg, RTA_DST: a blackhole names no device.
_MESSAGE = {
    4: message(NLMSGHDR, RTMSG, RTATTR, "4s"),
    6: message(NLMSGHDR, RTMSG, RTATTR, "16s"),
}


def encode(prefix: str, add: bool, table: int = ENDPOINTS_TABLE) -> bytes:
    """The netlink message adding (replacing) or deleting the blackhole for ``prefix``."""
    family, dst = host_prefix_packed(prefix)  # ValueError unless a /32 or /128
    shape = _MESSAGE[6 if family == socket.AF_INET6 else 4]
    kind = RTM_NEWROUTE if add else RTM_DELROUTE
    flags = NLM_F_REQUEST | NLM_F_ACK | (NLM_F_CREATE | NLM_F_REPLACE if add else 0)
    return shape.pack(
        shape.size, kind, flags, 0, 0,
        family, len(dst) * 8, 0, 0, table, RTPROT_L3FABRIC, RT_SCOPE_UNIVERSE, RTN_BLACKHOLE, 0,
        4 + len(dst), RTA_DST, dst,
    )  # fmt: skip


class Announcements:
    """The blackhole announcements in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None, table: int = ENDPOINTS_TABLE) -> None:
        self.table = table
        self._sock = RouteSocket(netns)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Announcements:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> frozenset[str]:
        """The prefixes announced now (our blackholes in the table, both families)."""
        found: set[str] = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            routes = self._sock.dump(family, RTPROT_L3FABRIC, self.table)
            found.update(str(net) for net, route in routes.items() if route.type == RTN_BLACKHOLE)
        return frozenset(found)

    def apply(self, add: Iterable[str], delete: Iterable[str]) -> list[RouteFailure]:
        """Delete, then add the blackholes of these prefixes; the refused changes.

        A delete of one that is gone already is not a failure.
        """
        requests = [("delete", p) for p in delete] + [("replace", p) for p in add]
        if not requests:
            return []
        refused = self._sock.send_batch(
            [encode(p, op == "replace", self.table) for op, p in requests]
        )
        return [
            RouteFailure(RouteRequest(requests[i][0], ipaddress.ip_network(requests[i][1])), e, m)  # type: ignore[arg-type]
            for i, (e, m) in refused.items()
            if not (requests[i][0] == "delete" and e == errno.ESRCH)
        ]
