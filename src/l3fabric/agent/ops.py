"""The operations of a host agent's pass: small frozen values, executed in plan order.

``plan.plan()`` returns a list of these; ``execute.run()`` hands each to the
applier of its ``domain`` (agent/appliers.py: the kernel, nftables, BIRD,
the probes; tests/unit use recording fakes). An op that fails in part
blocks what depends on it: ``pruned(blocked)`` is the op without the taps
and prefixes an earlier op could not make ready (a route is never added for a
tap whose guard or preparation failed, and BIRD never announces a route that
is not in the kernel).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from l3fabric.agent.anycast import ProbeTarget
from l3fabric.dataplane.links import LinkInfo
from l3fabric.dataplane.sg_diff import Transaction
from l3fabric.dataplane.sg_model import SgState
from l3fabric.dataplane.sg_render import Rendered
from l3fabric.routing.bird_config import AnycastRoute, BirdConfig


@dataclass
class Blocked:
    """What the ops run so far could not do, for the ops after them."""

    taps: set[str] = field(default_factory=set)  # not guarded or not prepared
    prefixes: set[str] = field(default_factory=set)  # endpoint routes not added
    anycast: dict[str, int] | None = None  # served counts after a failed anycast step
    steps: set[str] = field(default_factory=set)  # steps with an op that failed as a whole


@dataclass(frozen=True)
class Outcome:
    """What an applier reports for one op: the taps and prefixes that failed, and why."""

    errors: tuple[str, ...] = ()
    taps: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    failed: bool = False  # the op as a whole did not take effect


OK = Outcome()


@dataclass(frozen=True)
class Op:
    """Base of every operation: ``domain`` names its applier, ``step`` its metrics bucket."""

    domain: ClassVar[str]
    step: ClassVar[str]

    def pruned(self, blocked: Blocked) -> Op | None:
        """This op without what ``blocked`` rules out; None if nothing is left."""
        return self

    def block(self, outcome: Outcome, blocked: Blocked) -> None:
        """Record in ``blocked`` what later ops must leave out after ``outcome``."""

    def size(self) -> int:
        """How many kernel objects (routes, elements, taps ...) the op touches."""
        return 1


@dataclass(frozen=True)
class SysctlSet(Op):
    """Namespace-wide sysctls (forwarding, multipath hashing)."""

    domain: ClassVar[str] = "host"
    step: ClassVar[str] = "host"
    values: tuple[tuple[str, str], ...]

    def size(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class LinkLocalGateway(Op):
    """The 169.254.1.1/32 route via lo that makes proxy ARP answer (routes.ensure_link_local_gateway)."""

    domain: ClassVar[str] = "host"
    step: ClassVar[str] = "host"


@dataclass(frozen=True)
class DhcpInterface(Op):
    """``l3f-dhcp`` (a veth pair) up with exactly these addresses, no prefix routes (agent/dhcp.py)."""

    domain: ClassVar[str] = "dhcp"
    step: ClassVar[str] = "dhcp"
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class DhcpServe(Op):
    """dnsmasq's files rewritten (the hosts directory folded in), then a SIGHUP, or a
    (re)start if ``restart`` (its subnets changed or it does not run)."""

    domain: ClassVar[str] = "dhcp"
    step: ClassVar[str] = "dhcp"
    main: str
    opts: str
    lines: Mapping[str, str]  # port id -> hosts line (every port's: the whole file)
    restart: bool = False

    def size(self) -> int:
        return len(self.lines)


@dataclass(frozen=True)
class DhcpHostsAdd(Op):
    """New ports' hosts lines, a file each in dnsmasq's hosts directory (no SIGHUP)."""

    domain: ClassVar[str] = "dhcp"
    step: ClassVar[str] = "dhcp"
    entries: tuple[tuple[str, str], ...]  # (port id, line)

    def size(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class DhcpStop(Op):
    """No port to serve: dnsmasq stops."""

    domain: ClassVar[str] = "dhcp"
    step: ClassVar[str] = "dhcp"


@dataclass(frozen=True)
class GuardTable(Op):
    """The whole anti-spoofing table, replaced in one transaction (its rules were not ours)."""

    domain: ClassVar[str] = "nft"
    step: ClassVar[str] = "guard"
    allowed: tuple[tuple[str, tuple[str, ...]], ...]  # (tap, normalised source prefixes)
    isolated: tuple[str, ...]

    def block(self, outcome: Outcome, blocked: Blocked) -> None:
        if outcome.failed:
            blocked.taps.update(tap for tap, _ in self.allowed)

    def size(self) -> int:
        return sum(len(p) for _, p in self.allowed) + 1


@dataclass(frozen=True)
class GuardElements(Op):
    """Set elements (tap, source prefix) to delete and add, in one transaction."""

    domain: ClassVar[str] = "nft"
    step: ClassVar[str] = "guard"
    add: tuple[tuple[str, str], ...] = ()
    delete: tuple[tuple[str, str], ...] = ()

    def block(self, outcome: Outcome, blocked: Blocked) -> None:
        if outcome.failed:
            blocked.taps.update(tap for tap, _ in self.add)

    def size(self) -> int:
        return len(self.add) + len(self.delete)


@dataclass(frozen=True, eq=False)
class SecurityGroupsApply(Op):
    """One ``nft -f`` transaction on the security-group table, then conntrack pruning if it
    may admit less (``transaction.narrowed``): flows ``state`` no longer allows are cut."""

    domain: ClassVar[str] = "secgroups"
    step: ClassVar[str] = "secgroups"
    transaction: Transaction
    rendered: Rendered  # the whole table, if the kernel refuses the patch
    state: SgState
    taps: frozenset[str] = frozenset()  # taps whose verdict it writes

    def block(self, outcome: Outcome, blocked: Blocked) -> None:
        if outcome.failed:
            # A new tap stays dropped (fail closed); routing it would only hide that.
            blocked.taps.update(self.taps)

    def size(self) -> int:
        return self.transaction.statements


@dataclass(frozen=True)
class TapsPrepare(Op):
    """Sysctls, link up and (IPv6 ports) fe80::1 for taps that are not ready yet."""

    domain: ClassVar[str] = "taps"
    step: ClassVar[str] = "taps"
    taps: tuple[tuple[str, LinkInfo], ...]
    ipv6: frozenset[str] = frozenset()

    def pruned(self, blocked: Blocked) -> Op | None:
        taps = tuple(t for t in self.taps if t[0] not in blocked.taps)
        return dataclasses.replace(self, taps=taps) if taps else None

    def block(self, outcome: Outcome, blocked: Blocked) -> None:
        blocked.taps.update(outcome.taps)
        if outcome.failed:
            blocked.taps.update(tap for tap, _ in self.taps)

    def size(self) -> int:
        return len(self.taps)


@dataclass(frozen=True)
class TapsIpv6Off(Op):
    """IPv6 turned off on the taps of ports that never send it (after the routes)."""

    domain: ClassVar[str] = "taps"
    step: ClassVar[str] = "ipv6_off"
    taps: tuple[tuple[str, int], ...]  # name, ifindex

    def pruned(self, blocked: Blocked) -> Op | None:
        taps = tuple(t for t in self.taps if t[0] not in blocked.taps)
        return dataclasses.replace(self, taps=taps) if taps else None

    def size(self) -> int:
        return len(self.taps)


@dataclass(frozen=True)
class RoutesSet(Op):
    """Endpoint routes (protocol 96) to replace (prefix, tap, ifindex) and to delete."""

    domain: ClassVar[str] = "routes"
    step: ClassVar[str] = "routes"
    replace: tuple[tuple[str, str, int], ...] = ()
    delete: tuple[str, ...] = ()

    def pruned(self, blocked: Blocked) -> Op | None:
        keep = tuple(r for r in self.replace if r[1] not in blocked.taps)
        blocked.prefixes.update(r[0] for r in self.replace if r[1] in blocked.taps)
        if not keep and not self.delete:
            return None
        return dataclasses.replace(self, replace=keep)

    def block(self, outcome: Outcome, blocked: Blocked) -> None:
        if outcome.failed:
            blocked.prefixes.update(r[0] for r in self.replace)
        blocked.prefixes.update(outcome.prefixes)
        routed = {r[0]: r[1] for r in self.replace}
        blocked.taps.update(routed[p] for p in outcome.prefixes if p in routed)

    def size(self) -> int:
        return len(self.replace) + len(self.delete)


@dataclass(frozen=True)
class ProbesSet(Op):
    """Exactly these anycast members are health-probed (a changed target starts over)."""

    domain: ClassVar[str] = "probes"
    step: ClassVar[str] = "anycast"
    targets: tuple[ProbeTarget, ...]

    def size(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class AnycastRoutesSet(Op):
    """Every anycast prefix served here and its member taps (one resilient group each)."""

    domain: ClassVar[str] = "nexthops"
    step: ClassVar[str] = "anycast"
    serving: tuple[tuple[str, tuple[str, ...]], ...]
    # What BIRD may announce if this op fails: the counts of the withdraw step.
    fallback: tuple[tuple[str, int], ...] = ()

    def pruned(self, blocked: Blocked) -> Op | None:
        if not blocked.taps:
            return self
        kept = ((p, tuple(t for t in taps if t not in blocked.taps)) for p, taps in self.serving)
        return dataclasses.replace(self, serving=tuple((p, t) for p, t in kept if t))

    def block(self, outcome: Outcome, blocked: Blocked) -> None:
        served = {p: len(t) for p, t in self.serving}
        blocked.anycast = dict(self.fallback) if outcome.failed else served

    def size(self) -> int:
        return sum(len(t) for _, t in self.serving) or 1


@dataclass(frozen=True)
class EndpointsWithdraw(Op):
    """Stop announcing these endpoint prefixes (their blackholes go), before their routes go."""

    domain: ClassVar[str] = "announce"
    step: ClassVar[str] = "withdraw"
    prefixes: tuple[str, ...]

    def size(self) -> int:
        return len(self.prefixes)


@dataclass(frozen=True)
class EndpointsAnnounce(Op):
    """Announce these endpoint prefixes (a blackhole each, which BIRD learns), after their routes.

    A prefix whose route an earlier op could not add is withdrawn instead:
    BIRD never announces a route the kernel does not have.
    """

    domain: ClassVar[str] = "announce"
    step: ClassVar[str] = "announce"
    add: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()

    def pruned(self, blocked: Blocked) -> Op | None:
        if not blocked.prefixes:
            return self
        add = tuple(p for p in self.add if p not in blocked.prefixes)
        return dataclasses.replace(self, add=add, delete=(*self.delete, *sorted(blocked.prefixes)))

    def size(self) -> int:
        return len(self.add) + len(self.delete)


@dataclass(frozen=True)
class BirdConfigure(Op):
    """Give BIRD ``config`` (start it if needed). ``step``: "withdraw" before routes go, "announce" after."""

    domain: ClassVar[str] = "bird"
    step: ClassVar[str] = "announce"
    config: BirdConfig

    def pruned(self, blocked: Blocked) -> Op | None:
        config = self.config
        if blocked.anycast is not None:
            counts = blocked.anycast
            routes = tuple(
                AnycastRoute(r.prefix, min(r.healthy, counts[str(r.prefix)]))
                for r in config.anycast_routes
                if counts.get(str(r.prefix))
            )
            config = dataclasses.replace(config, anycast_routes=routes)
        return self if config is self.config else dataclasses.replace(self, config=config)

    def size(self) -> int:
        return 1


@dataclass(frozen=True)
class BirdWithdraw(BirdConfigure):
    """BIRD's config lowered to the anycast counts that stay, before any member route goes."""

    step: ClassVar[str] = "withdraw"

    def pruned(self, blocked: Blocked) -> Op | None:
        return self  # it only lowers: nothing earlier can make it announce too much
