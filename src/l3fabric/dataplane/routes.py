"""Endpoint routes: converge the kernel's routes of our protocol to a desired mapping.

The agent owns every route in the main table whose protocol is
``RTPROT_L3FABRIC`` (IPv4 and IPv6) and nothing else. ``EndpointRoutes.converge``
reads those routes, compares them with ``{prefix: interface}`` and sends only
the differences (replace for missing or wrong routes, delete for stale ones),
so a route that is already right is never touched and an agent restart causes
no netlink route events. Writes go through ``netlink_batch`` (hand-packed
messages, every ack checked) because pyroute2's encoding is ~40x slower than
``ip -batch``.

Also here: the link-local next hop (169.254.1.1) route that makes proxy ARP
answer on a host without a default route, and the iproute2 name of our
protocol number.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from l3fabric.addresses import host_network
from l3fabric.dataplane import ifnames
from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.netlink_batch import (
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RTN_UNICAST,
    KernelRoute,
    Network,
    RouteFailure,
    RouteRequest,
    RouteSocket,
)

# Our route protocol number (rtm_protocol). 96 is unassigned in iproute2's
# rt_protos; it marks the routes this converger owns (it deletes every
# protocol-96 route it was not given, in the main table). BIRD does not learn
# them: the agent announces each with a blackhole in its own table
# (dataplane/announce.py).
RTPROT_L3FABRIC = 96
RTPROT_NAME = "l3fabric"
RT_PROTOS_FILE = "/etc/iproute2/rt_protos.d/l3fabric.conf"
RTPROT_STATIC = 4
IFF_UP = 0x1

# The next hop every VM uses for its default route (Calico style).
LINK_LOCAL_GATEWAY_V4 = "169.254.1.1"


class RouteProgrammingError(RuntimeError):
    """Some routes could not be programmed; the rest were. ``failures`` says which and why."""

    def __init__(self, failures: list[RouteFailure]) -> None:
        self.failures = failures
        shown = "; ".join(str(f) for f in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} route change(s) failed: {shown}{more}")


@dataclass
class RoutePlan:
    """The difference between the kernel and the desired routes."""

    replace: dict[Network, str] = field(default_factory=dict)
    delete: list[Network] = field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not self.replace and not self.delete


def parse_desired(desired: Mapping[str, str]) -> dict[Network, str]:
    """Validate ``{prefix: interface}``; a bad prefix or name raises ValueError naming it."""
    parsed: dict[Network, str] = {}
    for prefix, ifname in desired.items():
        try:
            net = ipaddress.ip_network(prefix, strict=True)
        except ValueError as exc:
            raise ValueError(f"bad route prefix {prefix!r}: {exc}") from None
        if not ifnames.plausible(ifname):
            raise ValueError(f"bad interface name {ifname!r} for route {prefix}")
        parsed[net] = ifname
    return parsed


def _wanted(net: Network, ifindex: int) -> KernelRoute:
    scope = RT_SCOPE_LINK if net.version == 4 else RT_SCOPE_UNIVERSE
    return KernelRoute(ifindex, scope, RTN_UNICAST)


class EndpointRoutes:
    """The routes of protocol ``protocol`` in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None, protocol: int = RTPROT_L3FABRIC) -> None:
        self.netns = netns
        self.protocol = protocol
        self._sock = RouteSocket(netns)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> EndpointRoutes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self) -> dict[Network, KernelRoute]:
        """Our routes in the main table, both families."""
        routes = self._sock.dump(socket.AF_INET, self.protocol)
        routes.update(self._sock.dump(socket.AF_INET6, self.protocol))
        return routes

    def plan(
        self, desired: Mapping[str, str]
    ) -> tuple[RoutePlan, dict[str, int], list[RouteFailure]]:
        """Compare the kernel with ``desired``: the plan, the ifindexes, and unresolvable routes."""
        wanted = parse_desired(desired)
        ifindexes = ifnames.ifindexes(set(wanted.values()), self.netns)
        current = self.read()
        plan = RoutePlan()
        missing: list[RouteFailure] = []
        for net, ifname in wanted.items():
            ifindex = ifindexes.get(ifname)
            if ifindex is None:
                request = RouteRequest("replace", net, 0)
                missing.append(RouteFailure(request, errno.ENODEV, f"no interface {ifname}"))
            elif current.get(net) == _wanted(net, ifindex):
                plan.unchanged += 1
            else:
                plan.replace[net] = ifname
        # A route whose interface is missing is stale too: leaving it would
        # keep pointing at whatever now has its old ifindex.
        plan.delete = [net for net in current if net not in plan.replace and (
            net not in wanted or wanted[net] not in ifindexes)]  # fmt: skip
        return plan, ifindexes, missing

    def converge(self, desired: Mapping[str, str]) -> RoutePlan:
        """Make our routes exactly ``desired`` ({"10.1.0.5/32": "tap0123456789a", ...}).

        Only differences are sent. Returns the plan that was applied; raises
        RouteProgrammingError listing every route that failed (after applying
        all the others) and ValueError for malformed input.
        """
        plan, ifindexes, failures = self.plan(desired)
        failures += self._send(
            [(net, ifindexes[ifname]) for net, ifname in plan.replace.items()], plan.delete
        )
        if failures:
            raise RouteProgrammingError(failures)
        return plan

    def apply(
        self, replace: Iterable[tuple[str, int]], delete: Iterable[str]
    ) -> list[RouteFailure]:
        """Delete, then replace routes as given (prefix, ifindex): no read, no diff.

        For a caller that planned against what it read before (the host
        agent's plan); returns the refused changes (a delete of a route that
        is gone already is not one).
        """
        return self._send(
            [(host_network(p), index) for p, index in replace],
            [host_network(p) for p in delete],
        )

    def _send(
        self, replace: list[tuple[Network, int]], delete: list[Network]
    ) -> list[RouteFailure]:
        requests = [RouteRequest("delete", net) for net in delete]
        requests += [RouteRequest("replace", net, index) for net, index in replace]
        if not requests:
            return []
        return [
            f
            for f in self._sock.apply(requests, self.protocol)
            # Someone removed it first: the goal is reached.
            if not (f.request.op == "delete" and f.errno == errno.ESRCH)
        ]

    def observe(self, names: Mapping[int, str]) -> dict[str, str | None]:
        """Our routes as {prefix: interface name}; None for one we would not program so."""
        found: dict[str, str | None] = {}
        for net, route in self.read().items():
            name = names.get(route.oif) if route.oif is not None else None
            ok = name is not None and route == _wanted(net, route.oif or 0)
            found[str(net)] = name if ok else None
        return found


def link_local_gateway_present(netns: str | None = None) -> bool:
    """True if 169.254.1.1/32 is routed via lo (see ``ensure_link_local_gateway``)."""
    # The kernel filters the dump down to the few static routes (pyroute2
    # decoded all 10,000 endpoint routes to find it: 0.4 s). The route exists
    # only while lo is up (a device going down loses its routes).
    with RouteSocket(netns) as sock:
        found = sock.dump(socket.AF_INET, RTPROT_STATIC).get(
            ipaddress.IPv4Network(f"{LINK_LOCAL_GATEWAY_V4}/32")
        )
    with netns_mod.entered(netns):
        lo = socket.if_nametoindex("lo")
    return found is not None and found.oif == lo and found.type == RTN_UNICAST


def ensure_link_local_gateway(netns: str | None = None) -> bool:
    """Route 169.254.1.1/32 via ``lo`` so proxy ARP answers for it on every tap.

    The kernel answers a proxy ARP request only if it would forward the packet
    out of another interface than the one it came in on; a unicast route via
    lo satisfies that without a default route, and packets actually sent to
    169.254.1.1 die on lo. It is "proto static", not ours, so BIRD never
    exports it and ``converge`` never deletes it. Returns True if it changed
    anything.
    """
    if link_local_gateway_present(netns):
        return False
    dst = f"{LINK_LOCAL_GATEWAY_V4}/32"
    with netns_mod.entered(netns):
        lo = socket.if_nametoindex("lo")
    # pyroute2 costs ~0.3 s to import and serves only this cold path here.
    from pyroute2 import IPRoute

    with IPRoute(netns=netns) as ipr:
        # A route via a down lo is refused ("Network is down").
        if not ipr.get_links(lo)[0]["flags"] & IFF_UP:
            ipr.link("set", index=lo, state="up")
        ipr.route("replace", dst=dst, oif=lo, scope=RT_SCOPE_LINK, proto=RTPROT_STATIC, table=254)
        return True


def install_protocol_name(path: str = RT_PROTOS_FILE) -> bool:
    """Name our protocol for iproute2 (``ip route show proto l3fabric``); True if written."""
    line = f"{RTPROT_L3FABRIC}\t{RTPROT_NAME}\n"
    try:
        with open(path) as f:
            if f.read() == line:
                return False
    except FileNotFoundError:
        pass
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".l3fabric-")
    with os.fdopen(fd, "w") as f:
        f.write(line)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True
