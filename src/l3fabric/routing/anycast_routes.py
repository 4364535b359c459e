"""Reading the anycast routes BIRD learned: every path, its next hops and its healthy-member count.

``learned_anycast(control)`` runs ``show route all where <the anycast
community>`` on a running BIRD and returns, per prefix, every route BIRD holds
for it (the best one and the others: one per announcing peer), each with its
next hops (``via ADDR on IFNAME [weight W]``; several for a multipath route)
and the member count from its large community (``routing.anycast_marker``).

The parser reads BIRD 2's text output, which is the only interface BIRD
offers for this. It relies on three things only: a route line has a
``[protocol ...]`` part (a new prefix when it starts with one, another path of
the previous prefix when it starts with blanks), next hops are ``via``/``dev``
lines, and the community line is ``BGP.large_community: (a, b, c) ...``. Every
other line (other attributes, table headers) is skipped, so BIRD adding an
attribute does not break the gateway.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from l3fabric.routing import anycast_marker
from l3fabric.routing.bird_control import BirdControl

# "10.1.0.100/32   unicast [p:r1-h1 11:36:41.970] * (100) [AS4200000001i]", or the
# same without the prefix (blanks instead) for the next route of that prefix.
_ROUTE = re.compile(r"^(?P<net>[0-9A-Fa-f:.]+/\d{1,3})?\s+(?P<kind>\w+)\s+\[(?P<proto>[^\s\]]+)")
# "via 172.16.0.1 on l3f-f0", "via 172.31.254.1 on l3f-mgmt weight 2" (multipath)
_VIA = re.compile(r"^\s+via\s+(?P<addr>[0-9A-Fa-f:.]+)\s+on\s+(?P<dev>\S+)(?:.*?\bweight\s+(?P<w>\d+))?")  # fmt: skip
# "dev tap1" (a route straight onto an interface)
_DEV = re.compile(r"^\s+dev\s+(?P<dev>\S+)(?:.*?\bweight\s+(?P<w>\d+))?")
_LARGE = re.compile(r"^\s+BGP\.large_community:(?P<list>.*)$")
_TRIPLE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")


@dataclass(frozen=True)
class NextHop:
    """One next hop of a route: gateway address (None: straight onto ``ifname``) and BIRD weight."""

    address: str | None
    ifname: str
    weight: int = 1


@dataclass
class LearnedPath:
    """One route BIRD holds for an anycast prefix.

    ``healthy``: the member count of its large community (None: the route
    carries no anycast community, so it is no announcement to weight).
    ``hops`` is empty for a route without a next hop (blackhole, unreachable).
    """

    protocol: str
    healthy: int | None = None
    hops: list[NextHop] = field(default_factory=list)
    best: bool = False


def parse_anycast_routes(lines: Iterable[str]) -> dict[str, list[LearnedPath]]:
    """``{prefix: [path, ...]}`` from the text lines of ``show route all``.

    Prefixes are normalised (``ipaddress``), so ``2001:DB8::1/128`` and
    ``2001:db8::1/128`` are one key. ValueError for a line that looks like a
    route but names no valid prefix.
    """
    result: dict[str, list[LearnedPath]] = {}
    current: list[LearnedPath] | None = None
    for line in lines:
        route = _ROUTE.match(line)
        if route and not line.startswith("\t"):
            if route["net"]:
                try:
                    net = str(ipaddress.ip_network(route["net"], strict=False))
                except ValueError:
                    raise ValueError(f"bad prefix in BIRD route line {line!r}") from None
                current = result.setdefault(net, [])
            elif current is None:
                raise ValueError(f"BIRD route line without a prefix before it: {line!r}")
            best = "]" in line and line.split("]", 1)[1].lstrip().startswith("*")
            current.append(LearnedPath(protocol=route["proto"], best=best))
            continue
        if not current:
            continue  # "Table master4:", blank lines
        path = current[-1]
        hop = _VIA.match(line) or _DEV.match(line)
        if hop:
            address = hop.groupdict().get("addr")
            address = str(ipaddress.ip_address(address)) if address else None
            path.hops.append(NextHop(address, hop["dev"], int(hop["w"] or 1)))
            continue
        large = _LARGE.match(line)
        if large:
            triples = [(int(a), int(b), int(c)) for a, b, c in _TRIPLE.findall(large["list"])]
            path.healthy = anycast_marker.healthy_members(triples)
        elif line and not line[0].isspace() and not line.startswith("Table "):
            current = None  # something else at top level: no longer inside a route
    return result


def show_anycast_command() -> str:
    """The BIRD command listing every anycast announcement (all paths, all attributes)."""
    return f"show route all where {anycast_marker.bird_match()}"


def learned_anycast(control: BirdControl) -> dict[str, list[LearnedPath]]:
    """Every anycast announcement ``control``'s BIRD holds, all paths of each prefix.

    Raises OSError if BIRD does not answer, BirdError if it refuses the command.
    """
    return parse_anycast_routes(text for _, text in control.request(show_anycast_command()))
