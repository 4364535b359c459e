"""Reading what the host holds into an ``Observed`` (agent/observed.py).

``full()`` re-reads everything (start-up, the slow timer, after a failure):
one link dump, the routes of protocols 96 and 97, the announcements (table
150), the nftables tables, the host sysctls, BIRD's running config, what
dnsmasq serves; drift (a route, rule or element deleted by hand) shows up
here and the plan repairs it. ``refresh(model, taps)``
starts from the state the last pass left (``plan.after``) and re-reads only
the taps whose link changed: an incremental pass costs what the change costs,
not what the host holds (one request per tap, microseconds).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Sequence

from l3fabric.agent.anycast_serving import AnycastProbes
from l3fabric.agent.dhcp import DhcpServer
from l3fabric.agent.dhcp_config import ServedDhcp
from l3fabric.agent.observed import Observed, TapState
from l3fabric.dataplane import sysctl
from l3fabric.dataplane.announce import Announcements
from l3fabric.dataplane.links import TAP_PREFIX, Links, egress_interfaces
from l3fabric.dataplane.nexthops import ResilientRoutes
from l3fabric.dataplane.nft import AntiSpoofing
from l3fabric.dataplane.routes import EndpointRoutes, link_local_gateway_present
from l3fabric.dataplane.secgroups import SecurityGroupsTable
from l3fabric.layered import Layered
from l3fabric.routing.bird_process import BirdProcess


class HostReader:
    """Reads the host for the planner; ``bird_ready()`` tells whether BIRD's early start is over."""

    def __init__(
        self,
        links: Links,
        routes: EndpointRoutes,
        announcements: Announcements,
        anycast: ResilientRoutes,
        nft: AntiSpoofing,
        sg: SecurityGroupsTable,
        probes: AnycastProbes,
        bird: BirdProcess,
        bird_ready: Callable[[], bool],
        controllers: Sequence[str],
        dhcp: DhcpServer | None = None,
    ) -> None:
        self.links = links
        self.routes = routes
        self.announcements = announcements
        self.anycast = anycast
        self.nft = nft
        self.sg = sg
        self.probes = probes
        self.bird = bird
        self.bird_ready = bird_ready
        self.controllers = tuple(controllers)  # their hosts: the management traffic's way
        self.dhcp = dhcp  # None: no DHCP server on this host

    def full(self, remembered: Observed | None) -> Observed:
        """Everything from the kernel; ``remembered``: what only this agent knows (BIRD's config)."""
        listing = self.links.listing()
        names = {info.index: name for name, info in listing.items()}
        with_gateway = self.links.with_gateway6()
        taps = {
            name: TapState(info, gateway6=info.index in with_gateway)
            for name, info in listing.items()
            if name.startswith(TAP_PREFIX)
        }
        anycast: dict[str, frozenset[str]] = {}
        for net, hops in self.anycast.read().items():
            anycast[str(net)] = frozenset(names[oif] for _, oif, _ in hops if oif in names)
        running = self._bird_running()
        text = None
        if running:
            with contextlib.suppress(OSError):
                text = self.bird.config_path.read_text()
        return Observed(
            taps=taps,
            routes=self.routes.observe(names),
            announced=self.announcements.read(),
            guard=self.nft.listing(),
            security_groups=self.sg.listing(),
            anycast=anycast,
            sysctls={key: sysctl.read(key) for key in sysctl.HOST_SYSCTLS},
            link_local_gateway=link_local_gateway_present(),
            management=frozenset().union(*map(egress_interfaces, self.controllers)),
            bird_running=running,
            bird_config=remembered.bird_config if remembered and running else None,
            bird_text=text,
            probes=self.probes.probes.targets(),
            verdicts=self.probes.probes.verdicts(),
            dhcp=self.dhcp.observe() if self.dhcp is not None else None,
        )

    def refresh(self, model: Observed, changed: Collection[str]) -> Observed:
        """``model`` with the taps in ``changed`` read again (and fresh probe verdicts)."""
        taps = Layered.of(model.taps).edit()  # the other taps' states shared, not copied
        routes = model.routes
        anycast = model.anycast
        for name in changed:
            old = taps.pop(name, None)
            info = self.links.link(name)
            if info is not None:
                same = old is not None and old.info.index == info.index
                gateway6 = bool(self.links.with_gateway6(info.index))
                taps[name] = TapState(info, gateway6=gateway6, prepared=same and old.prepared)
            if old is not None and (info is None or old.info.index != info.index):
                # The kernel removed the routes through the old link with it.
                routes = {p: (None if t == name else t) for p, t in routes.items()}
                anycast = {p: t - {name} for p, t in anycast.items()}
        return dataclasses.replace(
            model,
            taps=taps.done(),
            routes=routes,
            anycast=anycast,
            bird_running=self._bird_running(),
            bird_text=None,
            verdicts=self.probes.probes.verdicts(),
            dhcp=self._dhcp_alive(model),
        )

    def _dhcp_alive(self, model: Observed) -> ServedDhcp | None:
        """``model``'s DHCP state, unless dnsmasq died since (a pid check: microseconds)."""
        served = model.dhcp
        if served is None or self.dhcp is None or not served.running or self.dhcp.pid():
            return served
        return ServedDhcp()

    def _bird_running(self) -> bool:
        # While the early start runs, "not running": the announcement waits for it.
        return self.bird_ready() and self.bird.alive()
