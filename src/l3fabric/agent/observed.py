"""What a host's kernel, nftables, BIRD and probes hold: the planner's second input.

Plain data, no I/O: ``agent/observe.py`` reads it (a full pass re-reads
everything; an incremental pass re-reads only the taps that changed and
keeps the rest from ``plan.after()``, the state the last pass left), and
unit tests write it by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from l3fabric.agent.anycast import ProbeTarget
from l3fabric.agent.dhcp_config import ServedDhcp
from l3fabric.dataplane.links import LinkInfo
from l3fabric.dataplane.nft import Listing
from l3fabric.dataplane.sg_diff import SgListing
from l3fabric.dataplane.sg_render import Rendered
from l3fabric.routing.bird_config import BirdConfig

Key = tuple[str, str]  # (anycast group id, port id)


@dataclass(frozen=True)
class TapState:
    """One tap as a link dump shows it."""

    info: LinkInfo
    gateway6: bool = False  # has fe80::1
    prepared: bool = False  # this agent prepared it (its settings are known to be right)


@dataclass(frozen=True)
class Observed:
    """The host as it is (or, between incremental passes, as the last pass left it)."""

    taps: Mapping[str, TapState] = field(default_factory=dict)
    # Endpoint routes (protocol 96): prefix -> tap; None: a route of ours that
    # is not the one we program (another device, scope or type).
    routes: Mapping[str, str | None] = field(default_factory=dict)
    guard: Listing | None = None  # the anti-spoofing table; None: there is none
    security_groups: SgListing | None = None  # the security-group table; None: there is none
    # What the last pass applied to it (None: read from the kernel, not known in detail).
    sg_applied: Rendered | None = None
    anycast: Mapping[str, frozenset[str]] = field(default_factory=dict)  # prefix -> member taps
    sysctls: Mapping[str, str] = field(default_factory=dict)
    link_local_gateway: bool = False  # 169.254.1.1 via lo is in place
    management: frozenset[str] = frozenset()  # interfaces towards the controller
    bird_running: bool = False
    # The config this agent last gave BIRD (None: unknown, e.g. after a restart).
    bird_config: BirdConfig | None = None
    # The text BIRD runs with, read by full passes (None: not read).
    bird_text: str | None = None
    # Endpoint prefixes announced (their blackholes in the announcement table);
    # after a pass, the keys of its routes (shared, not copied).
    announced: AbstractSet[str] = frozenset()
    probes: Mapping[Key, ProbeTarget] = field(default_factory=dict)
    verdicts: Mapping[Key, bool] = field(default_factory=dict)
    # What the host's dnsmasq serves; None: the agent runs no DHCP server (--no-dhcp).
    dhcp: ServedDhcp | None = None
