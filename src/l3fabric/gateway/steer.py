"""Handshake replies to the gateway that owns their port: no race with the state sync.

A pair's gateways split the SNAT pool's ports, so a translated port names
the gateway that chose it. A new connection's SYN leaves through one
gateway; the server's SYN-ACK may come back through the other (ECMP
upstream) sooner than conntrackd's copy of the new state (a few hundred
microseconds: longer than the lab's round trip). Without the state that
gateway drops it, and the handshake waits a second for a retransmission.

So each gateway sends a SYN-ACK (or an ICMP echo reply: echo ids are
split like ports) for a pool address and a port outside its own slice
straight to its peer over the sync link, at ingress (``fwd``, table
``netdev l3fabric_steer``), before its own conntrack sees it: the owner
holds the state and translates it. Only these first replies are steered;
everything later finds the synced state on either gateway. (A new UDP
flow's first reply is not: UDP has no handshake to tell it by, and steering
every reply would tie the flow to its first gateway.)
"""

from __future__ import annotations

import ipaddress

from l3fabric.dataplane import ifnames
from l3fabric.dataplane.nft import NftTable, table_with_digest

FAMILY = "netdev"
TABLE = "l3fabric_steer"


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
    to_peer = f'counter fwd ip to {peer} device "{sync_interface}"'
    body = [
        "\tchain ingress {",
        f"\t\ttype filter hook ingress devices = {{ {devices} }} priority -500; policy accept;",
        f"\t\tip daddr {pool} tcp dport 1024-65535 tcp dport != {low}-{high}"
        f" tcp flags & (syn | ack) == syn | ack {to_peer}",
        f"\t\tip daddr {pool} icmp type echo-reply icmp id 1024-65535 icmp id != {low}-{high}"
        f" {to_peer}",
        "\t}",
    ]
    return table_with_digest(FAMILY, TABLE, body)


class Steering(NftTable):
    """The steering table in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        super().__init__(FAMILY, TABLE, netns)

    def apply(self, text: str | None) -> None:
        """Make ``text`` the table (None: no table)."""
        if text is None:
            self.remove()
            self.forget()
        else:
            self.apply_ruleset(text)
