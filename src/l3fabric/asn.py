"""Which AS a host or gateway speaks BGP with: shared by the API and the agents.

Kept apart from the API module so that agents do not import the web stack.
"""

from __future__ import annotations

import ipaddress
from typing import Any

# 32-bit private AS numbers (RFC 6996), used for "per-host" hosts without an AS.
PRIVATE_ASN_BASE = 4_200_000_000
PRIVATE_ASN_COUNT = 94_967_295


def effective_asn(record: dict[str, Any], fabric: dict[str, Any], *, kind: str = "host") -> int:
    """The AS a host or gateway speaks BGP with.

    An explicit ``asn`` wins. Gateways otherwise use the fabric AS; hosts use
    it too under ``host_asn: same`` (iBGP, like Calico), and under
    ``per-host`` get a private 32-bit AS derived from their router id, which
    is unique in the fabric because BGP needs it to be.
    """
    if record.get("asn"):
        return int(record["asn"])
    if kind == "gateway" or fabric.get("host_asn", "same") == "same":
        return int(fabric.get("asn", 65000))
    router_id = int(ipaddress.IPv4Address(record["router_id"]))
    return PRIVATE_ASN_BASE + router_id % PRIVATE_ASN_COUNT
