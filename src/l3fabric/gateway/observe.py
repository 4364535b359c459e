"""Reading what the gateway holds into a ``GatewayObserved`` (gateway/observed.py).

Every pass reads everything: the forwarding sysctls, the interfaces towards
the upstream peers, the NAT table by content (so a rule or element deleted
by hand is seen), BIRD's anycast paths, running config and fabric sessions
(gateway/birdwatch.py), and the kernel's anycast groups. A gateway holds a
handful of objects: a few ms of netlink, two ``nft`` calls and three BIRD
socket round trips.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterable

from l3fabric.dataplane import sysctl
from l3fabric.dataplane.links import egress_interfaces
from l3fabric.gateway.anycast import AnycastSync
from l3fabric.gateway.birdwatch import BirdWatch
from l3fabric.gateway.conntrackd import CONNTRACK_SYSCTLS, Conntrackd
from l3fabric.gateway.desired import GatewayDesired
from l3fabric.gateway.nat import GatewayNat
from l3fabric.gateway.observed import GatewayObserved
from l3fabric.gateway.plan import FORWARDING
from l3fabric.gateway.steer import Steering
from l3fabric.routing.anycast_routes import learned_anycast
from l3fabric.routing.bird_control import BirdError
from l3fabric.routing.bird_process import BirdProcess


def upstream_interfaces(address: str) -> frozenset[str]:
    """The interfaces towards upstream peer ``address`` (the NAT's and the steering's).

    The one whose subnet holds the address, also while its link is down: a
    route lookup then finds nothing, and a pass during an outage used to
    render the NAT without its upstream interface (and drop the steering
    table), so new connections through the gateway just back left
    untranslated until the next pass; their SYN retransmissions kept the
    untranslated conntrack entry (the drain test's connections that never
    opened after the links-down test). A peer on no local subnet
    (multihop): the route lookup's.
    """
    from pyroute2 import IPRoute  # ~0.3 s to import: not for every CLI start

    peer = ipaddress.ip_address(address)
    if peer.is_link_local:  # every interface has fe80::/64: only a route lookup can tell
        return frozenset(egress_interfaces(address))
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        on_link = {
            names[a["index"]]
            for a in ipr.get_addr(family=socket.AF_INET6 if peer.version == 6 else socket.AF_INET)
            if a["index"] in names
            and a["prefixlen"] < peer.max_prefixlen
            and peer
            in ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
        }
    return frozenset(on_link or egress_interfaces(address))


class GatewayReader:
    """Reads the gateway for its planner."""

    def __init__(
        self,
        nat: GatewayNat,
        anycast: AnycastSync,
        bird: BirdProcess,
        conntrackd: Conntrackd,
        steering: Steering,
        watch: BirdWatch,
    ) -> None:
        self.nat = nat
        self.anycast = anycast
        self.bird = bird
        self.conntrackd = conntrackd
        self.steering = steering
        self.watch = watch

    def read(self, upstream: Iterable[str], bird_policy: GatewayDesired | None) -> GatewayObserved:
        """Everything; ``upstream``: the peers' addresses, ``bird_policy``: what BIRD was last given."""
        self.watch.poll()  # the fabric gate as BIRD has it now (the pass acts on any change)
        running = self.bird.alive()
        learned = text = None
        if running:
            with contextlib.suppress(OSError, BirdError):
                learned = learned_anycast(self.bird.control)
            with contextlib.suppress(OSError):
                text = self.bird.config_path.read_text()
        sysctls = {key: sysctl.read(key) for key in FORWARDING}
        for key in CONNTRACK_SYSCTLS:
            # Absent until nf_conntrack is loaded (the NAT table loads it): then planned.
            with contextlib.suppress(OSError):
                sysctls[key] = sysctl.read(key)
        return GatewayObserved(
            sysctls=sysctls,
            egress={a: upstream_interfaces(a) for a in upstream},
            nat=self.nat.listing(),
            learned=learned,
            anycast=self.anycast.kernel(),
            bird_running=running,
            bird_text=text,
            bird_policy=bird_policy if running else None,
            conntrackd_text=self.conntrackd.running_text(),
            steer_digest=self.steering.applied_digest(),
            fabric_ready=self.watch.ready,
        )
