"""The real appliers of a host agent's plan: thin wrappers around the data plane modules.

One per domain of agent/ops.py; each turns one op into calls of
``dataplane`` (links, routes, nexthops, nft, sysctl) or BIRD and reports what
failed as an ``Outcome``. The probes' applier is ``AnycastProbes``
(agent/anycast_serving.py). No decisions here: those are agent/plan.py's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from l3fabric.agent.ops import (
    OK,
    AnycastRoutesSet,
    BirdConfigure,
    EndpointsAnnounce,
    EndpointsWithdraw,
    GuardElements,
    GuardTable,
    LinkLocalGateway,
    Op,
    Outcome,
    RoutesSet,
    SecurityGroupsApply,
    SysctlSet,
    TapsIpv6Off,
    TapsPrepare,
)
from l3fabric.dataplane import sysctl
from l3fabric.dataplane.announce import Announcements
from l3fabric.dataplane.links import Links
from l3fabric.dataplane.netlink_batch import RouteFailure
from l3fabric.dataplane.nexthops import ResilientRoutes
from l3fabric.dataplane.nft import AntiSpoofing
from l3fabric.dataplane.routes import EndpointRoutes, ensure_link_local_gateway
from l3fabric.dataplane.secgroups import SecurityGroupsTable
from l3fabric.routing.bird_config import render


class HostApplier:
    """Namespace-wide sysctls and the 169.254.1.1 route."""

    def apply(self, op: Op) -> Outcome:
        if isinstance(op, SysctlSet):
            sysctl.ensure(dict(op.values))
        else:
            assert isinstance(op, LinkLocalGateway)
            ensure_link_local_gateway()
        return OK


class GuardApplier:
    """The anti-spoofing table: whole, or element by element."""

    def __init__(self, nft: AntiSpoofing) -> None:
        self.nft = nft

    def apply(self, op: Op) -> Outcome:
        if isinstance(op, GuardTable):
            self.nft.apply_table(dict(op.allowed), op.isolated)
        else:
            assert isinstance(op, GuardElements)
            self.nft.apply_elements(op.add, op.delete)
        return OK


class SecurityGroupsApplier:
    """The security-group table: the planned transaction, then conntrack pruning."""

    def __init__(self, table: SecurityGroupsTable) -> None:
        self.table = table

    def apply(self, op: Op) -> Outcome:
        assert isinstance(op, SecurityGroupsApply)
        self.table.carry_out(op.transaction, op.rendered, op.state)
        return OK


class TapsApplier:
    """Tap preparation, all taps of an op in one batch; IPv6 turned off where it is not used."""

    def __init__(self, links: Links) -> None:
        self.links = links

    def apply(self, op: Op) -> Outcome:
        if isinstance(op, TapsIpv6Off):
            return Outcome(errors=_tap_errors(self.links.ipv6_off(op.taps)))
        assert isinstance(op, TapsPrepare)
        listing = dict(op.taps)
        report = self.links.prepare_taps(listing, ipv6=op.ipv6, listing=listing)
        # A tap missing now was unplugged since it was read; its link event
        # wakes the loop again.
        errors = _tap_errors(report.failed)
        return Outcome(errors=errors, taps=frozenset(report.failed) | report.missing)


def _tap_errors(failed: dict[str, str]) -> tuple[str, ...]:
    return tuple(f"{tap}: {why}" for tap, why in sorted(failed.items()))


def _route_outcome(failures: list[RouteFailure]) -> Outcome:
    if not failures:
        return OK
    shown = "; ".join(str(f) for f in failures[:5])
    more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
    return Outcome(
        errors=(f"{len(failures)} route change(s) failed: {shown}{more}",),
        prefixes=frozenset(str(f.request.prefix) for f in failures if f.request.op == "replace"),
    )


class RoutesApplier:
    """Endpoint routes (protocol 96) in one netlink batch."""

    def __init__(self, routes: EndpointRoutes) -> None:
        self.routes = routes

    def apply(self, op: Op) -> Outcome:
        assert isinstance(op, RoutesSet)
        return _route_outcome(
            self.routes.apply(((p, index) for p, _, index in op.replace), op.delete)
        )


class AnnounceApplier:
    """Endpoint announcements: blackholes in the table BIRD learns, one netlink batch."""

    def __init__(self, announcements: Announcements) -> None:
        self.announcements = announcements

    def apply(self, op: Op) -> Outcome:
        if isinstance(op, EndpointsWithdraw):
            return _route_outcome(self.announcements.apply((), op.prefixes))
        assert isinstance(op, EndpointsAnnounce)
        return _route_outcome(self.announcements.apply(op.add, op.delete))


class NexthopsApplier:
    """Anycast routes: one resilient nexthop group per served prefix, every member one share."""

    def __init__(self, routes: ResilientRoutes) -> None:
        self.routes = routes

    def apply(self, op: Op) -> Outcome:
        assert isinstance(op, AnycastRoutesSet)
        self.routes.converge({p: [(None, tap, 1) for tap in taps] for p, taps in op.serving})
        return OK


class BirdApplier:
    """BIRD's configuration: started if it is not running, else reconfigured if different."""

    def __init__(self, converge: Callable[[str], object], ready: Callable[[], None]) -> None:
        self._converge = converge
        self._ready = ready  # waits for BIRD's early start (agent/bird_early.py)
        self._lock = threading.Lock()

    def apply(self, op: Op) -> Outcome:
        assert isinstance(op, BirdConfigure)
        text = render(op.config)
        self._ready()
        with self._lock:
            self._converge(text)
        return OK
