"""How a host tells the fabric how many healthy members stand behind its anycast route.

A host announces an anycast address (a /32 or /128 that several ports hold)
only while at least one local member is healthy, and tags the announcement
with one BGP large community ``(ANYCAST_ADMIN, HEALTHY_MEMBERS, n)``: ``n`` is
the number of healthy local members. The gateway reads it from each path and
weights that path's next hop by it, so that each member VM, not each host,
gets one equal share of the flows.

``ANYCAST_ADMIN`` is a private 32-bit AS number (RFC 6996) used as the
community's namespace; it is not an AS of the fabric. BIRD 2.0 cannot match a
wildcard first field with a fixed second one (``(*, 1, *)`` is a syntax
error), so the namespace is fixed.
"""

from __future__ import annotations

ANYCAST_ADMIN = 4200000000
HEALTHY_MEMBERS = 1


def community(healthy: int) -> tuple[int, int, int]:
    """The large community announcing ``healthy`` local members."""
    if healthy < 1:
        raise ValueError("an anycast route is announced only with a healthy member")
    return (ANYCAST_ADMIN, HEALTHY_MEMBERS, healthy)


def bird_match() -> str:
    """A BIRD filter condition true for anycast announcements."""
    return f"bgp_large_community ~ [({ANYCAST_ADMIN}, {HEALTHY_MEMBERS}, *)]"


def healthy_members(communities: list[tuple[int, int, int]]) -> int | None:
    """The member count a path carries, or None if it is no anycast announcement."""
    for admin, kind, value in communities:
        if admin == ANYCAST_ADMIN and kind == HEALTHY_MEMBERS:
            return value
    return None
