"""Replies to the gateway that owns their port while it is alive: no race with the state sync.

A pair's gateways split the SNAT pool's ports, so a translated port names
the gateway that chose it (the owner). A connection leaves through its
owner; its replies come back through either gateway (ECMP upstream). The
other gateway has the owner's state only once conntrackd has copied it,
and in the lab a handshake's SYN-ACK and the server's first data came back
sooner than that (the sync took 50-350 us; the first data followed the
SYN-ACK by 0.3 ms): dropped, they cost a SYN retransmission (1 s) or a data
one (0.2-1.6 s), and new connections through the pair ran at a sixth of one
gateway's rate.

So each gateway sends every reply of the peer's slice (TCP and UDP
destination ports, ICMP echo ids, to a pool address) straight to the peer
over the sync link, at ingress (``fwd``, table ``netdev l3fabric_steer``),
before its own conntrack sees it -- while the peer is alive: the rule asks
the kernel (``fib daddr . mark``) for a route to the pool in table
``ROUTE_TABLE``, which an ip rule selects for the packets this table marks.
That route exists only while a BFD session to the peer is up (BIRD's
``peer_routes``, gateway/bird.py) and while the peer is not drained. With
no route, a reply goes on to this gateway's conntrack and uses the synced
state: a frozen peer stops receiving steered replies after BFD's detection
time (3 x 100 ms), a peer whose links go down at once. Replies that find
no route through the peer keep a hold-down (``HOLD_DOWN_S``) armed in the
table's ``peer_down`` set: a peer that comes back gets replies again only
once it has been reachable that long, because its BFD session is up a
second after a freeze but its routes to the VMs 2-3 s later (its BGP
sessions restart): replies steered to it in between were lost.
"""

from __future__ import annotations

import ipaddress
import subprocess

from l3fabric.dataplane import ifnames
from l3fabric.dataplane import netns as netns_mod
from l3fabric.dataplane.nft import NftTable, table_with_digest

FAMILY = "netdev"
TABLE = "l3fabric_steer"
# The packets to steer carry this mark into the ``fib`` lookup, where an ip rule
# (priority RULE_PRIORITY) sends them to kernel table ROUTE_TABLE: the peer's route.
MARK = 0x3780
ROUTE_TABLE = 178
RULE_PRIORITY = 178
# Seconds after the last reply that found no route through the peer before replies go
# to it again: a gateway that comes back has BFD up within a second, its BGP sessions
# (and its routes to the VMs) 2-3 s later; until then the synced state serves here.
HOLD_DOWN_S = 5
RULE = ["fwmark", hex(MARK), "lookup", str(ROUTE_TABLE), "priority", str(RULE_PRIORITY)]


def render(
    pool: ipaddress.IPv4Network,
    ports: tuple[int, int],
    peer: ipaddress.IPv4Address,
    sync_interface: str,
    upstream_interfaces: tuple[str, ...],
) -> str | None:
    """The steering table, or None when there is no upstream interface to hook."""
    names = sorted(upstream_interfaces)
    for name in (*names, sync_interface):
        if not ifnames.ruleset_safe(name):
            raise ValueError(f"bad interface name {name!r}")
    if not names:
        return None
    devices = ", ".join(f'"{n}"' for n in names)
    low, high = ports
    via_peer = f'fib daddr . mark oif "{sync_interface}"'
    no_route = f'fib daddr . mark oif != "{sync_interface}"'
    body = [
        "\tset peer_down {",
        "\t\ttype mark",
        "\t\tflags dynamic,timeout",
        f"\t\ttimeout {HOLD_DOWN_S}s",
        "\t}",
        "\tchain ingress {",
        f"\t\ttype filter hook ingress devices = {{ {devices} }} priority -500; policy accept;",
        f"\t\tip daddr {pool} meta l4proto {{ tcp, udp }} th dport 1024-65535"
        f" th dport != {low}-{high} goto to_peer",
        f"\t\tip daddr {pool} icmp type echo-reply icmp id 1024-65535 icmp id != {low}-{high}"
        " goto to_peer",
        "\t}",
        "\tchain to_peer {",
        f"\t\tmeta mark set {MARK:#x}",
        # No route through the peer: (re)start its hold-down.
        f"\t\t{no_route} update @peer_down {{ meta mark }}",
        # The first counter: what went to the peer (tests read it).
        f'\t\tmeta mark != @peer_down {via_peer} counter fwd ip to {peer} device "{sync_interface}"',
        # The peer is down, drained or just back: this gateway's conntrack (the synced state).
        "\t\tmeta mark set 0 counter",
        "\t}",
    ]
    return table_with_digest(FAMILY, TABLE, body)


class Steering(NftTable):
    """The steering table and its ip rule in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(FAMILY, TABLE, netns)

    def _ip_rule(self, verb: str) -> subprocess.CompletedProcess[str]:
        argv = netns_mod.command(self.netns, ["ip", "-4", "rule", verb, *RULE])
        return subprocess.run(argv, capture_output=True, text=True, timeout=10)

    def has_rule(self) -> bool:
        """Whether the ip rule that selects the peer's route is there."""
        argv = netns_mod.command(
            self.netns, ["ip", "-4", "rule", "show", "priority", str(RULE_PRIORITY)]
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return f"lookup {ROUTE_TABLE}" in done.stdout

    def drop_route(self) -> None:
        """Remove the route through the peer (BIRD's, which BFD no longer checks once BIRD is
        dead): replies go to this gateway's conntrack until a BIRD puts it back."""
        argv = netns_mod.command(
            self.netns, ["ip", "-4", "route", "flush", "table", str(ROUTE_TABLE)]
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        # A table with no route left does not exist: nothing to remove.
        if done.returncode != 0 and "does not exist" not in done.stderr:
            raise RuntimeError(f"ip route flush table {ROUTE_TABLE}: {done.stderr.strip()}")

    def applied_digest(self) -> str | None:
        """The table's digest, None without the table or without its ip rule."""
        digest = super().applied_digest()
        return digest if digest is not None and self.has_rule() else None

    def apply(self, text: str | None) -> None:
        """Make ``text`` the table, with its ip rule (None: neither)."""
        if text is None:
            self.remove()
            self.forget()
            while self._ip_rule("del").returncode == 0:
                pass  # every copy (one added by hand too)
            return
        if not self.has_rule():
            done = self._ip_rule("add")
            if done.returncode != 0:
                raise RuntimeError(f"ip rule add {' '.join(RULE)}: {done.stderr.strip()}")
        self.apply_ruleset(text)
