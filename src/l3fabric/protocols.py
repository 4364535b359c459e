"""Neutron's IP protocol names and their numbers (IANA), shared by the API and the hosts.

One table, so that every protocol the API accepts in a security group rule
is one the hosts can enforce.
"""

from __future__ import annotations

TCP, UDP, ICMP, ICMPV6, SCTP = 6, 17, 1, 58, 132

PROTOCOL_NUMBERS = {
    "ah": 51,
    "dccp": 33,
    "egp": 8,
    "esp": 50,
    "gre": 47,
    "icmp": ICMP,
    "icmpv6": ICMPV6,
    "igmp": 2,
    "ipip": 4,
    "ipv6-encap": 41,
    "ipv6-frag": 44,
    "ipv6-icmp": ICMPV6,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "ipv6-route": 43,
    "ospf": 89,
    "pgm": 113,
    "rsvp": 46,
    "sctp": SCTP,
    "tcp": TCP,
    "udp": UDP,
    "udplite": 136,
    "vrrp": 112,
}
# Protocols whose port_range_min/max are destination ports (tcp udp dccp sctp udplite);
# for ICMP they are type and code.
PORT_PROTOCOLS = frozenset({TCP, UDP, 33, SCTP, 136})
ICMP_PROTOCOLS = frozenset({ICMP, ICMPV6})
