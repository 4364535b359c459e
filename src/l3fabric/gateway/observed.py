"""What a gateway's kernel, nftables and BIRD hold: the gateway planner's second input.

Plain data, no I/O: ``gateway/observe.py`` reads it on every pass (a gateway
holds few objects, so every pass is a full one and drift is always seen),
and unit tests write it by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from l3fabric.dataplane.nexthops import Member
from l3fabric.gateway.desired import GatewayDesired
from l3fabric.gateway.nat import NatListing
from l3fabric.routing.anycast_routes import LearnedPath


@dataclass(frozen=True)
class GatewayObserved:
    """The gateway as it is, plus what only this agent remembers (what it last gave BIRD)."""

    sysctls: Mapping[str, str] = field(default_factory=dict)
    # Upstream peer address -> the interfaces this namespace reaches it through
    # (its link's, also while the link is down: gateway/observe.upstream_interfaces).
    egress: Mapping[str, frozenset[str]] = field(default_factory=dict)
    nat: NatListing | None = None  # None: no table of ours
    # BIRD's anycast announcements, every path; None: BIRD did not answer.
    learned: Mapping[str, Sequence[LearnedPath]] | None = None
    anycast: Mapping[str, frozenset[Member]] = field(default_factory=dict)  # kernel groups
    bird_running: bool = False
    bird_text: str | None = None  # the config file BIRD runs with (None: not read)
    # The policy this agent last gave BIRD (None: unknown, e.g. after a restart).
    bird_policy: GatewayDesired | None = None
    conntrackd_text: str | None = None  # the config our running conntrackd has (None: none runs)
    steer_digest: str | None = None  # the handshake steering table's (None: no table)
    # The fabric sessions are up (gateway/birdwatch.py): announce upstream.
    fabric_ready: bool = True
