"""Anycast routes as kernel resilient nexthop groups: converge them to a desired mapping.

``ResilientRoutes.converge({prefix: [(gateway or None, ifname, weight), ...]})``
owns, in one namespace, every nexthop object and every main-table route of
protocol ``RTPROT_L3FABRIC_ANYCAST`` (97) and nothing else:

- one nexthop object per distinct (family, gateway, interface);
- one ``type resilient`` group per prefix, members weighted;
- the route ``prefix nhid GROUP proto 97 metric 10``.

Only differences are written. A member joining or leaving is an in-place
replace of the existing group: the kernel keeps the buckets of the members
that stay, so their established flows keep their member (that is the point;
a plain multipath route rehashes everything). Changing the bucket count is
impossible in place, so that case builds a new group and repoints the route.
The kernel is the only state: every call reads our objects and their ids back.

Why protocol 97, not 96 (``RTPROT_L3FABRIC``): ``EndpointRoutes`` deletes
every protocol-96 route it was not given, and an anycast route installed here
must not be removed by the endpoint converger. (BIRD learns no kernel route:
what a host announces is named in its config, so an anycast route the gateway
installed is never re-announced.) Metric 10 sits below BIRD's
own kernel metric (32), so BIRD's plain multipath route for the same prefix
may stay installed underneath as a fallback while ours forwards.

pyroute2 0.9.7 has no nexthop-object messages (no ``nh()``, no
RTM_NEWNEXTHOP encoding) and ``ip -batch`` cannot choose the address family
of a device-only nexthop per line nor print it, so the few fixed-shape
messages are packed here with ``struct`` on the project's netlink socket
(``netlink_batch.RouteSocket``), every acknowledgement checked.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from l3fabric.dataplane import ifnames
from l3fabric.dataplane.netlink import (
    NHMSG,
    NLA_F_NESTED,
    NLA_TYPE_MASK,
    NLMSGHDR,
    RTATTR,
    RTMSG,
    U16,
    U32,
)
from l3fabric.dataplane.netlink_batch import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    RT_SCOPE_NOWHERE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTA_DST,
    RTA_TABLE,
    RTM_DELROUTE,
    RTM_GETROUTE,
    RTM_NEWROUTE,
    RTN_UNICAST,
    Network,
    RouteSocket,
)

RTPROT_L3FABRIC_ANYCAST = 97
# Below BIRD's kernel-protocol metric (32): ours wins where both exist.
DEFAULT_METRIC = 10
# A group member's weight: 1..256 fits the classic nexthop_grp (weight - 1 in a
# byte) that every kernel with nexthop objects accepts.
MAX_WEIGHT = 256
# A host's groups use another bucket count than the gateway's. A bucket is
# ``hash % buckets``, and in the lab every router sees the same flow hash
# (the client socket's, carried across the veths; one kernel, one seed), so
# equal counts would send all of a host's flows from the gateway to the same
# few of its buckets: two members on a host got 3:1 instead of 1:1. Real
# routers hash with their own seeds; a prime count is uncorrelated anyway.
HOST_BUCKETS = 251
# Ids we allocate start here, far from the small ids people pick by hand.
NH_ID_FIRST = 1_000_000
NH_ID_LAST = 0xFFFFFFFF
USER_HZ = 100  # NHA_RES_GROUP timers are clock_t

# linux/rtnetlink.h, linux/nexthop.h
RTM_NEWNEXTHOP = 104
RTM_DELNEXTHOP = 105
RTM_GETNEXTHOP = 106
RTA_PRIORITY = 6
RTA_NH_ID = 30
NHA_ID = 1
NHA_GROUP = 2
NHA_GROUP_TYPE = 3
NHA_BLACKHOLE = 4
NHA_OIF = 5
NHA_GATEWAY = 6
NHA_RES_GROUP = 12
NHA_RES_GROUP_BUCKETS = 1
NHA_RES_GROUP_IDLE_TIMER = 2
NHA_RES_GROUP_UNBALANCED_TIMER = 3
NEXTHOP_GRP_TYPE_MPATH = 0
NEXTHOP_GRP_TYPE_RES = 1

_GRP = struct.Struct("=IBBH")  # nexthop_grp: id, weight - 1, weight_high, reserved
_SEND_CHUNK = 128 * 1024

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Hop:
    """One next hop: address family, gateway (None: directly on the link) and output ifindex."""

    family: int
    gateway: str | None
    oif: int

    def sort_key(self) -> tuple[int, str, int]:
        return self.family, self.gateway or "", self.oif


@dataclass(frozen=True)
class ResilientParams:
    """A resilient group's settings. Timers in seconds; 0 means never.

    ``idle_timer``: a bucket unused this long may move to an underweight member
    (a joining one); busy buckets stay. ``unbalanced_timer``: after the group
    was unbalanced this long, busy buckets move too (0: never).

    Only a *joining* member (or a weight going up) unbalances a group: the
    buckets of a member that leaves are handed out at once, and nobody else's
    move. The defaults trade the two goods against each other: a flow that
    sends nothing for 5 s while a member joins may be moved (and broken), and
    a member that joins a group whose buckets are all busy gets its share
    within 60 s at the latest, at the price of the flows in the buckets it
    then takes. The kernel's own defaults (120 s, never) would let a member
    that came back from a failure starve for as long as traffic keeps every
    bucket busy.
    """

    buckets: int = 128
    idle_timer: int = 5
    unbalanced_timer: int = 60

    def __post_init__(self) -> None:
        if not 1 <= self.buckets <= 0xFFFF:
            raise ValueError(f"buckets must be within 1..65535, got {self.buckets}")
        for name in ("idle_timer", "unbalanced_timer"):
            value = getattr(self, name)
            if not 0 <= value < 0xFFFFFFFF // USER_HZ:
                raise ValueError(f"{name} must be within 0..{0xFFFFFFFF // USER_HZ - 1} s, got {value}")  # fmt: skip


@dataclass(frozen=True)
class KernelNexthop:
    """A nexthop object as dumped: a single hop (``hop``) or a group (``members``)."""

    id: int
    protocol: int
    hop: Hop | None = None
    members: tuple[tuple[int, int], ...] = ()  # (member id, weight)
    group_type: int | None = None
    res: ResilientParams | None = None


@dataclass(frozen=True)
class KernelAnycastRoute:
    """One of our routes: the nexthop object it uses and its metric."""

    nhid: int | None
    metric: int


@dataclass
class NexthopPlan:
    """What one converge changes, in the order it is sent."""

    hops_create: dict[Hop, int] = field(default_factory=dict)
    groups_create: dict[Network, int] = field(default_factory=dict)
    groups_replace: dict[Network, int] = field(default_factory=dict)
    routes_replace: dict[Network, int] = field(default_factory=dict)
    routes_delete: list[tuple[Network, int]] = field(default_factory=list)
    groups_delete: list[int] = field(default_factory=list)
    hops_delete: list[int] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (
            self.hops_create or self.groups_create or self.groups_replace or self.routes_replace
            or self.routes_delete or self.groups_delete or self.hops_delete
        )  # fmt: skip


@dataclass(frozen=True)
class NexthopFailure:
    """A change the kernel refused (or could not be made), with errno and the kernel's text."""

    what: str
    errno: int
    message: str = ""

    def __str__(self) -> str:
        text = os.strerror(self.errno)
        return f"{self.what}: {text}" + (f" ({self.message})" if self.message else "")


class NexthopProgrammingError(RuntimeError):
    """Some anycast changes failed; everything else was applied. ``failures`` lists them."""

    def __init__(self, failures: list[NexthopFailure], plan: NexthopPlan) -> None:
        self.failures = failures
        self.plan = plan
        shown = "; ".join(str(f) for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} anycast change(s) failed: {shown}{more}")


# Desired state -------------------------------------------------------------------

Member = tuple[str | None, str, int]  # (gateway, ifname, weight)
Wanted = dict[Network, dict[tuple[int, str | None, str], int]]  # {(family, gw, ifname): weight}


def parse_desired(desired: Mapping[str, Sequence[Member]]) -> Wanted:
    """Validate ``{prefix: [(gateway, ifname, weight)]}``; ValueError names what is wrong.

    A prefix with no members is the same as an absent one (no route).
    """
    wanted: Wanted = {}
    for prefix, members in desired.items():
        try:
            net = ipaddress.ip_network(prefix, strict=True)
        except ValueError as exc:
            raise ValueError(f"bad anycast prefix {prefix!r}: {exc}") from None
        family = socket.AF_INET if net.version == 4 else socket.AF_INET6
        hops: dict[tuple[int, str | None, str], int] = {}
        for member in members:
            try:
                gateway, ifname, weight = member
            except (TypeError, ValueError):
                raise ValueError(f"{prefix}: a member is (gateway, ifname, weight), got {member!r}") from None  # fmt: skip
            gw: str | None = None
            if gateway is not None:
                try:
                    address = ipaddress.ip_address(gateway)
                except ValueError:
                    raise ValueError(f"{prefix}: bad gateway address {gateway!r}") from None
                if address.version != net.version:
                    raise ValueError(f"{prefix}: gateway {gateway} is not IPv{net.version}")
                gw = str(address)
            if not ifnames.plausible(ifname):
                raise ValueError(f"{prefix}: bad interface name {ifname!r}")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int)
                or not 1 <= weight <= MAX_WEIGHT
            ):
                raise ValueError(f"{prefix}: weight must be an integer within 1..{MAX_WEIGHT}, got {weight!r}")  # fmt: skip
            key = (family, gw, ifname)
            if key in hops:
                raise ValueError(f"{prefix}: member ({gw}, {ifname}) given twice")
            hops[key] = weight
        if hops:
            wanted[net] = hops
    return wanted


# Planning (pure: kernel state in, changes out) ------------------------------------


class IdAllocator:
    """Hands out the lowest nexthop ids >= NH_ID_FIRST that nobody in the namespace uses."""

    def __init__(self, used: Iterable[int]) -> None:
        self._used = set(used)
        self._next = NH_ID_FIRST

    def take(self) -> int:
        while self._next in self._used:
            self._next += 1
        if self._next > NH_ID_LAST:
            raise RuntimeError("no free nexthop id left")
        self._used.add(self._next)
        return self._next


def plan_hops(
    wanted: Iterable[Hop], ours: Mapping[int, KernelNexthop], ids: IdAllocator
) -> tuple[dict[Hop, int], dict[Hop, int]]:
    """Ids for every wanted hop: (all ids, the ones to create). Existing objects are reused."""
    existing: dict[Hop, int] = {}
    for nh in sorted(ours.values(), key=lambda n: n.id):
        if nh.hop is not None:
            existing.setdefault(nh.hop, nh.id)
    create = {
        hop: ids.take() for hop in sorted(set(wanted), key=Hop.sort_key) if hop not in existing
    }
    return {**existing, **create}, create


def plan_groups(
    wanted: Mapping[Network, Mapping[Hop, int]],
    hop_ids: Mapping[Hop, int],
    ours: Mapping[int, KernelNexthop],
    routes: Mapping[Network, KernelAnycastRoute],
    params: ResilientParams,
    metric: int,
    ids: IdAllocator,
) -> tuple[NexthopPlan, dict[int, tuple[tuple[int, int], ...]]]:
    """Groups and routes for ``wanted`` ({prefix: {hop: weight}}) given the hops' ids.

    Returns the plan and the members ((id, weight), sorted) of every group to
    create or replace. Hops without an id are left out of their groups; a
    prefix left with no member loses its route.
    """
    plan = NexthopPlan()
    final: dict[int, tuple[tuple[int, int], ...]] = {}  # every group that stays, its members
    owner: dict[int, Network] = {}
    changed: dict[int, tuple[tuple[int, int], ...]] = {}
    for net, hops in wanted.items():
        members = tuple(sorted((hop_ids[h], w) for h, w in hops.items() if h in hop_ids))
        if not members:
            continue
        route = routes.get(net)
        group = ours.get(route.nhid) if route is not None and route.nhid is not None else None
        if (
            group is not None
            and group.group_type == NEXTHOP_GRP_TYPE_RES
            and group.res is not None
            and group.res.buckets == params.buckets  # the kernel cannot change it in place
            and group.id not in final  # never share one group between prefixes
        ):
            gid = group.id
            if tuple(sorted(group.members)) != members or group.res != params:
                plan.groups_replace[net] = gid
                changed[gid] = members
        else:
            gid = ids.take()
            plan.groups_create[net] = gid
            changed[gid] = members
        final[gid] = members
        owner[gid] = net
        if route is None or route.nhid != gid or route.metric != metric:
            if route is not None and route.metric != metric:
                # A replace with another metric would add a second route.
                plan.routes_delete.append((net, route.metric))
            plan.routes_replace[net] = gid
        elif net not in plan.groups_replace:
            plan.unchanged += 1
    plan.routes_delete += [
        (net, r.metric)
        for net, r in routes.items()
        if net not in plan.routes_replace and (r.nhid is None or owner.get(r.nhid) != net)
    ]
    plan.groups_delete = sorted(i for i, nh in ours.items() if nh.hop is None and i not in final)
    in_use = {m for members in final.values() for m, _ in members}
    plan.hops_delete = sorted(i for i, nh in ours.items() if nh.hop is not None and i not in in_use)
    return plan, changed


# Netlink encoding -----------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    data = RTATTR.pack(4 + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def _message(kind: int, flags: int, body: bytes) -> bytes:
    # Sequence number 0: NexthopSocket stamps each message when it sends it.
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, 0, 0) + body


_WRITE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE


def encode_hop(nhid: int, hop: Hop, protocol: int) -> bytes:
    body = NHMSG.pack(hop.family, 0, protocol, 0, 0) + _attr(NHA_ID, U32.pack(nhid))
    body += _attr(NHA_OIF, U32.pack(hop.oif))
    if hop.gateway is not None:
        body += _attr(NHA_GATEWAY, ipaddress.ip_address(hop.gateway).packed)
    return _message(RTM_NEWNEXTHOP, _WRITE, body)


def encode_group(
    nhid: int, members: Sequence[tuple[int, int]], params: ResilientParams, protocol: int
) -> bytes:
    group = b"".join(_GRP.pack(m, (w - 1) & 0xFF, (w - 1) >> 8, 0) for m, w in members)
    res = (
        _attr(NHA_RES_GROUP_BUCKETS, U16.pack(params.buckets))
        + _attr(NHA_RES_GROUP_IDLE_TIMER, U32.pack(params.idle_timer * USER_HZ))
        + _attr(NHA_RES_GROUP_UNBALANCED_TIMER, U32.pack(params.unbalanced_timer * USER_HZ))
    )
    # Groups have no family of their own (the kernel insists on AF_UNSPEC).
    body = NHMSG.pack(socket.AF_UNSPEC, 0, protocol, 0, 0) + _attr(NHA_ID, U32.pack(nhid))
    body += _attr(NHA_GROUP, group) + _attr(NHA_GROUP_TYPE, U16.pack(NEXTHOP_GRP_TYPE_RES))
    body += _attr(NHA_RES_GROUP | NLA_F_NESTED, res)
    return _message(RTM_NEWNEXTHOP, _WRITE, body)


def encode_delete_nexthop(nhid: int) -> bytes:
    body = NHMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(NHA_ID, U32.pack(nhid))
    return _message(RTM_DELNEXTHOP, NLM_F_REQUEST | NLM_F_ACK, body)


def _family(net: Network) -> int:
    return socket.AF_INET if net.version == 4 else socket.AF_INET6


def encode_route(
    net: Network, nhid: int | None, metric: int, protocol: int, delete: bool = False
) -> bytes:
    """Replace (``nhid`` given) or delete (``delete=True``) ``net`` with ``metric``."""
    scope = RT_SCOPE_NOWHERE if delete else RT_SCOPE_UNIVERSE
    body = RTMSG.pack(_family(net), net.prefixlen, 0, 0, RT_TABLE_MAIN, protocol, scope, RTN_UNICAST, 0)  # fmt: skip
    body += _attr(RTA_DST, net.network_address.packed) + _attr(RTA_PRIORITY, U32.pack(metric))
    if delete:
        return _message(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, body)
    body += _attr(RTA_NH_ID, U32.pack(nhid or 0))
    return _message(RTM_NEWROUTE, _WRITE, body)


# Netlink decoding -----------------------------------------------------------------


def _attrs(data: memoryview | bytes, start: int, end: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while start + 4 <= end:
        length, kind = RTATTR.unpack_from(data, start)
        if length < 4:
            break
        found[kind & NLA_TYPE_MASK] = bytes(data[start + 4 : start + length])
        start += (length + 3) & ~3
    return found


def parse_nexthop(data: memoryview | bytes, offset: int, length: int) -> KernelNexthop | None:
    """The RTM_NEWNEXTHOP message at ``offset``; None for kinds we never make (blackholes)."""
    family, _scope, protocol, _r, _flags = NHMSG.unpack_from(data, offset + NLMSGHDR.size)
    attrs = _attrs(data, offset + NLMSGHDR.size + NHMSG.size, offset + length)
    if NHA_ID not in attrs or NHA_BLACKHOLE in attrs:
        return None
    nhid = U32.unpack(attrs[NHA_ID])[0]
    if NHA_GROUP in attrs:
        raw = attrs[NHA_GROUP]
        members = tuple(
            (m, (high << 8 | low) + 1)
            for m, low, high, _ in (_GRP.unpack_from(raw, i) for i in range(0, len(raw), _GRP.size))
        )
        gtype = U16.unpack_from(attrs.get(NHA_GROUP_TYPE, b"\0\0"))[0]
        res = None
        if NHA_RES_GROUP in attrs:
            nested = attrs[NHA_RES_GROUP]
            r = _attrs(nested, 0, len(nested))
            res = ResilientParams(
                U16.unpack_from(r[NHA_RES_GROUP_BUCKETS])[0],
                U32.unpack(r[NHA_RES_GROUP_IDLE_TIMER])[0] // USER_HZ,
                U32.unpack(r[NHA_RES_GROUP_UNBALANCED_TIMER])[0] // USER_HZ,
            )
        return KernelNexthop(nhid, protocol, members=members, group_type=gtype, res=res)
    gateway = None
    if NHA_GATEWAY in attrs:
        gateway = str(ipaddress.ip_address(attrs[NHA_GATEWAY]))
    oif = U32.unpack(attrs[NHA_OIF])[0] if NHA_OIF in attrs else 0
    return KernelNexthop(nhid, protocol, hop=Hop(family, gateway, oif))


def parse_route(
    data: memoryview | bytes, offset: int, length: int, protocol: int
) -> tuple[Network, KernelAnycastRoute] | None:
    """A main-table route of ``protocol`` from an RTM_NEWROUTE message, else None."""
    family, dst_len, _s, _t, table, proto, _sc, _ty, _f = RTMSG.unpack_from(data, offset + NLMSGHDR.size)  # fmt: skip
    if proto != protocol:
        return None
    attrs = _attrs(data, offset + NLMSGHDR.size + RTMSG.size, offset + length)
    if RTA_TABLE in attrs:
        table = U32.unpack(attrs[RTA_TABLE])[0]
    if table != RT_TABLE_MAIN:
        return None
    size = 4 if family == socket.AF_INET else 16
    dst = attrs.get(RTA_DST, bytes(size))
    net = ipaddress.ip_network((ipaddress.ip_address(dst), dst_len))
    nhid = U32.unpack(attrs[RTA_NH_ID])[0] if RTA_NH_ID in attrs else None
    metric = U32.unpack(attrs[RTA_PRIORITY])[0] if RTA_PRIORITY in attrs else 0
    return net, KernelAnycastRoute(nhid, metric)


# The socket -----------------------------------------------------------------------


class NexthopSocket(RouteSocket):
    """The project's netlink socket, taught nexthop objects and nhid routes."""

    def send(self, requests: Sequence[tuple[str, bytes]]) -> dict[int, NexthopFailure]:
        """Send ``(description, message)`` pairs in order; the refused ones by position.

        The kernel handles the messages of one ``sendmsg`` in order and answers
        each, so a group sent after its members sees them, and one refusal
        does not stop the rest.
        """
        refused = self.send_batch([message for _, message in requests])
        return {
            i: NexthopFailure(requests[i][0], error, message)
            for i, (error, message) in refused.items()
        }

    def _dump(self, request: bytes, kind: int) -> list[tuple[memoryview, int, int]]:
        # The receive buffer is reused by the next recv: copy each message.
        return [
            (memoryview(bytes(data[offset : offset + length])), 0, length)
            for data, offset, length in self.dump_messages(request, kind)
        ]

    def nexthops(self) -> dict[int, KernelNexthop]:
        """Every nexthop object in the namespace (all protocols), by id."""
        request = _message(RTM_GETNEXTHOP, NLM_F_REQUEST | NLM_F_DUMP, NHMSG.pack(0, 0, 0, 0, 0))
        found: dict[int, KernelNexthop] = {}
        for data, offset, length in self._dump(request, RTM_NEWNEXTHOP):
            nh = parse_nexthop(data, offset, length)
            if nh is not None:
                found[nh.id] = nh
        return found

    def routes(self, protocol: int) -> dict[Network, KernelAnycastRoute]:
        """Main-table routes of ``protocol``, both families."""
        found: dict[Network, KernelAnycastRoute] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            body = RTMSG.pack(family, 0, 0, 0, RT_TABLE_MAIN, protocol, 0, 0, 0)
            body += _attr(RTA_TABLE, U32.pack(RT_TABLE_MAIN))
            request = _message(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, body)
            for data, offset, length in self._dump(request, RTM_NEWROUTE):
                parsed = parse_route(data, offset, length, protocol)
                if parsed is not None:
                    found[parsed[0]] = parsed[1]
        return found


# The converger --------------------------------------------------------------------


class ResilientRoutes:
    """Anycast routes of ``protocol`` in namespace ``netns`` (None: the current one)."""

    def __init__(
        self,
        netns: str | None = None,
        protocol: int = RTPROT_L3FABRIC_ANYCAST,
        params: ResilientParams | None = None,
        metric: int = DEFAULT_METRIC,
    ) -> None:
        if not 1 <= protocol <= 255:
            raise ValueError(f"route protocol must be within 1..255, got {protocol}")
        self.netns = netns
        self.protocol = protocol
        self.params = params or ResilientParams()
        self.metric = metric
        self._sock = NexthopSocket(netns)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ResilientRoutes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> dict[Network, list[tuple[str | None, int, int]]]:
        """Our routes as ``{prefix: [(gateway, ifindex, weight)]}`` (for checks and tools)."""
        nexthops = self._sock.nexthops()
        result: dict[Network, list[tuple[str | None, int, int]]] = {}
        for net, route in self._sock.routes(self.protocol).items():
            group = nexthops.get(route.nhid) if route.nhid is not None else None
            result[net] = []
            for member, weight in group.members if group else ():
                hop = nexthops[member].hop if member in nexthops else None
                if hop is not None:
                    result[net].append((hop.gateway, hop.oif, weight))
        return result

    def group_id(self, prefix: str) -> int | None:
        """The nexthop group the route to ``prefix`` uses, if we have one."""
        route = self._sock.routes(self.protocol).get(ipaddress.ip_network(prefix))
        return route.nhid if route else None

    def converge(self, desired: Mapping[str, Sequence[Member]]) -> NexthopPlan:
        """Make our anycast routes exactly ``desired`` and return what was changed.

        ``desired``: ``{"203.0.113.10/32": [("10.0.0.2", "eth1", 1), (None, "tap1", 2)]}``.
        Members whose interface does not exist are left out (their prefix keeps
        the others) and reported, with every refused change, in a
        NexthopProgrammingError raised after everything else was applied.
        ValueError for malformed input, before anything is changed.
        """
        wanted = parse_desired(desired)
        ifindexes = ifnames.ifindexes(
            {name for hops in wanted.values() for _, _, name in hops}, self.netns
        )
        failures: list[NexthopFailure] = []
        wanted_hops: dict[Network, dict[Hop, int]] = {}
        for net, hops in wanted.items():
            wanted_hops[net] = {}
            for (family, gateway, ifname), weight in hops.items():
                if ifname not in ifindexes:
                    failures.append(NexthopFailure(f"{net} via {gateway or ifname} dev {ifname}", errno_mod.ENODEV, "no such interface"))  # fmt: skip
                    continue
                wanted_hops[net][Hop(family, gateway, ifindexes[ifname])] = weight

        everything = self._sock.nexthops()
        ours = {i: nh for i, nh in everything.items() if nh.protocol == self.protocol}
        routes = self._sock.routes(self.protocol)
        ids = IdAllocator(everything)
        all_hops = {h for hops in wanted_hops.values() for h in hops}
        hop_ids, create = plan_hops(all_hops, ours, ids)
        p = self.protocol
        hop_requests = list(create.items())
        refused = self._sock.send([
            (f"nexthop {nhid} via {hop.gateway or '-'} ifindex {hop.oif}", encode_hop(nhid, hop, p))
            for hop, nhid in hop_requests
        ])  # fmt: skip
        failures += refused.values()
        for position in refused:
            del hop_ids[hop_requests[position][0]]
        plan, members_of = plan_groups(
            wanted_hops, hop_ids, ours, routes, self.params, self.metric, ids
        )
        plan.hops_create = {h: i for h, i in create.items() if h in hop_ids}

        groups = {**plan.groups_create, **plan.groups_replace}
        writes = [
            (f"group {g} for {net}", encode_group(g, members_of[g], self.params, p))
            for net, g in groups.items()
        ]
        writes += [
            (f"delete route {net} metric {m}", encode_route(net, None, m, p, delete=True))
            for net, m in plan.routes_delete
        ]
        writes += [
            (f"route {net} nhid {g}", encode_route(net, g, self.metric, p))
            for net, g in plan.routes_replace.items()
        ]
        writes += [(f"delete group {g}", encode_delete_nexthop(g)) for g in plan.groups_delete]
        writes += [(f"delete nexthop {h}", encode_delete_nexthop(h)) for h in plan.hops_delete]
        failures += [
            f
            for f in self._sock.send(writes).values()
            # Gone already (the kernel removes a route with its group): goal reached.
            if not (f.what.startswith("delete") and f.errno in (errno_mod.ESRCH, errno_mod.ENOENT))
        ]
        if failures:
            raise NexthopProgrammingError(failures, plan)
        return plan
